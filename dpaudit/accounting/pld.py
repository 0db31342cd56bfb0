"""Tight privacy-loss-distribution (PLD) accountant -- the reference upper bound.

Pipeline (each step keeps the figure an upper bound; details in the modules):

1. one release's PLD on the grid h*Z by connect-the-dots (:mod:`~dpaudit.accounting.pld_pmf`,
   Doroshenko, Ghazi, Kamath, Kumar, Manurangsi 2022, PoPETs, Sec. 3-4);
2. composition by FFT with a Chernoff-certified window (:mod:`~dpaudit.accounting.pld_compose`,
   Koskela, Jälkö, Prediger, Honkela 2021, AISTATS; Zhu, Dong, Wang 2022, AISTATS, Thm 10);
3. epsilon from the discrete privacy curve, exactly (``pld_compose.epsilon_of``).

Both directions of the add/remove relation are composed (the Poisson subsampled Gaussian is
not symmetric) and the larger delta is reported, as in dp_accounting (Doroshenko et al.
2022, Sec. 5). Segments without subsampling (q = 1) are Gaussian mechanisms and are merged
exactly: k Gaussians with noise multipliers s_i are one Gaussian with
mu = sqrt(sum_i k_i / s_i^2) (mu-GDP composition, Dong, Roth, Su 2019, Cor. 2),
whose curve is exact (:mod:`~dpaudit.accounting.gaussian`, Balle & Wang 2018, ICML, Thm 8).
When every segment is unsubsampled that formula is the answer.

Balls-in-bins runs (under ``add_remove`` / ``replace_zero``) are composed epoch by epoch from
the random-allocation PLD of one epoch (:mod:`~dpaudit.accounting.random_allocation`: the
dominating pair of a t-component Gaussian mixture against a Gaussian, discretised soundly);
their fallback bounds count each epoch as one unsubsampled Gaussian release.

Grid (``value_discretization_interval`` h, nats). The connect-the-dots excess shrinks like
h^p, p -> 2 once h is small against the per-release losses (p ~ 1 before). Default ``None``
= automatic: the first pass uses h = 4e-3 (coarser if the loss range needs more than
2^16 cells: tiny noise gives per-release losses of 10^7 nats), later passes aim at h <= 1e-3 x the current epsilon
(so tiny epsilons -- q = 1e-6, or sigma = 50 -- get grids of 1e-7 nats) and refine until
the Richardson estimate of the excess of the last pass,
(eps_prev - eps) h^p / (h_prev^p - h^p), with p fitted to the last three passes and clamped
to [1, 2] (p = 1, the pessimistic choice, with two), is at most ``rel_tol`` (0.25%). The
smallest candidate is reported (each is an upper bound).

Sound fallbacks, said in the notes: where the FFT path cannot answer soundly (delta below
1e-11, or within 20x of the FFT's rounding allowance, ``pld_compose.fp_allowance``) or its
refinement is stopped by the window limit before meeting ``rel_tol``, the tightest of the
RDP bound (:mod:`~dpaudit.accounting.rdp`) and the no-amplification Gaussian bound (every
step counted as an unsubsampled Gaussian release, exact mu-GDP curve) is computed too and
the smallest figure is reported. Nothing is refused.

Imports: numpy and math only (no scipy), so the CLI starts fast.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from dpaudit.accounting.base import EpsilonReport
from dpaudit.accounting.events import (
    AllocationSegment,
    DpSgdRun,
    GaussianSegment,
    check_delta,
    check_epsilon,
)
from dpaudit.accounting.gaussian import gaussian_delta, gaussian_epsilon
from dpaudit.accounting.pld_compose import (
    MAX_WINDOW,
    ComposedPld,
    PrefixComposer,
    WindowTooLarge,
    delta_at,
    epsilon_of,
)
from dpaudit.accounting.pld_pmf import (
    DIRECTIONS,
    LossPmf,
    gaussian_cells,
    gaussian_pmf,
    subsampled_gaussian_cells,
    subsampled_gaussian_pmf,
)
from dpaudit.accounting.random_allocation import OutOfRange, allocation_cells, allocation_pmf
from dpaudit.errors import InvalidParameterError

__all__ = [
    "ACCOUNTANT",
    "DEFAULT_REL_TOL",
    "MIN_DELTA_FFT",
    "PldAccountant",
    "delta_from_segments",
    "epsilon_from_segments",
    "gaussian_delta",
    "gaussian_epsilon",
]

#: Default relative accuracy target of the automatic discretisation (estimated excess).
DEFAULT_REL_TOL = 2.5e-3
#: First grid interval of the automatic mode (nats).
AUTO_START_INTERVAL = 4e-3
#: Window (cells) of the first automatic pass: a loss range wider than FIRST_WINDOW x 4e-3
#: nats (tiny noise) starts on a coarser grid, relative to the range.
FIRST_WINDOW = 1 << 16
#: Later passes aim at an interval of at most this fraction of the current epsilon.
REL_INTERVAL = 1e-3
#: Passes of the automatic mode (the first included).
MAX_PASSES = 7
#: Largest ratio of consecutive intervals from which the excess is extrapolated.
_MAX_RATIO = 8.0
#: Smallest delta the FFT path accepts (its absolute numerical floor is ~1e-14).
MIN_DELTA_FFT = 1e-11
#: Grid interval of :func:`delta_from_segments` when none is given (nats).
DELTA_INTERVAL = 5e-4

_ALLOWANCE_NOTE = ("the FFT's rounding allowance is above delta / 20 for this many releases, "
                   "which loosens the PLD figure")
_PLD_METHOD = ("PLD: connect-the-dots discretisation (Doroshenko et al. 2022) + FFT composition "
               "(Koskela et al. 2021), max over add/remove")
_GAUSS_METHOD = "exact Gaussian composition (mu-GDP; Balle & Wang 2018 Thm 8)"
_ALLOC_METHOD = ("PLD of random allocation (balls-in-bins): per-epoch mixture-vs-Gaussian pair "
                 "discretised by mean-preserving spreads + connect-the-dots, FFT composition, "
                 "max over add/remove")


class _FftUnsound(Exception):
    """The FFT path cannot give a sound figure here (the reason is the message)."""


Segment = GaussianSegment | AllocationSegment


# ---------------------------------------------------------------------------- grid passes
def _split(segments: Sequence[Segment]) -> tuple[float, list[Segment]]:
    """(mu^2 of the merged unsubsampled part, the other segments: subsampled Gaussians and
    balls-in-bins epochs); sigma = inf dropped."""
    mu2 = 0.0
    sub: list[Segment] = []
    for s in segments:
        if math.isinf(s.noise_multiplier):
            continue
        if isinstance(s, GaussianSegment) and s.sample_rate >= 1.0:
            mu2 += s.count / s.noise_multiplier**2
        else:
            sub.append(s)
    return mu2, sub


def _no_amplification(segments: Sequence[Segment]) -> list[GaussianSegment]:
    """Every balls-in-bins epoch as the unsubsampled Gaussian release that dominates it."""
    return [s.without_amplification() if isinstance(s, AllocationSegment) else s for s in segments]


def _release_cells(s: Segment, h: float, direction: str, log_tail: float) -> int:
    if isinstance(s, AllocationSegment):
        return allocation_cells(s, h, direction, log_tail)
    return subsampled_gaussian_cells(s.sample_rate, s.noise_multiplier, h, direction, log_tail)


def _release_pmf(s: Segment, h: float, direction: str, log_tail: float) -> LossPmf:
    if isinstance(s, AllocationSegment):
        return allocation_pmf(s, h, direction, log_tail)
    return subsampled_gaussian_pmf(s.sample_rate, s.noise_multiplier, h, direction, log_tail)


def _check_fft(delta: float, comps: Sequence[PrefixComposer] = ()) -> bool:
    """Raise :class:`_FftUnsound` where the FFT figure would not be an upper bound or
    would be meaningless (delta below the floor, rounding allowance above delta / 2);
    return ``False`` when the allowance distorts the figure (above delta / 20), so that
    the caller also computes the fallback bounds."""
    if delta < MIN_DELTA_FFT:
        raise _FftUnsound(f"delta = {delta:g} is below the FFT path's numerical floor {MIN_DELTA_FFT:g}")
    worst = max((c.fp_allowance for c in comps), default=0.0)
    if worst > delta / 2.0:
        raise _FftUnsound(
            f"the FFT's rounding allowance ({worst:.1e}) for this many releases exceeds delta / 2"
        )
    return worst <= delta / 20.0


def _check_sizes(checkpoints: Sequence[Sequence[Segment]], h: float, log_tail: float,
                 max_window: int) -> None:
    """Raise :class:`WindowTooLarge` before allocating when one release's PMF is too wide."""
    limit = max_window // 2
    cells = 0
    for grp in checkpoints:
        mu2, sub = _split(grp)
        if mu2 > 0:
            cells = max(cells, gaussian_cells(math.sqrt(mu2), h, log_tail))
        for seg in set(sub):
            for direction in DIRECTIONS:
                cells = max(cells, _release_cells(seg, h, direction, log_tail))
    if cells > limit:
        raise WindowTooLarge(cells / limit)


