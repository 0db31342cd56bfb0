"""Deterministic and cheap statistical probes of a trainer's per-step release.

Every probe talks to the trainer only through a :class:`~dpaudit.audit.adapter.TrainerAdapter`
and returns a :class:`~dpaudit.audit.verdict.CheckResult`. ``alpha`` is the false-alarm
probability the probe may spend (the runner splits the family-wise 1 - confidence over the
statistical checks, Bonferroni). Probes that compare two calls with identically seeded
generators are *exact* when the trainer draws its noise from the generator it is given (the
noise cancels in the difference); otherwise they fall back to a statistical test or
``inconclusive``.

What DP-SGD must satisfy (Abadi et al. 2016, Alg. 1; add/remove neighbours): the released
update is ``u = (Σ_i clip_C(g_i) + Z) / B`` with ``Z ~ N(0, σ²C² I)`` fresh at each step and
``B`` the *expected* batch size, so

* adding one example moves ``u`` by at most ``C / B`` in L2 norm over *all* parameter tensors
  together, and by exactly C/B when its gradient is far above C (sensitivity probe; an
  update that does not move at all means the audit's gradients never reach the trainer);
* on zero gradients every coordinate of ``u`` -- of every parameter tensor, at every step
  of the run, first and last included -- is ``N(0, (σC/B)²)`` (noise-variance probe, exact
  chi-square tests per tensor and per step);
* the noise of different steps, and of different runs started afresh, is independent
  (fresh-noise probe);
* ``clip_C(g_i)`` uses the true per-example gradient (per-sample-gradient probe);
* the batches follow the claimed sampler (:mod:`dpaudit.audit.sampler_check`).

Exact comparisons allow for the precision at which the trainer's update can be compared:
float32 round-off, or an update read back from the parameters (``(w - w')/lr`` loses the
parameters' last digits). It is *measured*, by adding an example whose gradient is known
and never clipped (:func:`comparison_floor`), and enters the tolerance; when it is coarser
than :data:`MAX_FLOOR` of C/B the exact check says ``inconclusive`` instead of guessing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from dpaudit.audit.adapter import TrainerAdapter, optional_method, to_flat
from dpaudit.audit.claim import Claim
from dpaudit.audit.probe_model import (
    LinearProbe,
    MultiProbe,
    device_of,
    dirac_batch,
    linear_loss,
    run_generator,
    spread_steps,
    tensor_sizes,
    weighted_loss,
    zero_loss,
)
from dpaudit.audit.sampler_check import sampler_probe
from dpaudit.audit.verdict import INCONCLUSIVE, PASS, VIOLATION, CheckResult

__all__ = ["fresh_noise_probe", "is_deterministic", "noise_variance_probe", "per_sample_probe",
           "sampler_probe", "sensitivity_probe"]

#: Relative tolerance of exact (noise-cancelling) comparisons, on top of the measured
#: comparison floor (the smallest planted error is a factor 2).
EXACT_RTOL = 1e-3
#: Largest comparison floor (relative to C/B) at which exact checks still decide.
MAX_FLOOR = 0.1

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _roundoff(claim: Claim, dim: int) -> float:
    """Float32 cancellation error when two updates with identical noise are subtracted:
    ~1e-7 relative to the noise per coordinate; 1e-5 leaves a 100x margin."""
    return 1e-5 * claim.update_noise_std * math.sqrt(dim)


def model_size(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _step(adapter: TrainerAdapter, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int,
          loss_fn: LossFn = linear_loss, step: int = 0) -> torch.Tensor:
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


def naive_per_sample_grads(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn) -> torch.Tensor:
    """Per-example gradients by plain autograd, one example at a time: ``(B, P)`` float64."""
    params = [p for p in model.parameters() if p.requires_grad]
    rows = []
    for i in range(x.shape[0]):
        loss = loss_fn(model(x[i : i + 1]), y[i : i + 1]).sum()
        grads = torch.autograd.grad(loss, params)
        rows.append(torch.cat([g.reshape(-1).to(torch.float64) for g in grads]))
    return torch.stack(rows)


def comparison_floor(adapter: TrainerAdapter, model: torch.nn.Module, x0: torch.Tensor, y0: torch.Tensor,
                     ea: tuple[torch.Tensor, torch.Tensor], eb: tuple[torch.Tensor, torch.Tensor],
                     loss_fn: LossFn, seed: int) -> float:
    """L2 error, in units of C/B, of the update's change when one example of the batch is
    swapped for another, both with known gradients far below C (never clipped):
    ``||(u(x0 + a) - u(x0 + b)) - (g_a - g_b) / B||``. Zero for an exact trainer; float32
    round-off, or an update read back from the parameters, make it positive. The batch size
    does not change and nothing is clipped, so clipping or batch-size bugs barely move it;
    a trainer that ignores the given loss_fn does (the check then cannot decide either)."""
    claim = adapter.claim()
    ga = naive_per_sample_grads(model, ea[0], ea[1], loss_fn).cpu()[0]
    gb = naive_per_sample_grads(model, eb[0], eb[1], loss_fn).cpu()[0]
    ua = _step(adapter, model, torch.cat([x0, ea[0]]), torch.cat([y0, ea[1]]), seed, loss_fn)
    ub = _step(adapter, model, torch.cat([x0, eb[0]]), torch.cat([y0, eb[1]]), seed, loss_fn)
    err = float(torch.linalg.norm((ua - ub) - (ga - gb) / claim.expected_batch_size))
    return err / (claim.clip / claim.expected_batch_size)


def _coarse(name: str, floor: float, details: dict[str, Any]) -> CheckResult:
    return CheckResult(name, INCONCLUSIVE,
                       f"the update follows the given loss_fn only to {floor:.3g}·C/B (the trainer ignores loss_fn, or "
                       "reads its update back from the parameters at a coarse precision): too coarse for the exact "
                       "check", None, details)


def _not_reached(name: str, shift: float) -> CheckResult:
    return CheckResult(
        name, INCONCLUSIVE,
        f"adding an example whose gradient is far above C moved the update by {shift:.3g}·C/B (expected exactly "
        "1): the audit's gradients do not reach the trainer (it ignores the given loss_fn or batch), so this and "
        "every check built on them would be blind")


# --------------------------------------------------------------------------- sensitivity
_Case = tuple[str, torch.nn.Module, Any, Any, Any, Any, LossFn, torch.Tensor]


def _sensitivity_cases(claim: Claim, dim: int, magnitude: float, seed: int, dev: torch.device) -> list[_Case]:
    """(label, model, x0, y0, x1, y1, loss, unit direction of the huge gradient) per case:
    Dirac and dense gradients on a LinearProbe, and a gradient spanning the four tensors of
    a MultiProbe (clipping per layer or per tensor shows up there)."""
    c, n_fill = claim.clip, max(1, min(256, round(claim.expected_batch_size)))
    rng = np.random.default_rng(seed)
    dense = rng.standard_normal(dim)
    dense /= np.linalg.norm(dense)
    out: list[_Case] = []
    lin = LinearProbe(dim).to(dev)
    for label, u in (("dirac", np.eye(dim)[0]), ("dense", dense)):
        x0, y0 = dirac_batch(dim, n_fill, device=dev)
        x1 = torch.cat([x0, torch.as_tensor(magnitude * c * u, dtype=torch.float32, device=dev)[None]])
        y1 = torch.zeros(x1.shape[0], dtype=torch.long, device=dev)
        out.append((label, lin, x0, y0, x1, y1, linear_loss, torch.as_tensor(u, dtype=torch.float64)))
    net = MultiProbe().to(dev)
    xe = torch.as_tensor(rng.standard_normal((1, 16)), dtype=torch.float32, device=dev)
    g = naive_per_sample_grads(net, xe, torch.ones(1, device=dev), weighted_loss).cpu()[0]
    k = magnitude * c / float(torch.linalg.norm(g))
    x0 = torch.zeros(n_fill, 16, device=dev)
    y0 = torch.zeros(n_fill, device=dev)
    out.append(("all tensors", net, x0, y0, torch.cat([x0, xe]), torch.cat([y0, torch.full((1,), k, device=dev)]),
                weighted_loss, g / torch.linalg.norm(g)))
    return out


def _exact_shifts(adapter: TrainerAdapter, cases: list, steps: list[int], seed: int) -> dict[str, float]:
    shifts: dict[str, float] = {}
    for j, (label, model, x0, y0, x1, y1, loss, _) in enumerate(cases):
        d = [float(torch.linalg.norm(_step(adapter, model, x1, y1, seed + 97 * j + t, loss, t)
                                     - _step(adapter, model, x0, y0, seed + 97 * j + t, loss, t))) for t in steps]
        shifts[label] = max(d)
    return shifts


def _content_shift(adapter: TrainerAdapter, cases: list, seed: int) -> float:
    """Change of the update (units of C/B) when the huge Dirac example is replaced by a
    huge one on another coordinate (same batch size): sqrt(2) under the claim, 0 when the
    trainer ignores the batch's content."""
    claim = adapter.claim()
    _, model, x0, y0, x1, y1, loss, _ = cases[0]
    x2 = x1.clone()
    x2[-1] = torch.roll(x1[-1], 1)
    d = _step(adapter, model, x1, y1, seed, loss) - _step(adapter, model, x2, y1, seed, loss)
    return float(torch.linalg.norm(d)) / (claim.clip / claim.expected_batch_size)


