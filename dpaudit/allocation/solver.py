"""Solve a schedule's free scale so the planned run spends a target epsilon exactly.

Given (epsilon, delta), the run's shape (N, B or q, epochs, batching), an accountant and a
scale-free schedule shape_t (:mod:`dpaudit.allocation.schedules`), find sigma_0 with

    target - tol <= eps_acc(run with sigma_t = sigma_0 * shape_t, delta) <= target.

Soundness: every accountant here returns an upper bound on epsilon that is non-increasing in
each sigma_t, so the accepted run spends at most the target; the plan's epsilon is the
accountant's own evaluation of exactly the returned run (no interpolation), and a report the
accountant marks unsound, or an :class:`~dpaudit.errors.OutOfValidityError`, is never
accepted (the search treats it as "too much privacy spent" and adds noise).

Speed: the search (:func:`dpaudit.allocation.rootfind.find_scale`) starts from a guess. The
analytic guess is the zCDP-style approximation rho(s) = sum_t n_t q^2 / sigma_t^2 for
subsampled steps (Mironov, Talwar, Zhang 2019, Sec. 3.3: the sampled Gaussian's RDP is about
q^2 alpha / sigma^2 for small q) or 1/(2 sigma_t^2) per unsampled Gaussian release (Bun &
Steinke 2016, Prop. 1.6), converted with eps = rho + 2 sqrt(rho log(1/delta)) (Bun & Steinke
2016, Prop. 1.3). For a costly accountant (``pld``, ``cdp``) or a non-constant schedule it
is refined first: the *constant*-noise run is solved with RDP (one segment, a few ms) and its
sigma_c is mapped to the schedule by equal sum_t n_t / sigma_t^2
(:func:`_equivalent_factor`); the real search starts there with RDP's local log-log slope
and typically needs 3-4 evaluations of the (possibly costly, many-segment) run.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

from dpaudit.accounting import TIGHTEST
from dpaudit.accounting.base import Accountant, EpsilonReport, ProgressFn
from dpaudit.accounting.curve import CURVE_POINTS
from dpaudit.accounting.curve import epsilon_curve as _curve
from dpaudit.accounting.events import (
    DEFAULT_DELTA,
    DEFAULT_EPOCHS,
    DpSgdRun,
    GaussianSegment,
    check_delta,
    check_epsilon,
    normalize_batching,
)
from dpaudit.allocation.plan import Plan
from dpaudit.allocation.rootfind import DEFAULT_SLOPE, find_scale
from dpaudit.allocation.rule import ValidationRule
from dpaudit.allocation.schedules import SCHEDULES, Schedule, ValidationDecay, make_schedule
from dpaudit.errors import InvalidParameterError, OutOfValidityError

#: Width of the acceptance window: target - TOL <= spent <= target.
TOL = 1e-3
#: Accountants too slow to search from an analytic guess; RDP solves their starting point.
_COSTLY = ("pld", "cdp")
#: Range of sigma_0 the search explores.
SCALE_MIN, SCALE_MAX = 1e-2, 1e4


def _resolve(accountant: str | Accountant) -> tuple[str, Accountant]:
    if isinstance(accountant, str):
        from dpaudit.accounting import ACCOUNTANTS, SOUND_ACCOUNTANTS, get_accountant

        if accountant in ACCOUNTANTS and accountant not in SOUND_ACCOUNTANTS:
            raise InvalidParameterError(
                f"accountant {accountant!r} is a heuristic, not a sound bound; plan with one of "
                f"{', '.join(SOUND_ACCOUNTANTS)}"
            )
        return accountant, get_accountant(accountant)
    return str(getattr(accountant, "name", type(accountant).__name__)), accountant


def _analytic_guess(base: DpSgdRun, target: float, delta: float) -> float:
    """sigma_0 from the zCDP approximation (see module docstring); only a starting point."""
    rho1 = 0.0
    for seg in base.segments():
        if seg.sample_rate < 1.0:
            rho1 += seg.count * seg.sample_rate**2 / seg.noise_multiplier**2
        else:
            rho1 += seg.count / (2.0 * seg.noise_multiplier**2)
    L = math.log(1.0 / delta)
    r = math.sqrt(L + target) - math.sqrt(L)  # sqrt(rho) solving rho + 2 sqrt(rho L) = target
    if rho1 <= 0 or r <= 0:
        return 1.0
    return min(max(math.sqrt(rho1) / r, SCALE_MIN), SCALE_MAX)


def _equivalent_factor(base: DpSgdRun, shape: Sequence[float]) -> float:
    """sqrt(sum_t n_t / shape_t^2 / sum_t n_t): a constant sigma_c and the schedule with
    sigma_0 = sigma_c * factor have the same sum_t n_t / sigma_t^2 (the small-q RDP and the
    zCDP cost of the run, Mironov et al. 2019 Sec. 3.3; Bun & Steinke 2016 Lemma 2.3)."""
    n = [base.steps_in_epoch(e) for e in range(len(shape))]
    return math.sqrt(sum(k / v**2 for k, v in zip(n, shape)) / sum(n))


def _evaluator(acc: Accountant, base: DpSgdRun, shape: Sequence[float], delta: float,
               progress: ProgressFn | None = None) -> Callable[[float], tuple[float, EpsilonReport]]:
    count = 0

    def evaluate(s: float) -> tuple[float, EpsilonReport]:
        nonlocal count
        run = base.with_noise([s * v for v in shape])
        rep = acc.epsilon(run, delta)
        count += 1
        if progress is not None:
            progress("noise search", count, None)
        if not rep.sound:
            raise OutOfValidityError("accountant reported an unsound figure")
        return rep.epsilon, rep

    return evaluate


def _with_releases(run: DpSgdRun, releases: Sequence[tuple[float, float]],
                   initial: Sequence[tuple[float, float, int]] = ()) -> DpSgdRun:
    """``run`` plus one (q, sigma) Poisson-subsampled Gaussian release per step for each of
    ``releases`` and the ``initial`` (q, sigma, count) releases made before the first step
    (replacing any extra segments it had)."""
    if not releases and not initial:
        return run
    return dataclasses.replace(run, extra_segments=tuple(
        GaussianSegment(q, sv, run.total_steps) for q, sv in releases) + tuple(
        GaussianSegment(q, sv, int(n)) for q, sv, n in initial))


def _slope(evals: Sequence[Any]) -> float:
    """log-log slope between the two last finite, distinct evaluations (or the default)."""
    pts = [e for e in evals if 0 < e.epsilon < math.inf]
    if len(pts) >= 2:
        a, b = pts[-2], pts[-1]
        if a.s != b.s and a.epsilon != b.epsilon:
            sl = (math.log(b.epsilon) - math.log(a.epsilon)) / (math.log(b.s) - math.log(a.s))
            if sl < -1e-3:
                return sl
    return DEFAULT_SLOPE


class _WithReleases:
    """An accountant that adds, to every run it is given, one release per step of that run
    for each (q, sigma) of ``releases`` (a prefix carries the releases of its own steps)."""

    def __init__(self, inner: Accountant, releases: tuple[tuple[float, float], ...],
                 initial: tuple[tuple[float, float, int], ...] = ()) -> None:
        self.inner = inner
        self.releases = releases
        self.initial = initial
        self.name = inner.name

    def epsilon(self, run: DpSgdRun, delta: float) -> EpsilonReport:
        return self.inner.epsilon(_with_releases(run, self.releases, self.initial), delta)

    def delta(self, run: DpSgdRun, epsilon: float) -> float:
        return self.inner.delta(_with_releases(run, self.releases, self.initial), epsilon)


def epsilon_curve(acc: Accountant, run: DpSgdRun, delta: float,
                  progress: ProgressFn | None = None) -> tuple[float, ...]:
    """Cumulative epsilon after each epoch (:func:`dpaudit.accounting.curve.epsilon_curve`)."""
    return _curve(acc, run, delta, progress=progress)


def _start(acc_name: str, base: DpSgdRun, shape: Sequence[float], target: float, tol: float,
           delta: float) -> tuple[float, float, int]:
    """(starting sigma_0, log-log slope, evaluations spent) for the search (module
    docstring): the analytic guess, refined by an RDP pre-solve of the constant run for
    costly accountants and non-constant schedules."""
    guess = _analytic_guess(base.with_noise(shape), target, delta)
    if acc_name not in _COSTLY and all(v == shape[0] for v in shape):
        return guess, DEFAULT_SLOPE, 0
    # Pre-solve the constant-noise run with RDP (one segment: cheap) and map its sigma
    # to the schedule by equal total zCDP-style cost, sum_t n_t / sigma_t^2.
    try:
        _, rdp = _resolve("rdp")
        pre = find_scale(_evaluator(rdp, base, [1.0] * len(shape), delta), target, tol,
                         _analytic_guess(base, target, delta), s_min=SCALE_MIN, s_max=SCALE_MAX)
    except (ImportError, InvalidParameterError, OutOfValidityError):
        return guess, DEFAULT_SLOPE, 0  # RDP unavailable or out of range: analytic guess
    return pre.best.s * _equivalent_factor(base, shape), _slope(pre.evaluations), len(pre.evaluations)


def _check_request(target_epsilon: float, delta: float, tol: float, batching: str,
                   schedule: Schedule | str) -> tuple[float, float, Schedule]:
    target = check_epsilon(target_epsilon)
    if target <= 0:
        raise InvalidParameterError("target epsilon must be > 0")
    delta = check_delta(delta)
    if not (tol > 0 and math.isfinite(tol)):
        raise InvalidParameterError(f"tolerance must be > 0, got {tol!r}")
    normalize_batching(batching)  # one readable error for an unknown batching
    sched = make_schedule(schedule) if isinstance(schedule, str) else schedule
    if not isinstance(sched, Schedule):
        raise InvalidParameterError(f"schedule must be one of {', '.join(SCHEDULES)}")
    return target, delta, sched


def solve_plan(
    target_epsilon: float,
    delta: float = DEFAULT_DELTA,
    *,
    dataset_size: int | None = None,
    batch_size: int | None = None,
    sample_rate: float | None = None,
    epochs: float = DEFAULT_EPOCHS,
    batching: str = "poisson",
    accountant: str | Accountant = TIGHTEST,
    schedule: Schedule | str = "constant",
    tol: float = TOL,
    curve: bool = True,
    per_step_releases: Sequence[tuple[float, float]] = (),
    initial_releases: Sequence[tuple[float, float, int]] = (),
    steps_rule: str = "whole_epochs",
    progress: ProgressFn | None = None,
) -> Plan:
    """Plan per-epoch noise so the run spends ``target_epsilon`` at ``delta``.

    Args:
        target_epsilon: budget epsilon (> 0).
        delta: budget delta in (0, 1).
        dataset_size, batch_size: N and B (q = B/N); or give ``sample_rate`` q
            (:func:`~dpaudit.accounting.events.fill_shape_defaults` fills the documented
            defaults for callers that want them).
        epochs: number of epochs (may be fractional: the last epoch is then partial);
            ``steps_rule`` says how they become steps (``DpSgdRun.create``).
        batching: ``"poisson"``, ``"shuffle"`` or ``"balls_in_bins"`` (also
            ``"balls-in-bins"``), analysed by each accountant soundly (``pld`` composes the
            random-allocation PLD of balls-in-bins; the others its no-amplification view).
        accountant: a registered sound accountant name (``rdp``, ``ma``, ``cdp``, ``pld``)
            or an object with ``name`` and ``epsilon(run, delta) -> EpsilonReport``.
        schedule: a :class:`Schedule` or a schedule name (default parameters).
        tol: acceptance window width; the plan spends epsilon in [target - tol, target]
            (the window is narrowed to target/2 for targets below 2 tol).
        curve: also compute the cumulative epsilon after each epoch (at most
            :data:`~dpaudit.accounting.curve.CURVE_POINTS` checkpoints; epochs between take
            the next checkpoint's value, an upper bound).
        per_step_releases: further releases made once per training step, each a
            Poisson-subsampled Gaussian ``(sample_rate, noise_multiplier)`` with fixed noise
            (e.g. the private validation query of update screening); they are composed into
            every evaluation, so the gradient noise is solved for what is left of the budget.
        initial_releases: releases made once before training, each ``(sample_rate,
            noise_multiplier, count)`` (e.g. privately computed data statistics); composed
            into every evaluation and into every point of the per-epoch curve.
        progress: ``progress(stage, done, total)`` after each accountant evaluation of the
            search (total ``None``) and each point of the cumulative curve.

    Returns:
        A :class:`Plan`. Raises :class:`InvalidParameterError` for bad input or an
        infeasible target (too small for sigma_0 <= 1e4, too large for sigma_0 >= 0.01).
    """
    batching = normalize_batching(batching)
    target, delta, sched = _check_request(target_epsilon, delta, tol, batching, schedule)
    name, acc = _resolve(accountant)
    tol = min(tol, target / 2)

    releases = tuple((float(q), float(sv)) for q, sv in per_step_releases)
    initial = tuple((float(q), float(sv), int(n)) for q, sv, n in initial_releases)
    base = _with_releases(DpSgdRun.create(
        noise_multiplier=1.0,
        dataset_size=dataset_size,
        batch_size=batch_size,
        sample_rate=sample_rate,
        epochs=epochs,
        batching=batching,
        steps_rule=steps_rule,
    ), releases, initial)
    shape = sched.shape(base.epochs)
    guess, slope, n_pre = _start(name, base, shape, target, tol, delta)
    res = find_scale(_evaluator(acc, base, shape, delta, progress), target, tol, guess, slope=slope,
                     s_min=SCALE_MIN, s_max=SCALE_MAX)
    best = res.best
    rep: EpsilonReport = best.payload
    notes: list[str] = []
    if not res.hit_window:
        notes.append(
            f"{name} epsilon jumps over the window [{target - tol:.6g}, {target:.6g}] "
            f"(discretised accountant); the plan spends {best.epsilon:.6g} <= target"
        )
    notes.extend(rep.notes)
    scale = best.s
    run = base.with_noise([scale * v for v in shape])
    cum: tuple[float, ...] = ()
    if curve:
        # Per-epoch prefixes carry the releases of their own steps (and the initial ones).
        cum_acc: Accountant = _WithReleases(acc, releases, initial) if releases or initial else acc
        # The curve's points come from a coarser grid than the search's evaluation of the whole
        # run; a prefix releases a post-processing of the whole run's output, so the whole
        # run's (sound) epsilon bounds every prefix too: take the smaller of the two.
        cum = tuple(min(c, float(rep.epsilon)) for c in epsilon_curve(cum_acc, run, delta, progress))
        if run.epochs > CURVE_POINTS:
            notes.append(
                f"cumulative epsilon computed at {CURVE_POINTS} checkpoint epochs; the epochs "
                "between take the next checkpoint's value (an upper bound)"
            )
    rule = best_case = None
    if isinstance(sched, ValidationDecay):
        rule = ValidationRule(
            initial_sigma=scale,
            factor=sched.factor,
            patience=sched.patience,
            min_sigma=sched.min_ratio * scale,
            worst_case=run.noise_multipliers,
        )
        best_case = acc.epsilon(base.with_noise([scale * v for v in sched.best_shape(base.epochs)]), delta).epsilon
        notes.append(
            "validation schedule: epsilon is the worst case (decay at every opportunity); "
            f"if sigma never decays the run spends {best_case:.4g}"
        )
    return Plan(
        target_epsilon=target,
        epsilon=float(rep.epsilon),
        delta=delta,
        schedule=sched,
        scale=scale,
        noise_multipliers=run.noise_multipliers,
        cumulative_epsilon=cum,
        accountant=name,
        run=run,
        runtime_rule=rule,
        best_case_epsilon=best_case,
        evaluations=n_pre + len(res.evaluations),
        notes=tuple(notes),
        report=rep,
    )


def compare_schedules(
    target_epsilon: float,
    delta: float = DEFAULT_DELTA,
    *,
    schedules: Sequence[Schedule | str] | None = None,
    **kwargs: Any,
) -> list[Plan]:
    """Solve every schedule (default: each family with default parameters) for the same
    budget and run; keyword arguments are those of :func:`solve_plan`."""
    todo = list(schedules) if schedules is not None else list(SCHEDULES)
    return [solve_plan(target_epsilon, delta, schedule=s, **kwargs) for s in todo]