def _groups(
    checkpoints: Sequence[Sequence[Segment]], h: float, log_tail: float, direction: str
) -> list[list[tuple[LossPmf, int]]]:
    """Per checkpoint, the (pmf, count) items to compose in ``direction``; unsubsampled
    (q = 1) segments of a checkpoint become one Gaussian."""
    table: dict[Segment, LossPmf] = {}
    out: list[list[tuple[LossPmf, int]]] = []
    for grp in checkpoints:
        mu2, sub = _split(grp)
        items = []
        for s in sub:
            key = dataclasses.replace(s, count=1)
            if key not in table:
                table[key] = _release_pmf(key, h, direction, log_tail)
            items.append((table[key], s.count))
        if mu2 > 0:
            items.append((gaussian_pmf(math.sqrt(mu2), h, log_tail), 1))
        out.append(items)
    return out


def _compose_run(
    checkpoints: Sequence[Sequence[Segment]],
    h: float,
    log_target: float,
    progress: Callable[[int, int], None] | None = None,
    max_window: int = MAX_WINDOW,
) -> tuple[PrefixComposer, PrefixComposer, float]:
    """Compose checkpoints of segments under both directions, coarsening h as far as a
    window of ``max_window`` cells needs. Returns (remove-direction composer,
    add-direction composer, h used); iterate them in step for the checkpoints' PLDs."""
    total = sum(s.count for grp in checkpoints for s in grp)
    log_tail = min(log_target, -20.0) - math.log(total + 1)
    for _ in range(40):
        try:
            _check_sizes(checkpoints, h, log_tail, max_window)
            rem = PrefixComposer(_groups(checkpoints, h, log_tail, "remove"), h, log_target,
                                 max_window=max_window, progress=progress)
            add = PrefixComposer(_groups(checkpoints, h, log_tail, "add"), h, log_target,
                                 max_window=max_window)
            return rem, add, h
        except OutOfRange as exc:
            raise _FftUnsound(str(exc)) from None
        except WindowTooLarge as exc:
            h *= max(2.0, 1.1 * exc.factor)
    raise _FftUnsound("the privacy loss range is too wide for the FFT window")