def _sensitivity_floor(adapter: TrainerAdapter, cases: list, seed: int) -> float:
    """Comparison floor on the MultiProbe (non-zero weights: the case read-back hurts)."""
    _, net, x0, y0, _, _, _, _ = cases[-1]
    dev = x0.device
    w = torch.full((1,), 1e-3, device=dev)
    return comparison_floor(adapter, net, x0, y0, (torch.ones(1, 16, device=dev) * 0.5, w),
                            (-torch.ones(1, 16, device=dev) * 0.3, w), weighted_loss, seed)


def _exact_sensitivity(adapter: TrainerAdapter, cases: list, steps: list[int], seed: int,
                       details: dict[str, Any]) -> CheckResult | tuple[dict[str, float], float]:
    """The deterministic path: reach first (a Dirac moves the update, and its content
    matters), then the comparison floor, then every case's shift."""
    claim = adapter.claim()
    bound = claim.clip / claim.expected_batch_size
    first = _exact_shifts(adapter, cases[:1], steps, seed)
    content = _content_shift(adapter, cases, seed)
    details["content_shift_over_bound"] = content
    if first["dirac"] < 1e-3 * bound or content < 1e-3:
        return _not_reached("sensitivity", min(first["dirac"] / bound, content))
    floor = _sensitivity_floor(adapter, cases, seed)
    details["comparison_floor"] = floor
    if floor > MAX_FLOOR:
        return _coarse("sensitivity", floor, details)
    shifts = {**first, **_exact_shifts(adapter, cases[1:], steps, seed + 1)}
    return shifts, bound * (1 + EXACT_RTOL + 4 * floor) + _roundoff(claim, 16)


