"""Lower bound on the true epsilon of DP-SGD with balls-in-bins batching.

The per-epoch pair of :mod:`dpaudit.accounting.random_allocation` (Claim 1) is *achieved*:
one-dimensional gradients, every example but x with gradient 0 and x with gradient +C (a
linear loss, so the same at every step). Under ``add_remove`` (D = D' + x), ``replace_zero``
and ``replace_one`` (x replaced by a zero-gradient record) the epoch releases exactly
P = (1/t) sum_J N(e_J/sigma, I) (restricted to the released steps) against Q = N(0, I).
The adversary's statistic (Claim 3 there: the sum of the coordinates' likelihood ratios,
each rounded down to its cell, modulo the FFT window) is a post-processing, epochs use fresh
allocations and noise, so the composed pair of these statistics is dominated by the run on
these datasets and :mod:`dpaudit.accounting.lower_compose` gives a lower bound
``epsilon_lower`` on its true epsilon -- the interval [epsilon_lower, epsilon] brackets it.

Scope, as for every accountant here: the released sequence of noisy batch sums (all
intermediate updates), fresh allocation each epoch, batch sizes not released. Extra
(Poisson) segments of a run are ignored (ignoring releases keeps a lower bound valid).
"""

from __future__ import annotations

import math

import numpy as np

from dpaudit.accounting.events import DpSgdRun, check_delta, check_epsilon
from dpaudit.accounting.lower_compose import (
    LOWER_INTERVAL,
    LowerBound,
    best_lower,
    lower_prefixes,
    trim_pair,
)
from dpaudit.accounting.pld_compose import ComposedPld, delta_at
from dpaudit.accounting.random_allocation import SIGMA_MIN, lower_epoch_pair

__all__ = ["LowerBound", "delta_lower", "epsilon_lower", "lower_bound"]

_Spec = tuple[int, int, float]  # (batches t, released steps s, sigma)


def _epoch_specs(run: DpSgdRun) -> list[_Spec]:
    return [(run.steps_per_epoch, run.steps_in_epoch(e), float(sig))
            for e, sig in enumerate(run.noise_multipliers) if math.isfinite(sig)]


def _pair(spec: _Spec, drop_mass: float) -> tuple[np.ndarray, np.ndarray]:
    t, s, sigma = spec
    p, loss = lower_epoch_pair(t, s, sigma, LOWER_INTERVAL / 4.0)
    return trim_pair(p, loss, drop_mass)


def _grid(specs: list[_Spec]) -> float:
    """Loss grid of the composition: LOWER_INTERVAL, or finer for runs whose composed loss
    has a standard deviation below a nat (tiny epsilons), so that rounding down keeps
    something: 1e-3 of that standard deviation."""
    counts: dict[_Spec, int] = {}
    for spec in specs:
        counts[spec] = counts.get(spec, 0) + 1
    var = 0.0
    for (t, s, sigma), c in counts.items():
        p, loss = lower_epoch_pair(t, s, sigma, LOWER_INTERVAL / 4.0)
        tot = max(float(p.sum()), 1e-300)
        m = float(np.sum(p * loss)) / tot
        var += c * float(np.sum(p * (loss - m) ** 2)) / tot
    return min(LOWER_INTERVAL, 1e-3 * max(math.sqrt(var), 1e-12))


def _lower_pld(run: DpSgdRun, delta_scale: float) -> tuple[list[tuple[ComposedPld, int]], tuple[str, ...]]:
    if run.batching != "balls_in_bins":
        return [], ("the balls-in-bins construction applies to balls_in_bins batching only",)
    specs = _epoch_specs(run)
    if not specs:
        return [], ("no noisy epoch",)
    if min(s[2] for s in specs) < SIGMA_MIN:
        # each epoch's pair is then nearly the Gaussian's; the statistic's grid would not
        # resolve it: use the epochs with sigma >= SIGMA_MIN only (ignoring releases is valid)
        specs = [s for s in specs if s[2] >= SIGMA_MIN]
        if not specs:
            return [], (f"noise multiplier below {SIGMA_MIN:g}: the balls-in-bins construction "
                        "is not evaluated",)
    return lower_prefixes(specs, _pair, delta_scale, fine=_grid(specs))


def lower_bound(run: DpSgdRun, delta: float) -> LowerBound:
    """A lower bound on the true epsilon at ``delta`` of the balls-in-bins run, achieved on
    the explicit pair of neighbouring datasets of the module docstring (0.0 with a note when
    it gives nothing)."""
    delta = check_delta(delta)
    comps, notes = _lower_pld(run, delta)
    return best_lower(comps, delta, run.epochs, notes)


def delta_lower(run: DpSgdRun, epsilon: float) -> float:
    """A lower bound on the true delta(epsilon) of the balls-in-bins run; 0.0 for other
    batchings."""
    epsilon = check_epsilon(epsilon)
    comps, _ = _lower_pld(run, 1e-12)
    return max([0.0, *(delta_at(c, epsilon) for c, _ in comps)])


def epsilon_lower(run: DpSgdRun, delta: float) -> float:
    """The figure of :func:`lower_bound` (0.0 when no bound applies)."""
    return lower_bound(run, delta).epsilon