def _eps_pair(rem: ComposedPld, add: ComposedPld, delta: float) -> float:
    return max(epsilon_of(rem, delta), epsilon_of(add, delta))


def _order(hs: Sequence[float], es: Sequence[float]) -> float:
    """p in [1, 2] with e(h) = e* + C h^p through the three points (bisection); the
    smaller p (larger estimated excess) when the fit is outside that range."""
    target = (es[0] - es[1]) / (es[1] - es[2])

    def ratio(p: float) -> float:
        return (hs[0] ** p - hs[1] ** p) / (hs[1] ** p - hs[2] ** p)

    lo, hi = 1.0, 2.0
    if target <= ratio(lo):
        return lo
    if target >= ratio(hi):
        return hi
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if ratio(mid) < target:
            lo = mid
        else:
            hi = mid
    return lo


def _excess(hs: Sequence[float], es: Sequence[float]) -> tuple[float, float]:
    """(Richardson estimate of the discretisation excess of the last pass, fitted order);
    ``inf`` when the last two grids are too far apart to extrapolate."""
    if len(hs) < 2 or hs[-2] / hs[-1] > _MAX_RATIO:
        return math.inf, 1.0
    diff = es[-2] - es[-1]
    if diff <= 0.0:  # no gain from refining: converged (to rounding)
        return 0.0, 2.0
    p = 1.0
    if len(hs) >= 3 and hs[-3] / hs[-2] <= _MAX_RATIO and es[-3] - es[-2] > 0.0:
        p = _order(hs[-3:], es[-3:])
    return diff * hs[-1] ** p / (hs[-2] ** p - hs[-1] ** p), p