def _t_test_shifts(adapter: TrainerAdapter, cases: list, steps: list[int], seed: int, reps: int,
                   alpha: float) -> tuple[dict[str, float], dict[str, float], float]:
    """Non-deterministic trainers: mean shift along the huge gradient's direction over
    ``reps`` paired calls (steps cycling over the run), one-sided t-test against C/B.
    Returns (mean shifts, upper confidence ends, smallest p-value)."""
    from scipy import stats

    claim = adapter.claim()
    bound = claim.clip / claim.expected_batch_size
    means: dict[str, float] = {}
    uppers: dict[str, float] = {}
    p_min = 1.0
    for j, (label, model, x0, y0, x1, y1, loss, u) in enumerate(cases):
        proj = []
        for r in range(reps):
            t = steps[r % len(steps)]
            s = seed * 1000 + 500 * j + r
            proj.append(float((_step(adapter, model, x1, y1, s, loss, t) - _step(adapter, model, x0, y0, s, loss, t)) @ u))
        arr = np.array(proj)
        mean, se = float(arr.mean()), float(arr.std(ddof=1)) / math.sqrt(reps)
        means[label] = mean
        tcrit = float(stats.t.ppf(1 - alpha / len(cases), reps - 1))
        uppers[label] = mean + tcrit * se
        if se > 0:
            p_min = min(p_min, float(stats.t.sf((mean - bound * (1 + EXACT_RTOL)) / se, reps - 1)))
    return means, uppers, min(1.0, p_min * len(cases))


