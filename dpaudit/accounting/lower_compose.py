"""Composition of per-epoch pairs that are *dominated* by the real mechanism: lower bounds.

Shared by the shuffled-batching lower bound (:mod:`dpaudit.accounting.shuffle`) and the
balls-in-bins lower bound (:mod:`dpaudit.accounting.balls_in_bins`). Each epoch comes as
(P-masses, losses) of a post-processing of its output on an explicit pair of neighbouring
datasets; epochs are independent, so the run dominates the product of the epochs' pairs from
below (data-processing inequality) and

    delta_L(eps) = E_{P^B}[(1 - e^{eps - sum_e L_e})_+]                (Sommer et al. 2019, Thm 1)

is a lower bound on the true delta(eps). It is evaluated so that every step only lowers it:

* :func:`trim_pair`: the lowest-loss outcomes of total P-mass <= ``drop_mass`` are dropped
  and the highest losses capped at the loss below which all but ``drop_mass`` of the mass
  lies (both lower every term);
* :func:`compose_lower`: every loss is rounded *down* to the grid h Z (a pointwise smaller sum
  gives a smaller expectation) and the epochs are composed by a circular FFT on a window
  [lo, lo + N) chosen from the composed loss's mean, variance and Chernoff bounds. Mass above
  the window wraps to a lower loss (lowers the expectation); mass below lo would land higher,
  so a Chernoff bound on it, P(sum L < lo) <= exp(K(lambda) - lambda lo), lambda < 0, K the
  log-MGF of the discrete losses, is subtracted in full, as is an allowance for floating-point
  error;
* :func:`lower_prefixes`: the whole run at the finest grid its window allows and, if that
  grid is coarser than the fine one, also the longest prefix that fits the fine grid (a lower
  bound for some of the epochs is one for the run: ignoring releases is post-processing).

Imports: numpy and math only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from dpaudit.accounting.pld_compose import (
    ComposedPld,
    chernoff_orders,
    chernoff_window,
    cpow,
    next_fast_len,
)

#: Loss grid of the lower bounds (nats); losses are rounded down to it.
LOWER_INTERVAL = 1e-3
#: Largest circular window (cells) before the grid is coarsened (a looser lower bound).
MAX_CELLS = 1 << 21

Pair = tuple[np.ndarray, np.ndarray]  # (P-masses, losses) of one epoch's dominated pair
K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class LowerBound:
    """A lower bound on the true epsilon of a run at one delta.

    Attributes:
        epsilon: the bound (0.0 = the trivial bound: the construction does not apply or
            gives nothing here; ``notes`` says which).
        epochs_used: how many epochs the bound composes (fewer than the run's when only a
            prefix fits the fine grid; a bound for a prefix is one for the whole run).
        notes: human-readable remarks.
    """

    epsilon: float
    epochs_used: int
    notes: tuple[str, ...] = ()


def best_lower(comps: Sequence[tuple[ComposedPld, int]], delta: float, epochs: int,
               notes: tuple[str, ...]) -> LowerBound:
    """The largest epsilon lower bound at ``delta`` among composed lower PLDs (each with the
    number of epochs it composes), with a note when it covers only a prefix of ``epochs``."""
    from dpaudit.accounting.pld_compose import epsilon_of

    best = LowerBound(0.0, 0, notes)
    for comp, used in comps:
        eps = epsilon_of(comp, delta)
        if not math.isfinite(eps):  # cannot happen for a valid lower PLD; stay conservative
            continue
        eps = max(0.0, eps - comp.h * 1e-6)
        if eps > best.epsilon:
            best = LowerBound(eps, used, notes)
    if best.epsilon > 0.0 and best.epochs_used < epochs:
        best = LowerBound(best.epsilon, best.epochs_used, best.notes + (
            f"epsilon_lower composes the first {best.epochs_used} of {epochs} epochs (the "
            "whole run needs a coarser loss grid, which gives less; a lower bound for part of "
            "the run is one for all of it)",))
    return best


def trim_pair(p: np.ndarray, loss: np.ndarray, drop_mass: float) -> Pair:
    """Drop the lowest-loss outcomes of total P-mass <= ``drop_mass`` and cap the highest
    losses at the loss below which all but ``drop_mass`` of the mass lies (both only lower
    delta_L)."""
    if p.size == 0:
        return p, loss
    order = np.argsort(loss)
    n_drop = int(np.searchsorted(np.cumsum(p[order]), drop_mass, side="right"))
    keep = order[n_drop:]
    p, loss = p[keep], loss[keep]
    if p.size == 0:
        return p, loss
    rev = np.argsort(-loss)
    n_cap = int(np.searchsorted(np.cumsum(p[rev]), drop_mass, side="right"))
    return p, np.minimum(loss, loss[rev[min(n_cap, rev.size - 1)]])


def _binned(p: np.ndarray, loss: np.ndarray, h: float) -> tuple[int, np.ndarray]:
    """Masses on the grid h Z with every loss rounded down: (start index, masses)."""
    idx = np.floor(loss / h).astype(np.int64)
    start = int(idx.min())
    return start, np.bincount(idx - start, weights=p)


def compose_lower(
    specs: Sequence[K], pairs: dict[K, Pair], h: float, log_target: float,
    max_cells: int = MAX_CELLS,
) -> ComposedPld | None:
    """The composed lower-bound PLD of the epochs ``specs`` (each a key of ``pairs``) on a
    circular window at grid ``h`` (module docstring), or ``None`` when that window exceeds
    ``max_cells``. Its ``const`` is minus the subtracted terms."""
    counts: dict[K, int] = {}
    for s in specs:
        counts[s] = counts.get(s, 0) + 1
    bins = {s: _binned(*pairs[s], h) for s in counts}
    mom = {}
    for s, (st, pm) in bins.items():
        grid = (st + np.arange(pm.size)) * h
        tot = max(float(pm.sum()), 1e-300)
        mean = float(np.sum(pm * grid)) / tot
        mom[s] = (mean, float(np.sum(pm * (grid - mean) ** 2)) / tot, grid, pm)
    var = sum(c * mom[s][1] for s, c in counts.items())
    lams = chernoff_orders(math.sqrt(var))
    k_tot = np.zeros(lams.size)
    for s, c in counts.items():
        _, _, grid, pm = mom[s]
        nz = pm > 1e-300
        x = np.log(pm[nz])[None, :] + lams[:, None] * grid[nz][None, :]
        mx = x.max(axis=1)
        k_tot += c * (mx + np.log(np.exp(x - mx[:, None]).sum(axis=1)))
    mean_tot = sum(c * mom[s][0] for s, c in counts.items())
    lo, hi = chernoff_window([(mean_tot, var, k_tot)], h, log_target, lams)
    n = next_fast_len(hi - lo + 1)
    if n > max_cells:
        return None
    spec = np.ones(n // 2 + 1, dtype=complex)
    for s, c in counts.items():
        st, pm = bins[s]
        cells = np.bincount((st + np.arange(pm.size)) % n, weights=pm, minlength=n)
        spec = spec * cpow(np.fft.rfft(cells), c)
    probs = np.roll(np.fft.irfft(spec, n=n), -(lo % n))  # cell j <-> index lo + j
    np.maximum(probs, 0.0, out=probs)
    neg = lams < 0
    below = math.exp(min(0.0, float(np.min(k_tot[neg] - lams[neg] * lo * h))))
    allowance = 4.0 * (len(specs) + 10) * 2.2e-16 * math.log2(max(n, 2)) * math.sqrt(n)
    return ComposedPld(lo, probs, -(allowance + below), h, allowance)


def lower_prefixes(
    specs: Sequence[K], pair_of: Callable[[K, float], Pair], delta_scale: float,
    fine: float = LOWER_INTERVAL,
) -> tuple[list[tuple[ComposedPld, int]], tuple[str, ...]]:
    """Composed lower-bound PLDs with the number of epochs each composes: the whole run
    ``specs`` at the finest grid its window allows, plus, if that grid is coarser than
    ``fine``, the longest prefix that fits ``fine``. ``pair_of(spec, drop_mass)`` gives an
    epoch's trimmed pair."""
    if not specs:
        return [], ("no noisy epoch",)
    drop = 1e-4 * delta_scale / len(specs)
    pairs = {s: pair_of(s, drop) for s in set(specs)}
    if any(v[0].size == 0 for v in pairs.values()):
        return [], ("the per-epoch pair has no mass where both worlds do (numerical range)",)
    span = max(float(loss.max() - loss.min()) for _, loss in pairs.values())
    h = fine * 2.0 ** max(0, math.ceil(math.log2(max(span / fine, 1.0) / (MAX_CELLS / 8))))
    h_fine = h
    log_target = math.log(1e-3 * delta_scale)
    comp = compose_lower(specs, pairs, h, log_target)
    while comp is None:
        h *= 2.0
        comp = compose_lower(specs, pairs, h, log_target)
    out = [(comp, len(specs))]
    if h > h_fine:
        k = len(specs) // 2
        while k >= 1:
            part = compose_lower(specs[:k], pairs, h_fine, log_target)
            if part is not None:
                out.append((part, k))
                break
            k //= 2
    return out, ()