@dataclass(frozen=True)
class _Outcome:
    """FFT-path result: epsilon per checkpoint, the grid used, notes, and whether the
    automatic refinement met its tolerance (always ``True`` for a fixed grid)."""

    eps: list[float]
    h: float
    notes: tuple[str, ...]
    converged: bool = True


def _fixed(checkpoints: Sequence[Sequence[Segment]], delta: float, interval: float,
           progress: Callable[[int, int], None] | None) -> _Outcome:
    rem, add, h = _compose_run(checkpoints, interval, math.log(1e-3 * delta), progress)
    clean = _check_fft(delta, [rem, add])
    notes: tuple[str, ...] = () if h == interval else (f"loss grid coarsened from {interval:g} to {h:g} nats to fit the window",)
    if not clean:
        notes += (_ALLOWANCE_NOTE,)
    return _Outcome([_eps_pair(r, a, delta) for r, a in zip(rem, add)], h, notes, clean)


def _next_interval(hs: list[float], es: list[float], excess: float, p: float, rel_tol: float) -> float:
    h, best = hs[-1], min(es)
    if math.isfinite(excess) and excess > 0.0:
        nxt = 0.9 * h * (rel_tol * best / excess) ** (1.0 / p)
    else:
        nxt = h / 2.0
    nxt = min(max(nxt, h / _MAX_RATIO), h / 2.0)
    return min(nxt, REL_INTERVAL * best) if best > 0.0 else nxt


def _auto(checkpoints: Sequence[Sequence[Segment]], delta: float, rel_tol: float,
          progress: Callable[[int, int], None] | None) -> _Outcome:
    """Automatic grid (module docstring): passes on the whole run until the estimated
    excess is at most ``rel_tol``; then, for several checkpoints, one pass over all of
    them at twice the last grid interval (the last checkpoint keeps the converged figure).
    Every candidate is an upper bound; the smallest is kept."""
    log_target = math.log(1e-3 * delta)
    merged = [[s for grp in checkpoints for s in grp]]
    hs: list[float] = []
    es: list[float] = []
    h = AUTO_START_INTERVAL
    converged = False
    clean = True
    for i in range(MAX_PASSES):
        rem, add, h_used = _compose_run(merged, h, log_target,
                                        max_window=FIRST_WINDOW if i == 0 else MAX_WINDOW)
        clean = _check_fft(delta, [rem, add]) and clean
        e = _eps_pair(next(iter(rem)), next(iter(add)), delta)
        if i > 0 and h_used > hs[-1] / 1.5:  # the window allows no markedly finer grid
            es[-1] = min(es[-1], e)
            break
        hs.append(h_used)
        es.append(e)
        if not math.isfinite(e):
            break
        if e == 0.0:
            converged = True
            break
        excess, p = _excess(hs, es)
        if excess <= rel_tol * min(es):
            converged = True
            break
        h = _next_interval(hs, es, excess, p, rel_tol)
    notes: tuple[str, ...] = ()
    if not converged:
        notes = (f"loss grid refinement stopped at {hs[-1]:g} nats before its estimated excess "
                 f"met {rel_tol:g} (window limit)",)
    best = min(range(len(es)), key=es.__getitem__)
    if len(checkpoints) > 1:
        # Curve points on a grid twice as coarse as the last pass (excess ~4x rel_tol, still
        # upper bounds); the last point is the converged figure (below).
        rem, add, h_used = _compose_run(checkpoints, 2.0 * hs[-1], log_target, progress)
        clean = _check_fft(delta, [rem, add]) and clean
        eps = [_eps_pair(r, a, delta) for r, a in zip(rem, add)]
        eps[-1] = min(eps[-1], es[best])
    else:
        eps, h_used = [es[best]], hs[best]
    if not clean:
        notes += (_ALLOWANCE_NOTE,)
    return _Outcome(eps, h_used, notes, converged and clean)