def sensitivity_probe(adapter: TrainerAdapter, *, alpha: float, seed: int = 0, reps: int = 24,
                      magnitude: float = 1e4, dim: int = 16) -> CheckResult:
    """Add one example whose gradient is ``magnitude``·C (Dirac, dense, and spanning all the
    tensors of a :class:`MultiProbe`) to a batch of zero-gradient fillers at steps spread
    over the run; the update must move by exactly C/B (at most C/B is the privacy
    requirement; nothing at all means the gradients never reach the trainer).

    Exact when the trainer is deterministic given the generator (max L2 shift vs C/B with
    the measured comparison floor); otherwise a one-sided t-test of the mean shift along the
    gradient's direction over ``reps`` paired calls.
    """
    claim = adapter.claim()
    bound = claim.clip / claim.expected_batch_size
    dev = device_of(adapter)
    cases = _sensitivity_cases(claim, dim, magnitude, seed, dev)
    steps = spread_steps(claim.steps, 3)
    det = is_deterministic(adapter, dim)
    details: dict[str, Any] = {"bound": bound, "deterministic": det, "magnitude": magnitude, "steps": steps}
    notes: tuple[str, ...] = ()
    p_value = None
    if det:
        exact = _exact_sensitivity(adapter, cases, steps, seed, details)
        if isinstance(exact, CheckResult):
            return exact
        shifts, tol = exact
        violated = [f"{k}: update moved by {v / bound:.4g}·C/B" for k, v in shifts.items() if v > tol]
        conf = None
    else:
        notes = ("noise is not drawn from the audit's generator: statistical test instead of exact",)
        shifts, uppers, p_value = _t_test_shifts(adapter, cases, steps, seed, reps, alpha)
        if max(uppers.values()) < 0.5 * bound:
            return _not_reached("sensitivity", max(shifts.values()) / bound)
        violated = [f"{k}: mean shift {v / bound:.4g}·C/B (t-test)" for k, v in shifts.items()
                    if v > bound] if p_value < alpha else []
        conf = 1 - alpha
    details["shift_over_bound"] = {k: v / bound for k, v in shifts.items()}
    if min(shifts.values()) < 0.5 * bound:
        notes += (f"the update moved by only {min(shifts.values()) / bound:.3g}·C/B: stronger clipping or scaling than "
                  "claimed (private, but the claim's utility model is off)",)
    if violated:
        return CheckResult("sensitivity", VIOLATION, "one example moves the update by more than C/B: " + "; ".join(violated),
                           conf, details, notes, p_value=p_value)
    return CheckResult("sensitivity", PASS,
                       f"a {magnitude:g}·C gradient moves the update by {max(shifts.values()) / bound:.4g}·C/B (bound 1) "
                       f"at steps {steps}, Dirac, dense and across all tensors", conf, details, notes, p_value=p_value)


