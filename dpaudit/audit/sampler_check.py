"""Does the trainer's batch sampler do what the claim says? Tests with exact null laws.

One function per batching (:data:`SAMPLER_CHECKS`): Poisson, shuffle, balls-in-bins. Every
statistical test here has a *valid* p-value at every sample rate, data set size and number
of steps -- no asymptotic chi-square, which is anti-conservative when T·q
is small (a correct Poisson sampler was flagged in 20 of 200 audits at q = 0.001,
N = 50,000 by the previous participation chi-square):

Poisson(q), T batches over N examples (every index independently with probability q):

* mean: the total ``Σ_t |B_t| ~ Binomial(N T, q)`` -- exact two-sided binomial test (wrong
  sample rate, e.g. Opacus #813);
* batch-size dispersion: ``D = Σ_t (|B_t| - Nq)²`` with ``|B_t|`` iid Binomial(N, q): both
  tails bounded by Chernoff, ``P(D >= d) <= min_{λ>0} E[e^{λY}]^T e^{-λd}`` (and λ < 0 for
  the lower tail) with the exact moment generating function of ``Y = (|B_t| - Nq)²``
  (fixed-size batches: D ~ 0);
* participation: the number of examples never drawn, ``~ Binomial(N, (1-q)^T)``, and drawn
  at least twice, ``~ Binomial(N, 1 - (1-q)^T - T q (1-q)^{T-1})`` -- exact two-sided
  binomial tests (each example's count is Binomial(T, q), independently over examples;
  shuffling gives too few zeros / repeats);
* an index twice in one batch is a violation (exact).

Shuffle (exact): within an epoch batches are disjoint, have the claimed size (the last one
may be smaller) and cover the data set.

Balls-in-bins (t = ceil(N/B) batches per epoch, each example in one uniformly random
batch): within an epoch batches are disjoint and cover the data set (exact); the sizes of
an epoch are Multinomial(N; 1/t, ..., 1/t): both tails of ``D = Σ_j (|B_j| - N/t)²`` are
bounded by Chernoff after Poissonization (:func:`multinomial_dispersion_p_values`; valid at
every N, t and number of steps, conservative by a factor ``1/P(Poisson(N) = N) ~
sqrt(2πN)`` per epoch, which fixed-size batches still fail by hundreds of orders of
magnitude). Poisson batches fail the exact once-per-epoch test.

Two-sided p-values are ``2 min(P(X <= x), P(X >= x))`` (capped at 1), Bonferroni over the
four tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from dpaudit.audit.adapter import TrainerAdapter, optional_method
from dpaudit.audit.claim import Claim
from dpaudit.audit.verdict import INCONCLUSIVE, PASS, VIOLATION, CheckResult


def binomial_two_sided(x: int, n: int, p: float) -> float:
    """Exact two-sided p-value ``2 min(P(X <= x), P(X >= x))`` for X ~ Binomial(n, p)."""
    from scipy.stats import binom

    if p <= 0.0:
        return 1.0 if x == 0 else 0.0
    if p >= 1.0:
        return 1.0 if x == n else 0.0
    return min(1.0, 2.0 * min(float(binom.cdf(x, n, p)), float(binom.sf(x - 1, n, p))))


def _chernoff_log_tails(ks: np.ndarray, logpmf: np.ndarray, mu: float, outside: float, edge: float, d: float,
                        count: int) -> tuple[float, float]:
    """Logs of Chernoff bounds on ``P(D <= d)`` and ``P(D >= d)`` for ``D`` the sum of
    ``count`` independent copies of ``Y = (K - mu)²``, K with log-masses ``logpmf`` on the
    integers ``ks`` and total mass ``outside`` elsewhere, where ``Y <= edge``. The masses may
    sum to less than 1 (a sub-probability: the bounds then hold for the restricted measure).
    ``P(D >= d) <= E[e^{λY}]^count e^{-λd}`` for λ > 0 (Markov), ``P(D <= d) <= E[e^{-λY}]^count
    e^{λd}``; minimised over a geometric grid of λ scaled by sd(D)."""
    y = (ks - mu) ** 2
    p = np.exp(logpmf)
    var_y = max(float(np.sum(p * y * y)) - float(np.sum(p * y)) ** 2, 1e-12)
    scale = 1.0 / math.sqrt(var_y * count)
    hi_y = float(y.max())

    def log_mgf(lam: float) -> float:
        x = logpmf + lam * y
        mx = float(x.max())
        val = mx + math.log(float(np.exp(x - mx).sum()))
        if outside > 0:
            e = edge if lam > 0 else 0.0  # e^{λY} <= e^{λ edge} outside
            val = float(np.logaddexp(val, math.log(outside) + lam * e))
        return val

    lams = np.geomspace(1e-4, 1e2, 60) * scale
    up = min(0.0, min(count * log_mgf(float(lam)) - lam * d for lam in lams if lam * hi_y < 700))
    low = min(0.0, min(count * log_mgf(-float(lam)) + lam * d for lam in lams))
    return low, up


def dispersion_p_values(sizes: np.ndarray, n: int, q: float) -> tuple[float, float]:
    """Chernoff bounds on ``P(D <= d)`` and ``P(D >= d)`` for ``D = Σ_t (|B_t| - nq)²``,
    ``|B_t|`` iid Binomial(n, q) (module docstring); the MGF is summed over the binomial's
    support where its mass exceeds 1e-300 (the rest is bounded by its tail mass times the
    largest value of e^{λY}, added)."""
    from scipy.stats import binom

    mu = n * q
    sd = math.sqrt(max(mu * (1 - q), 1e-12))
    lo_k, hi_k = max(0, math.floor(mu - 40 * sd - 40)), min(n, math.ceil(mu + 40 * sd + 40))
    ks = np.arange(lo_k, hi_k + 1)
    outside = float(binom.cdf(lo_k - 1, n, q) + binom.sf(hi_k, n, q))
    low, up = _chernoff_log_tails(ks, binom.logpmf(ks, n, q), mu, outside, max(mu * mu, (n - mu) ** 2),
                                  float(np.sum((sizes - mu) ** 2)), sizes.size)
    return math.exp(low), math.exp(up)


def multinomial_dispersion_p_values(sizes: np.ndarray, n: int, t: int, epochs: int) -> tuple[float, float]:
    """Bounds on ``P(D <= d)`` and ``P(D >= d)`` for ``D = Σ (|B_j| - n/t)²`` over the
    ``sizes.size`` batches of ``epochs`` independent epochs (the last may be partial), each
    epoch's sizes Multinomial(n; 1/t, ..., 1/t) -- balls-in-bins (module docstring).

    Poissonization: the Multinomial is the law of t iid Poisson(n/t) counts given their sum
    S = n, so for any event A of an epoch's counts ``P_mult(A) = P(A, S = n) / P(S = n) <=
    P(A, every count <= n) / P(S = n)``, S ~ Poisson(n). Epochs are independent, so the
    restricted product measure's Chernoff bound (:func:`_chernoff_log_tails`, counts
    restricted to 0..n) divided by ``P(S = n)^epochs`` bounds both tails."""
    from scipy.stats import poisson

    mu = n / t
    sd = math.sqrt(mu)
    lo_k, hi_k = max(0, math.floor(mu - 40 * sd - 40)), min(n, math.ceil(mu + 40 * sd + 40))
    ks = np.arange(lo_k, hi_k + 1)
    outside = float(poisson.cdf(lo_k - 1, mu) + (poisson.cdf(n, mu) - poisson.cdf(hi_k, mu)))
    low, up = _chernoff_log_tails(ks, poisson.logpmf(ks, mu), mu, max(outside, 0.0), max(mu * mu, (n - mu) ** 2),
                                  float(np.sum((sizes - mu) ** 2)), sizes.size)
    pen = -epochs * float(poisson.logpmf(n, n))
    return math.exp(min(0.0, low + pen)), math.exp(min(0.0, up + pen))


def _poisson_check(claim: Claim, batches: list[np.ndarray], alpha: float, details: dict[str, Any]) -> CheckResult:
    n, q, steps = claim.dataset_size, claim.sample_rate, len(batches)
    sizes = np.array([len(bt) for bt in batches], dtype=float)
    dup = sum(len(bt) - len(np.unique(bt)) for bt in batches)
    if dup:
        return CheckResult("sampler", VIOLATION, f"{dup} repeated indices within batches: sampling with replacement, "
                           "not Poisson", None, details)
    if q >= 1.0:
        ok = bool(np.all(sizes == n))
        return CheckResult("sampler", PASS if ok else VIOLATION,
                           "q = 1: every batch must be the full dataset" + ("" if ok else " (it is not)"), None, details)
    counts = np.bincount(np.concatenate(batches).astype(np.int64), minlength=n) if sizes.sum() else np.zeros(n, int)
    p_zero = (1 - q) ** steps
    p_two = max(0.0, 1.0 - p_zero - steps * q * (1 - q) ** (steps - 1))
    disp_lo, disp_hi = dispersion_p_values(sizes, n, q)
    tests = {
        "mean": binomial_two_sided(int(sizes.sum()), n * steps, q),
        "dispersion": min(1.0, 2 * min(disp_lo, disp_hi)),
        "never_drawn": binomial_two_sided(int(np.sum(counts == 0)), n, p_zero),
        "drawn_twice": binomial_two_sided(int(np.sum(counts >= 2)), n, p_two),
    }
    ratio = float(np.sum((sizes - n * q) ** 2) / (n * q * (1 - q)) / steps)
    details.update({f"p_{k}": v for k, v in tests.items()})
    details.update({"dispersion_ratio": ratio, "never_drawn": int(np.sum(counts == 0)),
                    "never_drawn_expected": n * p_zero, "drawn_twice": int(np.sum(counts >= 2)),
                    "drawn_twice_expected": n * p_two})
    a = alpha / len(tests)
    p = min(1.0, len(tests) * min(tests.values()))
    bad = []
    if tests["mean"] < a:
        bad.append(f"mean batch {sizes.mean():.4g} vs N·q = {n * q:.4g}: wrong sample rate")
    if tests["dispersion"] < a:
        bad.append(f"batch-size variance {ratio:.3g}× Binomial's")
    if tests["never_drawn"] < a:
        bad.append(f"{details['never_drawn']} examples never drawn vs {n * p_zero:.4g} expected")
    if tests["drawn_twice"] < a:
        bad.append(f"{details['drawn_twice']} examples drawn twice or more vs {n * p_two:.4g} expected")
    if bad:
        hint = " -- fixed-size/shuffled batches claimed as Poisson?" if ratio < 0.5 else ""
        return CheckResult("sampler", VIOLATION, "not Poisson(q): " + "; ".join(bad) + hint, 1 - alpha, details,
                           p_value=p)
    return CheckResult("sampler", PASS,
                       f"batch sizes and participation consistent with Poisson(q={q:g}) over {steps} steps "
                       f"(mean {sizes.mean():.4g}, variance ratio {ratio:.3g}; exact tests)", 1 - alpha, details,
                       p_value=p)


def _shuffle_check(claim: Claim, batches: list[np.ndarray], alpha: float, details: dict[str, Any]) -> CheckResult:
    """Exact check of shuffled fixed-size batches: disjoint within an epoch, of the claimed
    size (the last batch of an epoch may be smaller), covering the dataset."""
    from dpaudit.accounting import steps_per_epoch

    n, steps, bsz = claim.dataset_size, len(batches), claim.batch_size
    spe = steps_per_epoch("shuffle", dataset_size=n, batch_size=bsz)
    for e in range(0, steps, spe):
        epoch = batches[e : e + spe]
        allidx = np.concatenate(epoch)
        problem = None
        if len(np.unique(allidx)) != len(allidx):
            problem = "an example is used twice"
        elif any(len(bt) > bsz for bt in epoch) or any(len(bt) != bsz for bt in epoch[:-1]):
            problem = f"batch sizes differ from {bsz}"
        elif len(epoch) == spe and len(allidx) != n:
            problem = f"covers {len(allidx)} of {n} examples"
        if problem:
            return CheckResult("sampler", VIOLATION, f"not shuffled disjoint batches: epoch {e // spe}: {problem}",
                               None, details)
    return CheckResult("sampler", PASS, f"{steps} batches form disjoint fixed-size epochs of size {bsz}", None, details)


def _balls_in_bins_check(claim: Claim, batches: list[np.ndarray], alpha: float,
                         details: dict[str, Any]) -> CheckResult:
    """Balls-in-bins: within each epoch of t = ceil(N/B) steps the batches are disjoint and
    (complete epochs) cover the data set -- exact; the batch sizes are Multinomial(N, 1/t)
    per epoch -- both tails of their dispersion bounded by
    :func:`multinomial_dispersion_p_values` (fixed-size batches, i.e. shuffling, give far too
    little dispersion)."""
    from dpaudit.accounting import steps_per_epoch

    n, steps = claim.dataset_size, len(batches)
    t = steps_per_epoch("balls_in_bins", dataset_size=n, batch_size=min(claim.batch_size, n))
    for e in range(0, steps, t):
        allidx = np.concatenate(batches[e : e + t])
        problem = None
        if len(np.unique(allidx)) != len(allidx):
            problem = "an example is used twice"
        elif e + t <= steps and len(allidx) != n:
            problem = f"covers {len(allidx)} of {n} examples"
        if problem:
            return CheckResult("sampler", VIOLATION, f"not balls-in-bins (every example once in each epoch of {t} "
                               f"batches): epoch {e // t}: {problem}", None, details)
    sizes = np.array([len(bt) for bt in batches], dtype=float)
    lo, hi = multinomial_dispersion_p_values(sizes, n, t, math.ceil(steps / t))
    p = min(1.0, 2 * min(lo, hi))
    ratio = float(np.sum((sizes - n / t) ** 2) / (n / t * (1 - 1 / t)) / steps) if t > 1 else 1.0
    details.update({"p_dispersion": p, "dispersion_ratio": ratio, "steps_per_epoch": t})
    if t > 1 and p < alpha:
        hint = " -- fixed-size (shuffled) batches claimed as balls-in-bins?" if ratio < 1 else ""
        return CheckResult("sampler", VIOLATION, f"batch sizes not Multinomial(N, 1/{t}): variance {ratio:.3g}x "
                           f"the Multinomial's{hint}", 1 - alpha, details, p_value=p)
    return CheckResult("sampler", PASS, f"{steps} batches: every example once per epoch of {t} batches, sizes "
                       f"consistent with Multinomial(N={n}, 1/{t}) (variance ratio {ratio:.3g}; exact bounds)",
                       1 - alpha, details, p_value=p)


#: The check of each batching: ``(claim, batches, alpha, details) -> CheckResult``.
SAMPLER_CHECKS: dict[str, Callable[[Claim, list[np.ndarray], float, dict[str, Any]], CheckResult]] = {
    "poisson": _poisson_check,
    "shuffle": _shuffle_check,
    "balls_in_bins": _balls_in_bins_check,
}


def sampler_probe(adapter: TrainerAdapter, *, alpha: float, seed: int = 0, steps: int = 200) -> CheckResult:
    """Check the trainer's own sampler (``sample_batches``) against the claimed batching
    (module docstring); ``inconclusive`` when the adapter has none."""
    claim = adapter.claim()
    sample_batches = optional_method(adapter, "sample_batches")
    if sample_batches is None:
        return CheckResult("sampler", INCONCLUSIVE, "the adapter exposes no sample_batches(); batching unverified")
    n = claim.dataset_size
    batches = [np.asarray(bt, dtype=np.int64).reshape(-1) for bt in sample_batches(n, steps, seed)]
    if len(batches) < steps:
        return CheckResult("sampler", INCONCLUSIVE, f"sampler returned {len(batches)} of {steps} batches")
    batches = batches[:steps]
    sizes = np.array([len(bt) for bt in batches], dtype=float)
    details: dict[str, Any] = {"steps": steps, "dataset_size": n, "mean_batch": float(sizes.mean()),
                               "var_batch": float(sizes.var(ddof=1)) if steps > 1 else 0.0}
    if any(bt.size and (bt.min() < 0 or bt.max() >= n) for bt in batches):
        return CheckResult("sampler", VIOLATION, "sampler returned indices outside the dataset", None, details)
    check = SAMPLER_CHECKS.get(claim.batching)
    if check is None:
        return CheckResult("sampler", INCONCLUSIVE, f"no sampler check for batching {claim.batching!r} yet",
                           None, details)
    return check(claim, batches, alpha, details)