# ---------------------------------------------------------------------------- fallbacks
def other_bounds(checkpoints: Sequence[Sequence[Segment]], delta: float) -> list[tuple[float, str]]:
    """Per checkpoint (cumulative), the tightest of two sound bounds that need no grid, with
    its name: RDP (Mironov, Talwar, Zhang 2019 + Balle et al. 2020 Thm 21, dp-accounting's
    orders) and the no-amplification Gaussian bound (each subsampled step counted as an
    unsubsampled Gaussian release, which dominates it; exact mu-GDP curve). A balls-in-bins
    epoch counts as one unsubsampled Gaussian release (each example is used at most once)."""
    import numpy as np

    from dpaudit.accounting.conversions import rdp_to_epsilon
    from dpaudit.accounting.rdp import DEFAULT_ORDERS, rdp_of_segments

    plain = [_no_amplification(grp) for grp in checkpoints]
    with np.errstate(invalid="ignore", over="ignore"):
        cum = np.cumsum(np.stack([rdp_of_segments(grp) for grp in plain]), axis=0)
    rdp_eps = np.atleast_1d(rdp_to_epsilon(DEFAULT_ORDERS, cum, delta)[0])
    out = []
    mu2 = 0.0
    for grp, e_rdp in zip(plain, rdp_eps):
        mu2 += sum(s.count / s.noise_multiplier**2 for s in grp if not math.isinf(s.noise_multiplier))
        e_gauss = gaussian_epsilon(math.sqrt(mu2), delta)
        out.append((float(e_rdp), "RDP") if e_rdp <= e_gauss else (e_gauss, "no-amplification Gaussian"))
    return out


def _with_fallback(checkpoints: Sequence[Sequence[Segment]], delta: float, out: _Outcome | None,
                   reason: str) -> tuple[list[float], tuple[str, ...], str]:
    """Element-wise minimum of the FFT figures (if any) and :func:`other_bounds`."""
    others = other_bounds(checkpoints, delta)
    if out is None:
        eps = [e for e, _ in others]
        name = others[-1][1]
        return eps, (f"{reason}; the figure is the {name} bound, the tightest other sound bound",), name
    eps = [min(a, b) for a, (b, _) in zip(out.eps, others)]
    if others[-1][0] < out.eps[-1]:
        name = others[-1][1]
        return eps, out.notes + (f"the {name} bound is tighter than the PLD figure here and is reported",), name
    return eps, out.notes, "pld"


def _epsilons(
    checkpoints: Sequence[Sequence[Segment]],
    delta: float,
    interval: float | None,
    rel_tol: float,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[float], tuple[str, ...], str]:
    """Cumulative epsilon at each checkpoint (at least one subsampled segment), notes, and
    the name of the bound reported for the last checkpoint (``pld`` or a fallback)."""
    try:
        _check_fft(delta)
        out = _fixed(checkpoints, delta, interval, progress) if interval else _auto(
            checkpoints, delta, rel_tol, progress)
    except _FftUnsound as exc:
        return _with_fallback(checkpoints, delta, None, f"PLD not applicable ({exc})")
    notes = out.notes + (f"loss grid interval {out.h:g} nats",)
    if out.converged and all(math.isfinite(e) for e in out.eps):
        return out.eps, notes, "pld"
    return _with_fallback(checkpoints, delta, _Outcome(out.eps, out.h, notes), "")


# ---------------------------------------------------------------------------- front ends
def epsilon_from_segments(
    segments: Sequence[Segment],
    delta: float,
    *,
    interval: float | None = None,
    rel_tol: float = DEFAULT_REL_TOL,
) -> tuple[float, tuple[str, ...]]:
    """Upper bound on epsilon at ``delta`` for the composition of ``segments`` (add/remove
    for subsampled segments and balls-in-bins epochs; the Gaussian mechanism for q = 1).
    Returns (eps, notes)."""
    eps, notes, _ = _epsilon_report(segments, check_delta(delta), interval, rel_tol)
    return eps, notes


def _epsilon_report(
    segments: Sequence[Segment], delta: float, interval: float | None, rel_tol: float
) -> tuple[float, tuple[str, ...], str]:
    mu2, sub = _split(segments)
    if not sub:
        return gaussian_epsilon(math.sqrt(mu2), delta), ("exact Gaussian (mu-GDP) curve",), _GAUSS_METHOD
    eps, notes, used = _epsilons([list(segments)], delta, interval, rel_tol)
    if math.isinf(eps[-1]):
        notes = notes + ("no finite epsilon: infinity/tail mass of the PLD exceeds delta",)
    if used == "pld":
        alloc = any(isinstance(x, AllocationSegment) for x in sub)
        return eps[-1], notes, _ALLOC_METHOD if alloc else _PLD_METHOD
    return eps[-1], notes, f"{used} bound (fallback of the PLD accountant; see notes)"