# --------------------------------------------------------------------------- noise variance
def _noise_groups(adapter: TrainerAdapter, seed: int, calls: int) -> tuple[list[dict[str, Any]], list[int], int]:
    """Standardised noise on zero gradients: one group per parameter tensor (all steps),
    per step (all tensors) and, for Poisson and balls-in-bins claims, on batches of size 2B."""
    claim = adapter.claim()
    dev = device_of(adapter)
    model = MultiProbe().to(dev)
    sizes = tensor_sizes(model)
    bounds = np.cumsum([0] + [n for _, n in sizes])
    b = max(1, round(claim.expected_batch_size))
    steps = spread_steps(claim.steps, 12)
    std = claim.update_noise_std
    x, y = torch.zeros(b, 16, device=dev), torch.zeros(b, dtype=torch.long, device=dev)
    per_step = {t: np.concatenate([_step(adapter, model, x, y, seed * 7919 + 131 * t + k, zero_loss, t).numpy()
                                   for k in range(calls)]).reshape(calls, -1) / std for t in steps}
    groups: list[dict[str, Any]] = []
    allz = np.stack(list(per_step.values()))  # (steps, calls, P)
    for (name, _), lo, hi in zip(sizes, bounds[:-1], bounds[1:]):
        groups.append({"kind": "tensor", "where": name, "z": allz[:, :, lo:hi].ravel()})
    for t, z in per_step.items():
        groups.append({"kind": "step", "where": t, "z": z.ravel()})
    if claim.batching in ("poisson", "balls_in_bins"):  # variable batch sizes: the divisor must not follow them
        x2, y2 = torch.zeros(2 * b, 16, device=dev), torch.zeros(2 * b, dtype=torch.long, device=dev)
        z2 = np.concatenate([_step(adapter, model, x2, y2, seed * 7919 + 17 + k, zero_loss, steps[k % len(steps)]).numpy()
                             for k in range(2 * calls)]) / std
        groups.append({"kind": "batch", "where": 2 * b, "z": z2})
    return groups, steps, b


def noise_variance_probe(adapter: TrainerAdapter, *, alpha: float, seed: int = 0, calls: int = 2) -> CheckResult:
    """On zero gradients the update is ``N(0, (σC/B)² I)`` with B the *expected* batch size:
    each group's ``S = Σ u² / (σC/B)²`` is exactly χ²_n (n coordinates). Groups: every
    parameter tensor of a :class:`MultiProbe` (noise on only part of the parameters), every
    one of 12 steps spread over the run, first and last included (noise that changes during
    the run), and for Poisson and balls-in-bins claims batches of size 2B (a trainer dividing by the *actual*
    batch size |B_t| reveals it, which the analysis does not cover). Too little noise in a
    group (lower tail, Bonferroni over the groups) is a violation; too much is noted."""
    from scipy import stats

    claim = adapter.claim()
    groups, steps, b = _noise_groups(adapter, seed, calls)
    a = alpha / len(groups)
    rows = []
    for g in groups:
        z = g.pop("z")
        s, n = float(np.sum(z * z)), int(z.size)
        rows.append({**g, "chi2": s, "df": n, "p_lower": float(stats.chi2.cdf(s, n)), "p_upper": float(stats.chi2.sf(s, n)),
                     "measured_noise_multiplier": math.sqrt(s / n) * claim.noise_multiplier})
    overall = math.sqrt(np.mean([r["chi2"] / r["df"] for r in rows if r["kind"] == "step"])) * claim.noise_multiplier
    p = min(1.0, len(rows) * min(r["p_lower"] for r in rows))
    details = {"claimed_noise_multiplier": claim.noise_multiplier, "groups": rows, "steps": steps,
               "measured_noise_multiplier": overall}
    low = [r for r in rows if r["p_lower"] < a]
    ev = f"effective sigma {overall:.4g} vs claimed {claim.noise_multiplier:.4g} over {len(rows)} groups"
    if low:
        return CheckResult("noise_variance", VIOLATION, _low_noise_text(low, rows, b) + "; " + ev, 1 - alpha,
                           details, p_value=p)
    notes: tuple[str, ...] = ()
    if any(r["p_upper"] < a for r in rows):
        notes = ("more noise than claimed: private, but the claimed sigma is not what runs",)
    return CheckResult("noise_variance", PASS, ev + f" (every tensor, steps {steps[0]}..{steps[-1]})", 1 - alpha,
                       details, notes, p_value=p)


