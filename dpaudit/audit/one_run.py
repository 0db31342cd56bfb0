"""One-run audit (Steinke, Nasr, Jagielski 2023, "Privacy Auditing with One (1) Training
Run", NeurIPS).

m canaries, each included in the training set independently with probability 1/2
(S ∈ {in, out}^m). After one run the auditor scores every canary, guesses "in" for the k
highest and "out" for the k lowest scores and abstains on the rest (r = 2k guesses). If the
mechanism is (ε, δ)-DP, the number W of correct guesses satisfies (their (ε, δ) main theorem,
Thm 5.2 of arXiv:2305.08846, evaluated as in their appendix's p-value algorithm)

    P[W ≥ v] ≤ P[W' ≥ v] + 2mδ · max_{1≤i≤v} P[v > W' ≥ v - i] / i,   W' ~ Binomial(r, e^ε/(1+e^ε)),

so observing v correct guesses rejects (ε, δ)-DP at level p when the right-hand side is
below p; the ε lower bound is the largest ε rejected (the bound is increasing in ε, so
bisection). With δ = 0 this is Thm 3.1: W is stochastically dominated by Binomial(r, e^ε/(1+e^ε)).

Valid guess selection: the scores are a fixed function of the claim (the log-likelihood
ratio of :mod:`dpaudit.audit.canaries`, summed over steps) and the number of guesses is taken
from a small data-independent grid with a Bonferroni split of the level over the grid.

Instrument here: Dirac canaries on distinct coordinates of a :class:`LinearProbe` of
dimension m (white box, all steps observed); excluded canaries are replaced by
zero-gradient fillers, so batch sizes follow the trainer's sampler over the full dataset.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from dpaudit.audit.adapter import TrainerAdapter, to_flat
from dpaudit.audit.canaries import llr, run_batches
from dpaudit.audit.probe_model import LinearProbe, device_of, linear_loss, run_generator
from dpaudit.audit.verdict import PASS, VIOLATION, CheckResult
from dpaudit.errors import InvalidParameterError


def p_value(m: int, r: int, v: int, epsilon: float, delta: float) -> float:
    """Upper bound on P[W ≥ v] for an (ε, δ)-DP mechanism (Steinke et al. 2023, Thm 5.2)."""
    from scipy.stats import binom

    if not (0 <= v <= r <= m):
        raise InvalidParameterError(f"need 0 <= v <= r <= m, got v={v}, r={r}, m={m}")
    if v == 0:
        return 1.0
    p = 1.0 / (1.0 + math.exp(-epsilon))
    tail = float(binom.sf(v - 1, r, p))
    if delta > 0:
        pmf = binom.pmf(np.arange(v - 1, -1, -1), r, p)  # P[W' = v-1], P[W' = v-2], ..., P[W' = 0]
        alpha = float(np.max(np.cumsum(pmf) / np.arange(1, v + 1)))
        tail += 2.0 * m * delta * alpha
    return min(1.0, tail)


def epsilon_lower_bound(m: int, r: int, v: int, delta: float, significance: float) -> float:
    """Largest ε whose (ε, δ)-DP is rejected at ``significance`` by v correct of r guesses
    (0 if none is); bisection to 1e-6 on the monotone :func:`p_value`."""
    if not 0 < significance < 1:
        raise InvalidParameterError("significance must be in (0, 1)")
    if p_value(m, r, v, 0.0, delta) >= significance:
        return 0.0
    lo, hi = 0.0, 1.0
    while p_value(m, r, v, hi, delta) < significance:
        lo, hi = hi, 2 * hi
        if hi > 1e3:
            return lo
    while hi - lo > 1e-6:
        mid = (lo + hi) / 2
        if p_value(m, r, v, mid, delta) < significance:
            lo = mid
        else:
            hi = mid
    return lo


def guess_grid(m: int) -> tuple[tuple[int, int], ...]:
    """Data-independent (k_in, k_out) guess counts: k "in" guesses on the top scores and
    k_out "out" guesses on the bottom ones, k about 1%, 2%, 5%, 10%, 20% of m, both
    symmetric (k_out = k) and "in"-only (k_out = 0; better when subsampling hides included
    canaries among the excluded)."""
    ks = sorted({min(max(1, round(f * m)), m // 2) for f in (0.01, 0.02, 0.05, 0.1, 0.2)})
    return tuple((k, k) for k in ks) + tuple((k, 0) for k in ks)


def one_run_scores(adapter: TrainerAdapter, *, canaries: int, seed: int = 0,
                   steps: int | None = None) -> tuple[np.ndarray, np.ndarray, bool]:
    """One training run with ``canaries`` Dirac canaries; returns (scores, included, sampler used)."""
    claim = adapter.claim()
    m = int(canaries)
    if m < 2:
        raise InvalidParameterError("need at least 2 canaries")
    rng = np.random.default_rng(seed)
    included = rng.random(m) < 0.5
    n = max(claim.dataset_size, m)
    t_steps = int(steps or claim.steps)
    batches, own = run_batches(adapter, claim, n, t_steps, seed + 1)
    dev = device_of(adapter)
    gen = run_generator(seed + 2, dev)
    model = LinearProbe(m).to(dev)
    scale = claim.expected_batch_size / claim.clip
    total = np.zeros(m)
    for t, bt in enumerate(batches):
        rows = max(1, len(bt))
        import torch

        x = torch.zeros(rows, m)
        can = bt[(bt < m)]
        can = can[included[can]]
        x[torch.arange(len(can)), torch.as_tensor(can, dtype=torch.long)] = float(claim.clip)
        x = x.to(dev)
        y = torch.zeros(rows, dtype=torch.long, device=dev)
        u = to_flat(adapter.privatized_gradient(model, x, y, loss_fn=linear_loss, generator=gen, step=t))
        total += llr(u.numpy()[:m] * scale, claim.sample_rate, claim.noise_multiplier)
    return total, included, own


def one_run_audit(adapter: TrainerAdapter, *, alpha: float, canaries: int = 1000, seed: int = 0,
                  steps: int | None = None) -> CheckResult:
    """One-run audit; ``violation`` if the ε lower bound at confidence 1 - alpha exceeds the claim."""
    claim = adapter.claim()
    t0 = time.perf_counter()
    scores, included, own = one_run_scores(adapter, canaries=canaries, seed=seed, steps=steps)
    order = np.argsort(scores, kind="stable")
    grid = guess_grid(canaries)
    level = alpha / len(grid)
    best: dict[str, Any] = {"epsilon": 0.0}
    table = []
    for k_in, k_out in grid:
        top, bottom = order[canaries - k_in:], order[:k_out]
        v = int(included[top].sum() + (~included[bottom]).sum())
        e = epsilon_lower_bound(canaries, k_in + k_out, v, claim.delta, level)
        table.append({"k_in": k_in, "k_out": k_out, "guesses": k_in + k_out, "correct": v, "epsilon": e})
        if e > best["epsilon"]:
            best = table[-1]
    secs = time.perf_counter() - t0
    t_steps = int(steps or claim.steps)
    details = {"canaries": canaries, "steps": t_steps, "grid": table, "best": best, "seconds": secs,
               "claimed_epsilon": claim.epsilon,
               "ratio": best["epsilon"] / claim.epsilon if claim.epsilon > 0 else math.inf, "trainer_sampler": own}
    notes: list[str] = []
    if not own:
        notes.append("batches simulated from the claimed sampler (the trainer's sampler was not used)")
    if t_steps < claim.steps:
        notes.append(f"audited the first {t_steps} of {claim.steps} steps (a valid but looser lower bound)")
    eps = float(best["epsilon"])
    if "guesses" in best:
        ev = (f"eps_lb={eps:.3g} vs claimed {claim.epsilon:.3g}: {best['correct']}/{best['guesses']} correct guesses, "
              f"{canaries} canaries, one run of {t_steps} steps")
    else:
        ev = f"eps_lb=0 vs claimed {claim.epsilon:.3g} ({canaries} canaries, one run of {t_steps} steps)"
    return CheckResult("canary_one_run", VIOLATION if eps > claim.epsilon else PASS, ev, 1 - alpha, details, tuple(notes))