def delta_from_segments(
    segments: Sequence[Segment], epsilon: float, *, interval: float | None = None
) -> float:
    """Upper bound on delta at ``epsilon`` for the composition of ``segments``
    (grid interval ``interval``, default 5e-4 nats, coarsened if the window needs it).
    Where the FFT path cannot answer, the tightest of the RDP and no-amplification
    Gaussian deltas."""
    check_epsilon(epsilon)
    mu2, sub = _split(segments)
    if not sub:
        return gaussian_delta(math.sqrt(mu2), epsilon)
    try:
        rem, add, _ = _compose_run([list(segments)], interval or DELTA_INTERVAL, math.log(1e-15))
        return max(delta_at(next(iter(rem)), epsilon), delta_at(next(iter(add)), epsilon))
    except _FftUnsound:
        from dpaudit.accounting.conversions import rdp_to_delta
        from dpaudit.accounting.rdp import DEFAULT_ORDERS, rdp_of_segments

        plain = _no_amplification(segments)
        mu_all = math.sqrt(sum(s.count / s.noise_multiplier**2 for s in plain
                               if not math.isinf(s.noise_multiplier)))
        d_rdp = rdp_to_delta(DEFAULT_ORDERS, rdp_of_segments(plain), epsilon)[0]
        return min(d_rdp, gaussian_delta(mu_all, epsilon))


def _run_segments(run: DpSgdRun) -> tuple[Segment, ...]:
    """What the PLD accountant composes for ``run``: its segments, or for balls-in-bins
    (``add_remove`` / ``replace_zero``) one random-allocation PLD per epoch."""
    if run.allocation_applies:
        return tuple(x for grp in run.allocation_checkpoint_segments([run.epochs]) for x in grp)
    return run.segments()


@dataclass(frozen=True)
class PldAccountant:
    """Tight PLD accountant (see the module docstring).

    ``value_discretization_interval``: grid interval of the privacy loss in nats; ``None``
    (default) refines automatically until the estimated excess is below ``rel_tol``
    (relative). Every value is an upper bound whatever the setting.
    """

    name: str = "pld"
    value_discretization_interval: float | None = None
    rel_tol: float = DEFAULT_REL_TOL

    def __post_init__(self) -> None:
        h = self.value_discretization_interval
        if h is not None and not (math.isfinite(h) and 0.0 < h <= 1.0):
            raise InvalidParameterError(f"discretisation interval must be in (0, 1], got {h!r}")
        if not 0.0 < self.rel_tol < 1.0:
            raise InvalidParameterError(f"rel_tol must be in (0, 1), got {self.rel_tol!r}")

    def epsilon(self, run: DpSgdRun, delta: float, *, extras: bool = True) -> EpsilonReport:
        """Upper bound on epsilon at ``delta``; ``extras`` adds the run-level figures of
        shuffled runs (:mod:`dpaudit.accounting.extras`)."""
        delta = check_delta(delta)
        eps, notes, method = _epsilon_report(
            _run_segments(run), delta, self.value_discretization_interval, self.rel_tol
        )
        rep = EpsilonReport.for_run(run, self.name, eps, delta, method=method, notes=notes)
        if not extras:
            return rep
        from dpaudit.accounting.extras import add_run_extras

        return add_run_extras(self, run, delta, rep)

    def delta(self, run: DpSgdRun, epsilon: float) -> float:
        return delta_from_segments(
            _run_segments(run), check_epsilon(epsilon), interval=self.value_discretization_interval
        )

    def epsilon_curve(
        self,
        run: DpSgdRun,
        delta: float,
        epochs: Sequence[int] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[float]:
        """Cumulative epsilon after each epoch in ``epochs`` (1-based, increasing; default
        every epoch; extra segments count at the last epoch), composing the chunks'
        PLDs incrementally on one FFT window (one inverse FFT per point)."""
        delta = check_delta(delta)
        groups: Sequence[Sequence[Segment]] = (
            run.allocation_checkpoint_segments(epochs) if run.allocation_applies
            else run.checkpoint_segments(epochs)
        )
        if all(not _split(g)[1] for g in groups):
            out, mu2 = [], 0.0
            for g in groups:
                mu2 += _split(g)[0]
                out.append(gaussian_epsilon(math.sqrt(mu2), delta))
            return out
        eps, _, _ = _epsilons(groups, delta, self.value_discretization_interval, self.rel_tol, progress)
        return eps


ACCOUNTANT = PldAccountant()