def _low_noise_text(low: list[dict[str, Any]], rows: list[dict[str, Any]], b: int) -> str:
    """Name the pattern: a batch-size dependence, some tensors, some steps, or everywhere."""
    def sig(r: dict[str, Any]) -> str:
        return f"{r['measured_noise_multiplier']:.3g}"

    kinds = {r["kind"] for r in low}
    if kinds == {"batch"}:
        return f"noise shrinks with the actual batch size (batch {2 * b}: sigma {sig(low[0])}; divided by |B_t|, not the expected B)"
    n_steps = sum(r["kind"] == "step" for r in rows)
    steps_low = [r for r in low if r["kind"] == "step"]
    if steps_low and len(steps_low) < n_steps:
        return "too little noise at step(s) " + ", ".join(f"{r['where']} (sigma {sig(r)})" for r in steps_low)
    n_tensors = sum(r["kind"] == "tensor" for r in rows)
    tensors = [r for r in low if r["kind"] == "tensor"]
    if tensors and len(tensors) < n_tensors:
        return "too little noise in parameter tensor(s) " + ", ".join(f"{r['where']} (sigma {sig(r)})" for r in tensors)
    return "too little noise"


# --------------------------------------------------------------------------- fresh noise
def fresh_noise_probe(adapter: TrainerAdapter, *, alpha: float, seed: int = 0, steps: int = 8, dim: int = 64,
                      runs: int = 3, fresh: Callable[[], TrainerAdapter] | None = None) -> CheckResult:
    """The noise vectors of different steps of one run and of independently seeded runs must
    be independent. ``fresh()`` returns a new copy of the trainer as it was before the audit
    (a new training run: state such as a step counter starts again), one per run; the
    steps are spread over the claimed run, the same step indices in every run (a generator
    seeded from the step index repeats across runs). For independent isotropic Gaussians
    ``(cos+1)/2 ~ Beta((d-1)/2, (d-1)/2)``; every pair is tested two-sided, Bonferroni."""
    from scipy import stats

    claim = adapter.claim()
    dev = device_of(adapter)
    step_ids = spread_steps(claim.steps, steps)
    b = max(1, min(256, round(claim.expected_batch_size)))
    vecs, where = [], []
    for run in range(runs):
        a = fresh() if fresh is not None else adapter
        model = LinearProbe(dim).to(dev)
        x, y = dirac_batch(dim, b, device=dev)
        g = run_generator(seed * 104729 + 17 * run + 1, dev)
        for t in step_ids:
            vecs.append(to_flat(a.privatized_gradient(model, x, y, loss_fn=linear_loss, generator=g, step=t)).numpy())
            where.append(f"run {run} step {t}")
    v = np.stack(vecs)
    norms = np.linalg.norm(v, axis=1)
    if np.any(norms == 0):
        return CheckResult("fresh_noise", INCONCLUSIVE, "some updates on zero gradients are exactly zero: no noise to compare "
                           "(see noise_variance)", None, {"zero_updates": int(np.sum(norms == 0))})
    cos = (v @ v.T) / np.outer(norms, norms)
    iu = np.triu_indices(len(v), 1)
    c = np.clip(cos[iu], -1.0, 1.0)
    a_ = (dim - 1) / 2
    p = 2 * np.minimum(stats.beta.cdf((c + 1) / 2, a_, a_), stats.beta.sf((c + 1) / 2, a_, a_))
    pairs = len(c)
    worst = int(np.argmin(p))
    i, j = iu[0][worst], iu[1][worst]
    p_adj = min(1.0, float(p[worst]) * pairs)
    details = {"pairs": pairs, "runs": runs, "steps": step_ids, "max_abs_cosine": float(np.max(np.abs(c))),
               "min_p": float(p[worst]), "worst_pair": [where[i], where[j]], "fresh_copies": fresh is not None}
    notes = () if fresh is not None else ("the trainer could not be copied: the runs share its state",)
    if p_adj < alpha:
        return CheckResult(
            "fresh_noise", VIOLATION,
            f"noise of {where[i]} and {where[j]} has cosine {c[worst]:.4f} ({pairs} pairs): noise is reused or "
            "correlated" + (" across runs" if where[i].split()[1] != where[j].split()[1] else " within a run"),
            1 - alpha, details, notes, p_value=p_adj)
    return CheckResult("fresh_noise", PASS,
                       f"max |cosine| {np.max(np.abs(c)):.3f} over {pairs} pairs of noise vectors ({runs} fresh runs x "
                       f"steps {step_ids[0]}..{step_ids[-1]}, d={dim})", 1 - alpha, details, notes, p_value=p_adj)


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


