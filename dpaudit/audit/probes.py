"""Deterministic and cheap statistical probes of a trainer's per-step release.

Every probe talks to the trainer only through a :class:`~dpaudit.audit.adapter.TrainerAdapter`
and returns a :class:`~dpaudit.audit.verdict.CheckResult`. ``alpha`` is the false-alarm
probability the probe may spend (the runner splits the family-wise 1 - confidence over the
checks, Bonferroni). Probes that compare two calls with identically seeded generators are
*exact* when the trainer draws its noise from the generator it is given (the noise cancels
in the difference); otherwise they fall back to a statistical test or ``inconclusive``.

What DP-SGD must satisfy (Abadi et al. 2016, Alg. 1; add/remove neighbours): the released
update is ``u = (Σ_i clip_C(g_i) + Z) / B`` with ``Z ~ N(0, σ²C² I)`` fresh at each step and
``B`` the *expected* batch size, so

* adding one example moves ``u`` by at most ``C / B`` in L2 norm (sensitivity probe);
* on zero gradients each coordinate of ``u`` is ``N(0, (σC/B)²)`` (noise-variance probe,
  chi-square test);
* the noise of different steps (and runs) is independent (fresh-noise probe);
* ``clip_C(g_i)`` uses the true per-example gradient (per-sample-gradient probe);
* under Poisson sampling batch sizes are Binomial(N, q) and participation counts are
  Binomial(T, q) independently over examples (sampler probe).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from dpaudit.audit.adapter import TrainerAdapter, optional_method, to_flat
from dpaudit.audit.claim import Claim
from dpaudit.audit.probe_model import (
    LinearProbe,
    device_of,
    dirac_batch,
    linear_loss,
    run_generator,
)
from dpaudit.audit.verdict import INCONCLUSIVE, PASS, VIOLATION, CheckResult

#: Relative tolerance of exact (noise-cancelling) comparisons; float32 round-off is ~1e-7
#: relative to the noise magnitude, so 1e-3 of C/B leaves a wide margin without hiding bugs
#: (the smallest planted error is a factor 2).
EXACT_RTOL = 1e-3


def _roundoff(claim: Claim, dim: int) -> float:
    """Float32 cancellation error when two updates with identical noise are subtracted:
    ~1e-7 relative to the noise per coordinate; 1e-5 leaves a 100x margin."""
    return 1e-5 * claim.update_noise_std * math.sqrt(dim)


def model_size(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _step(adapter: TrainerAdapter, model, x, y, seed: int, loss_fn=linear_loss, step: int = 0) -> torch.Tensor:
    gen = run_generator(seed, device_of(adapter))
    out = adapter.privatized_gradient(model, x, y, loss_fn=loss_fn, generator=gen, step=step)
    return to_flat(out)


def is_deterministic(adapter: TrainerAdapter, dim: int = 8, seed: int = 12345) -> bool:
    """True if two calls with identically seeded generators give the same update (the
    trainer draws its noise from the audit's generator)."""
    claim = adapter.claim()
    dev = device_of(adapter)
    model = LinearProbe(dim).to(dev)
    x, y = dirac_batch(dim, max(1, round(claim.expected_batch_size)), [0], claim.clip, dev)
    a = _step(adapter, model, x, y, seed)
    b = _step(adapter, model, x, y, seed)
    scale = claim.update_noise_std + claim.clip / claim.expected_batch_size
    return bool(torch.max(torch.abs(a - b)).item() <= 1e-9 * max(scale, 1e-300) + 1e-12)


# --------------------------------------------------------------------------- sensitivity
def sensitivity_probe(adapter: TrainerAdapter, *, alpha: float, seed: int = 0, reps: int = 24,
                      magnitude: float = 1e4, dim: int = 16) -> CheckResult:
    """Add one example whose gradient is ``magnitude``·C (a Dirac and a dense direction) to a
    batch of zero-gradient fillers; the update must move by at most C/B.

    Exact when the trainer is deterministic given the generator (max L2 shift vs C/B, relative
    tolerance :data:`EXACT_RTOL`); otherwise a one-sided t-test of the mean shift along the
    direction over ``reps`` paired calls.
    """
    from scipy import stats

    claim = adapter.claim()
    c, b = claim.clip, claim.expected_batch_size
    bound = c / b
    n_fill = max(1, round(b))
    dev = device_of(adapter)
    model = LinearProbe(dim).to(dev)
    rng = np.random.default_rng(seed)
    dense = rng.standard_normal(dim)
    dense /= np.linalg.norm(dense)
    directions = {"dirac": np.eye(dim)[0], "dense": dense}
    det = is_deterministic(adapter, dim)
    n_reps = 2 if det else reps
    details: dict[str, Any] = {"bound": bound, "deterministic": det, "magnitude": magnitude}
    violated: list[str] = []
    shifts: dict[str, float] = {}
    for label, u in directions.items():
        x0, y0 = dirac_batch(dim, n_fill, device=dev)
        x1 = torch.cat([x0, torch.as_tensor(magnitude * c * u, dtype=torch.float32, device=dev)[None]])
        y1 = torch.zeros(x1.shape[0], dtype=torch.long, device=dev)
        diffs = []
        for r in range(n_reps):
            s = seed * 1000 + r + (0 if label == "dirac" else 500)
            diffs.append((_step(adapter, model, x1, y1, s) - _step(adapter, model, x0, y0, s)).numpy())
        d = np.stack(diffs)
        if det:
            shift = float(np.max(np.linalg.norm(d, axis=1)))
            shifts[label] = shift
            if shift > bound * (1 + EXACT_RTOL) + _roundoff(claim, dim):
                violated.append(f"{label}: update moved by {shift / bound:.4g}·C/B")
        else:
            proj = d @ u
            mean, sd = float(proj.mean()), float(proj.std(ddof=1))
            shifts[label] = mean
            tcrit = float(stats.t.ppf(1 - alpha / 2, n_reps - 1))
            if mean - bound > tcrit * sd / math.sqrt(n_reps) + bound * EXACT_RTOL:
                violated.append(f"{label}: mean shift {mean / bound:.4g}·C/B (t-test)")
    details["shift_over_bound"] = {k: v / bound for k, v in shifts.items()}
    notes: tuple[str, ...] = ()
    if not det:
        notes = ("noise is not drawn from the audit's generator: statistical test instead of exact",)
    if min(shifts.values()) < 0.5 * bound:
        notes += (f"the update moved by only {min(shifts.values()) / bound:.3g}·C/B: stronger clipping or "
                  "scaling than claimed (private, but the claim's utility model is off)",)
    conf = None if det else 1 - alpha
    if violated:
        return CheckResult("sensitivity", VIOLATION,
                           "one example moves the update by more than C/B: " + "; ".join(violated),
                           conf, details, notes)
    return CheckResult(
        "sensitivity", PASS,
        f"a {magnitude:g}·C gradient moves the update by {max(shifts.values()) / bound:.4g}·C/B (bound 1)",
        conf, details, notes)


# --------------------------------------------------------------------------- noise variance
def noise_variance_probe(adapter: TrainerAdapter, *, alpha: float, seed: int = 0, calls: int = 16,
                         dim: int = 64) -> CheckResult:
    """On zero gradients the update is ``N(0, (σC/B)² I)`` with B the *expected* batch size:
    with ``n = calls·dim`` observed coordinates, ``S = Σ u² / (σC/B)² ~ χ²_n``. Too little
    noise (lower tail, one-sided) is a violation; too much is noted (private, but not what was
    claimed). For Poisson claims the test is repeated on batches of size 2B (``alpha`` split
    over the two): a trainer dividing by the *actual* batch size reveals |B_t|, which the
    analysis does not cover (see ``dpaudit.training.privatize``), and shows too little noise
    there."""
    from scipy import stats

    claim = adapter.claim()
    std = claim.update_noise_std
    dev = device_of(adapter)
    model = LinearProbe(dim).to(dev)
    b = max(1, round(claim.expected_batch_size))
    sizes = [b, 2 * b] if claim.batching == "poisson" else [b]
    a = alpha / len(sizes)
    rows = []
    for size in sizes:
        x, y = dirac_batch(dim, size, device=dev)
        u = torch.cat([_step(adapter, model, x, y, seed * 7919 + 131 * size + k, step=k) for k in range(calls)]).numpy()
        n = u.size
        s = float(np.sum(u**2) / std**2)
        rows.append({"batch": size, "chi2": s, "df": n, "p_lower": float(stats.chi2.cdf(s, n)),
                     "p_upper": float(stats.chi2.sf(s, n)),
                     "measured_noise_multiplier": math.sqrt(s / n) * claim.noise_multiplier})
    details = {"claimed_noise_multiplier": claim.noise_multiplier, "by_batch_size": rows,
               "measured_noise_multiplier": rows[0]["measured_noise_multiplier"]}
    ev = "; ".join(f"batch {r['batch']}: effective sigma {r['measured_noise_multiplier']:.4g} (p_lower={r['p_lower']:.3g})"
                   for r in rows) + f" vs claimed {claim.noise_multiplier:.4g}"
    low = [r for r in rows if r["p_lower"] < a]
    if low:
        what = "too little noise: "
        if low[0]["batch"] != b and rows[0]["p_lower"] >= a:
            what = "noise shrinks with the actual batch size (divided by |B_t|, not the expected B): "
        return CheckResult("noise_variance", VIOLATION, what + ev, 1 - alpha, details)
    notes: tuple[str, ...] = ()
    if any(r["p_upper"] < a for r in rows):
        notes = ("more noise than claimed: private, but the claimed sigma is not what runs",)
    return CheckResult("noise_variance", PASS, ev, 1 - alpha, details, notes)


# --------------------------------------------------------------------------- fresh noise
def fresh_noise_probe(adapter: TrainerAdapter, *, alpha: float, seed: int = 0, steps: int = 10,
                      dim: int = 64) -> CheckResult:
    """The noise vectors of different steps (one run) and of two independently seeded runs
    must be independent. For independent isotropic Gaussians the cosine of two d-dimensional
    vectors satisfies (cos+1)/2 ~ Beta((d-1)/2, (d-1)/2); every pair is tested two-sided with
    a Bonferroni split of ``alpha`` over the pairs."""
    from scipy import stats

    claim = adapter.claim()
    dev = device_of(adapter)
    model = LinearProbe(dim).to(dev)
    x, y = dirac_batch(dim, max(1, round(claim.expected_batch_size)), device=dev)
    vecs = []
    for run in range(2):
        g = run_generator(seed * 104729 + 17 * run + 1, dev)
        for t in range(steps):
            vecs.append(to_flat(adapter.privatized_gradient(model, x, y, loss_fn=linear_loss, generator=g, step=t)).numpy())
    v = np.stack(vecs)
    norms = np.linalg.norm(v, axis=1)
    if np.any(norms == 0):
        return CheckResult("fresh_noise", INCONCLUSIVE, "some updates on zero gradients are exactly zero: no noise to compare "
                           "(see noise_variance)", None, {"zero_updates": int(np.sum(norms == 0))})
    cos = (v @ v.T) / np.outer(norms, norms)
    iu = np.triu_indices(len(v), 1)
    c = cos[iu]
    a = (dim - 1) / 2
    p = 2 * np.minimum(stats.beta.cdf((c + 1) / 2, a, a), stats.beta.sf((c + 1) / 2, a, a))
    pairs = len(c)
    worst = int(np.argmin(p))
    i, j = iu[0][worst], iu[1][worst]
    where = lambda k: f"run {k // steps} step {k % steps}"  # noqa: E731
    details = {"pairs": pairs, "max_abs_cosine": float(np.max(np.abs(c))), "min_p": float(p[worst]),
               "worst_pair": [where(i), where(j)]}
    if p[worst] * pairs < alpha:
        return CheckResult(
            "fresh_noise", VIOLATION,
            f"noise of {where(i)} and {where(j)} has cosine {c[worst]:.4f} (p={p[worst]:.2g}, {pairs} pairs): "
            "noise is reused or correlated", 1 - alpha, details)
    return CheckResult("fresh_noise", PASS,
                       f"max |cosine| {np.max(np.abs(c)):.3f} over {pairs} pairs of noise vectors (d={dim})",
                       1 - alpha, details)


# --------------------------------------------------------------------------- per-sample grads
class _SmallNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.l1 = torch.nn.Linear(10, 8)
        self.l2 = torch.nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.l2(torch.tanh(self.l1(x)))


def _ce(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(output, target, reduction="none")


def naive_per_sample_grads(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn) -> torch.Tensor:
    """Per-example gradients by plain autograd, one example at a time: ``(B, P)`` float64."""
    params = [p for p in model.parameters() if p.requires_grad]
    rows = []
    for i in range(x.shape[0]):
        loss = loss_fn(model(x[i : i + 1]), y[i : i + 1]).sum()
        grads = torch.autograd.grad(loss, params)
        rows.append(torch.cat([g.reshape(-1).to(torch.float64) for g in grads]))
    return torch.stack(rows)


def per_sample_probe(adapter: TrainerAdapter, *, alpha: float, seed: int = 0, k: int = 8) -> CheckResult:
    """Compare the trainer's per-example gradients with naive autograd on a small MLP with
    cross-entropy. Through the step function (exact when deterministic): adding example k to
    a batch must move the update by ``clip_C(∇ℓ_k)/B``. Through ``per_sample_gradients`` when
    the adapter has it: unclipped gradients must match to float32 precision."""
    claim = adapter.claim()
    model = _SmallNet()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    x = torch.randn(k, 10, generator=gen) * torch.logspace(-1, 1.5, k)[:, None]
    y = torch.randint(0, 3, (k,), generator=gen)
    dev = device_of(adapter)
    model, x, y = model.to(dev), x.to(dev), y.to(dev)
    naive = naive_per_sample_grads(model, x, y, _ce).cpu()
    norms = naive.norm(dim=1, keepdim=True)
    clipped = naive * torch.clamp(claim.clip / norms, max=1.0)
    b = claim.expected_batch_size
    scale = claim.clip / b
    details: dict[str, Any] = {"examples": k, "clipped_fraction": float((norms.squeeze(1) > claim.clip).double().mean())}
    problems, ran = [], []
    if is_deterministic(adapter):
        ran.append("step")
        prev = _step(adapter, model, x[:1], y[:1], seed, loss_fn=_ce)
        errs = []
        for i in range(2, k + 1):
            cur = _step(adapter, model, x[:i], y[:i], seed, loss_fn=_ce)
            errs.append(float(torch.linalg.norm((cur - prev) - clipped[i - 1] / b)) / scale)
            prev = cur
        details["step_max_error_over_C_B"] = max(errs)
        if max(errs) > EXACT_RTOL + _roundoff(claim, model_size(model)) / scale:
            problems.append(f"adding an example moves the update by a vector {max(errs):.3g}·C/B away from clip(∇ℓ)/B")
    per_sample_gradients = optional_method(adapter, "per_sample_gradients")
    if per_sample_gradients is not None:
        ran.append("per_sample_gradients")
        got = torch.as_tensor(per_sample_gradients(model, x, y, _ce)).to("cpu", torch.float64).reshape(k, -1)
        err = float(torch.max(torch.linalg.norm(got - naive, dim=1) / norms.squeeze(1)))
        details["per_sample_max_rel_error"] = err
        if err > EXACT_RTOL:
            problems.append(f"per_sample_gradients differ from autograd by {err:.3g} (relative)")
    if not ran:
        return CheckResult("per_sample_gradients", INCONCLUSIVE,
                           "the step is not deterministic given the generator and the adapter has no "
                           "per_sample_gradients method", None, details)
    if problems:
        return CheckResult("per_sample_gradients", VIOLATION, "; ".join(problems), None, details)
    return CheckResult("per_sample_gradients", PASS,
                       f"per-example clipped gradients match autograd ({', '.join(ran)}; {k} examples, "
                       f"{details['clipped_fraction']:.0%} clipped)", None, details)


# --------------------------------------------------------------------------- sampler
def sampler_probe(adapter: TrainerAdapter, *, alpha: float, seed: int = 0, steps: int = 200) -> CheckResult:
    """Check the trainer's sampler against the claimed batching.

    Poisson (Bonferroni over three two-sided tests): batch-size mean (z-test) and dispersion
    (Σ(b_t - Nq)²/(Nq(1-q)) ~ χ²_T) for b_t ~ Binomial(N, q), and participation counts
    (Σ_i (c_i - Tq)²/(Tq(1-q)) ~ χ²_N for c_i ~ Binomial(T, q)); an index twice in one batch
    is a violation. Shuffle (exact): within an epoch batches are disjoint, have the claimed
    size and cover the dataset.
    """
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
    if claim.batching == "shuffle":
        return _shuffle_sampler_check(claim, batches, details)
    return _poisson_sampler_check(claim, batches, sizes, alpha, details)


def _shuffle_sampler_check(claim: Claim, batches: list[np.ndarray], details: dict[str, Any]) -> CheckResult:
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


def _poisson_sampler_check(claim: Claim, batches: list[np.ndarray], sizes: np.ndarray, alpha: float,
                           details: dict[str, Any]) -> CheckResult:
    """Statistical check of Poisson(q) batches (see :func:`sampler_probe`)."""
    from scipy import stats

    n, q, steps = claim.dataset_size, claim.sample_rate, len(batches)
    dup = sum(len(bt) - len(np.unique(bt)) for bt in batches)
    if dup:
        return CheckResult("sampler", VIOLATION, f"{dup} repeated indices within batches: sampling with replacement, "
                           "not Poisson", 1 - alpha, details)
    if q >= 1.0:
        ok = bool(np.all(sizes == n))
        return CheckResult("sampler", PASS if ok else VIOLATION,
                           "q = 1: every batch must be the full dataset" + ("" if ok else " (it is not)"), None, details)
    a3 = alpha / 3
    var1 = n * q * (1 - q)
    z = (sizes.sum() - steps * n * q) / math.sqrt(steps * var1)
    p_mean = 2 * float(stats.norm.sf(abs(z)))
    disp = float(np.sum((sizes - n * q) ** 2) / var1)
    p_disp = 2 * min(float(stats.chi2.cdf(disp, steps)), float(stats.chi2.sf(disp, steps)))
    counts = np.bincount(np.concatenate(batches), minlength=n).astype(float) if sizes.sum() else np.zeros(n)
    part = float(np.sum((counts - steps * q) ** 2) / (steps * q * (1 - q)))
    p_part = 2 * min(float(stats.chi2.cdf(part, n)), float(stats.chi2.sf(part, n)))
    details.update({"z_mean": float(z), "p_mean": p_mean, "dispersion_ratio": disp / steps, "p_dispersion": p_disp,
                    "participation_ratio": part / n, "p_participation": p_part})
    bad = []
    if p_mean < a3:
        bad.append(f"mean batch {sizes.mean():.4g} vs N·q = {n * q:.4g} (p={p_mean:.2g}): wrong sample rate")
    if p_disp < a3:
        bad.append(f"batch-size variance {disp / steps:.3g}× Binomial's (p={p_disp:.2g})")
    if p_part < a3:
        bad.append(f"participation-count dispersion {part / n:.3g}× Binomial's (p={p_part:.2g})")
    if bad:
        hint = " -- fixed-size/shuffled batches claimed as Poisson?" if disp / steps < 0.5 else ""
        return CheckResult("sampler", VIOLATION, "not Poisson(q): " + "; ".join(bad) + hint, 1 - alpha, details)
    return CheckResult("sampler", PASS,
                       f"batch sizes and participation consistent with Poisson(q={q:g}) over {steps} steps "
                       f"(mean {sizes.mean():.4g}, variance ratio {disp / steps:.3g})", 1 - alpha, details)