def _tiny_ce(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return 1e-4 * torch.nn.functional.cross_entropy(output, target, reduction="none")


def _step_errors(adapter: TrainerAdapter, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                 clipped: torch.Tensor, seed: int) -> list[float]:
    """Errors (units of C/B) of the update's change when examples 2..k join one by one."""
    claim = adapter.claim()
    b, scale = claim.expected_batch_size, claim.clip / claim.expected_batch_size
    prev = _step(adapter, model, x[:1], y[:1], seed, loss_fn=_ce)
    errs = []
    for i in range(2, x.shape[0] + 1):
        cur = _step(adapter, model, x[:i], y[:i], seed, loss_fn=_ce)
        errs.append(float(torch.linalg.norm((cur - prev) - clipped[i - 1] / b)) / scale)
        prev = cur
    return errs


def per_sample_probe(adapter: TrainerAdapter, *, alpha: float, seed: int = 0, k: int = 8) -> CheckResult:
    """Compare the trainer's per-example gradients with naive autograd on a small MLP with
    cross-entropy. Through the step function (exact when deterministic): adding example k to
    a batch must move the update by ``clip_C(∇ℓ_k)/B``, within the measured comparison floor.
    Through ``per_sample_gradients`` when the adapter has it: unclipped gradients must match
    to float32 precision."""
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
    details: dict[str, Any] = {"examples": k, "clipped_fraction": float((norms.squeeze(1) > claim.clip).double().mean())}
    problems, ran = [], []
    if is_deterministic(adapter):
        swap = _step(adapter, model, x[[0, 2]], y[[0, 2]], seed, loss_fn=_ce) - _step(adapter, model, x[[0, 3]],
                                                                                      y[[0, 3]], seed, loss_fn=_ce)
        expected = float(torch.linalg.norm(clipped[2] - clipped[3])) / claim.clip
        details["content_shift_over_expected"] = float(torch.linalg.norm(swap)) / (claim.clip / claim.expected_batch_size) / expected
        if details["content_shift_over_expected"] < 1e-3:
            return _not_reached("per_sample_gradients", 0.0)
        floor = comparison_floor(adapter, model, x[:1], y[:1], (x[1:2], y[1:2]), (x[2:3], y[2:3]), _tiny_ce, seed)
        details["comparison_floor"] = floor
        if floor > MAX_FLOOR:
            return _coarse("per_sample_gradients", floor, details)
        ran.append("step")
        errs = _step_errors(adapter, model, x, y, clipped, seed)
        details["step_max_error_over_C_B"] = max(errs)
        tol = EXACT_RTOL + 4 * floor + _roundoff(claim, model_size(model)) / (claim.clip / claim.expected_batch_size)
        if max(errs) > tol:
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
