"""Lower bounds on the privacy of DP-SGD with *shuffled* batches.

Shuffled fixed-size batches are what most DP-SGD code runs, yet the epsilon it reports is
usually the Poisson-subsampling figure. Chua, Ghazi, Kamath, Kumar, Manurangsi, Sinha, Zhang
("How Private are DP-SGD Implementations?", ICML 2024, arXiv:2403.17673) showed with an
explicit pair of neighbouring datasets that shuffling can be far less private than the Poisson
analysis claims, and extended the lower bound to many epochs ("Scalable DP-SGD: Shuffling vs.
Poisson Subsampling", NeurIPS 2024, arXiv:2411.04205). This module computes a lower bound of
that kind, *provably valid* by the argument below (every step is stated so it can be checked).

Construction (one-dimensional gradients clipped to [-C, C]; units of the noise std):

* D  = (x_1, ..., x_{n-1}, x_n) with every x_i (i < n) having gradient -C and x_n gradient +C;
  D' = D with x_n replaced by the zero-gradient record (``replace_zero``; for ``replace_one``
  the same pair is also a pair of neighbours).
* An epoch draws a random permutation and releases the noisy sum of each batch,
  y_t = sum_{i in B_t} g_i + N(0, sigma^2 C^2). The batch sizes are public, so the adversary
  subtracts the known -C |B_t|: under D' the batch holding x_n is shifted by +C, under D by
  +2C, all other batches by 0. Writing a = 2/sigma, b = 1/sigma and T for the number of
  batches, the epoch's output is, up to that public shift, P_e = (1/T) sum_t N(a e_t, I)
  vs Q_e = (1/T) sum_t N(b e_t, I) -- the mixture pair of Chua et al. (ICML 2024, Sec. 4).
  The differing record's batch is *identifiable* (it is the only shifted one) in both worlds,
  which is why shuffling gives little amplification.
* The adversary keeps only M_e = max_t y_t of each epoch (post-processing). Its law is
  exact in closed form: P(M <= m) = Phi(m - a) Phi(m)^{T-1}, resp. Phi(m - b) Phi(m)^{T-1}
  (for an epoch of T' batches that may miss the record -- a partial epoch, or T' q < 1 -- a
  w = min(1, T' q) mixture with Phi(m)^{T'}, w the probability that the record is processed).
* M_e is bucketed on a fine partition (post-processing again), giving finite pairs
  (P_e^B, Q_e^B); bucket masses are computed in log space (:func:`log_norm_cdf`), so pairs
  that are far apart (tiny noise) keep their finite, huge losses. Epochs use independent permutations and noise, so the run's output is
  dominated *from below* by the product of these pairs: by the data-processing inequality
  every hockey-stick divergence of the product is <= that of the real mechanism on (D, D').
* delta_L(eps) = E_{P^B}[(1 - e^{eps - sum_e L_e})_+] (Sommer et al. 2019, Thm 1) is
  evaluated with every loss rounded *down* to the grid h Z (coupling: a pointwise smaller
  sum gives a smaller expectation), with buckets of negligible mass dropped (only lowers the
  expectation), by a circular FFT on a window [lo, lo + N) of the grid. Wrap-around is
  handled in the safe direction: mass above the window lands at a *lower* loss (lowers the
  expectation); mass below lo would land higher, so a Chernoff bound on it,
  P(sum L < lo) <= exp(K(lambda) - lambda lo), lambda < 0, K the log-MGF of the discrete
  losses, is subtracted in full (each term of the expectation is at most 1). An allowance
  for floating-point error is subtracted too. The window grows like the spread of the
  composed loss (~ sqrt(epochs)), not like epochs x the per-epoch width, so the grid stays
  at h = 1e-3 up to ~10^5 epochs.
* A lower bound for some of the epochs is one for the whole run (ignoring releases is
  post-processing). When the whole run needs a coarser grid, the bound of the longest
  prefix that fits the fine grid is computed too and the larger figure is reported, so a
  longer run never reports less than its prefix.

Hence delta_L(eps) <= delta_true(eps) for the real mechanism, and epsilon_lower(delta), the
eps where delta_L crosses delta, is <= the true epsilon. It is also <= the sound
no-amplification upper bound (one Gaussian per epoch, ``DpSgdRun.shuffle_segments``): the
max-statistic pair is a post-processing of a pair dominated by N(1/sigma, 1) vs N(0, 1).

Scope: like every accountant here, this concerns the released *sequence* of noisy batch
gradients (all intermediate updates; the ABLQ view of Chua et al.), with a fresh independent
permutation each epoch. If only the final model is released the true leakage may be lower;
with one permutation reused for every epoch the product argument above does not apply as
stated.

Extra (Poisson) segments of a run are ignored (ignoring releases keeps a lower bound valid).
For ``add_remove`` under shuffling this construction does not apply and the trivial lower
bound 0 is returned (:func:`lower_bound` says so in its notes; reports show no figure).
"""
from __future__ import annotations

import math

import numpy as np

from dpaudit.accounting.events import DpSgdRun, check_delta, check_epsilon
from dpaudit.accounting.gaussian import log_norm_cdf
from dpaudit.accounting.lower_compose import (
    LOWER_INTERVAL,
    MAX_CELLS,
    LowerBound,
    best_lower,
    lower_prefixes,
    trim_pair,
)
from dpaudit.accounting.pld_compose import ComposedPld, delta_at

__all__ = ["LOWER_INTERVAL", "MAX_CELLS", "LowerBound", "delta_lower", "epsilon_lower", "lower_bound"]
#: Breakpoints of the partition of the per-epoch maximum (plus dense windows around the
#: two shifts, see :func:`_breakpoints`).
_N_BREAKS = 6000

_Spec = tuple[float, int, float]  # (sigma, batches processed T', weight w)


def _log_cdf_max(m: np.ndarray, shift: float, batches: int, w: float) -> np.ndarray:
    """log P(max_t Y_t <= m) for T' = ``batches`` unit normals of which, with probability
    ``w``, one is shifted by ``shift`` (exact closed form, log space)."""
    log_phi = log_norm_cdf(m)
    shifted = log_norm_cdf(m - shift) + (batches - 1) * log_phi
    if w >= 1.0:
        return shifted
    return np.logaddexp(math.log(w) + shifted, math.log1p(-w) + batches * log_phi)


def _bucket_log_masses(log_cdf: np.ndarray) -> np.ndarray:
    """log masses of (m_k, m_{k+1}] from log CDF values: F_{k+1} (1 - F_k/F_{k+1}) where
    the CDF is below 1/2, S_k (1 - S_{k+1}/S_k) with S = 1 - F above (both well
    conditioned there); -inf for empty buckets."""
    lf = np.maximum.accumulate(log_cdf)  # a CDF never decreases; rounding could say so
    with np.errstate(divide="ignore", invalid="ignore"):
        low = lf[1:] + np.log(-np.expm1(lf[:-1] - lf[1:]))
        ls = np.log(-np.expm1(lf))  # log S
        high = ls[:-1] + np.log(-np.expm1(ls[1:] - ls[:-1]))
    out = np.where(lf[1:] < -math.log(2.0), low, high)
    return np.where(np.isnan(out), -np.inf, out)


def _breakpoints(a: float, b: float, batches: int) -> np.ndarray:
    """Partition of the per-epoch maximum (any partition is valid: post-processing):
    a uniform grid up to the top of the shifted coordinate, refined around the shifts a, b
    (where P and Q put their mass when the noise is small)."""
    top = a + math.sqrt(2.0 * math.log(max(batches, 2))) + 12.0
    dense = np.linspace(-12.0, 12.0, 1201)
    return np.unique(np.concatenate((np.linspace(-8.0, top, _N_BREAKS), a + dense, b + dense)))


def _epoch_losses(spec: _Spec, drop_mass: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-epoch lower-bound pair on the buckets: (P-masses, losses), trimmed by
    :func:`~dpaudit.accounting.lower_compose.trim_pair` (both steps only lower delta)."""
    sigma, batches, w = spec
    a, b = 2.0 / sigma, 1.0 / sigma
    m = _breakpoints(a, b, batches)
    lp = _bucket_log_masses(_log_cdf_max(m, a, batches, w))
    lq = _bucket_log_masses(_log_cdf_max(m, b, batches, w))
    ok = np.isfinite(lp) & np.isfinite(lq) & (lp > -700.0)
    return trim_pair(np.exp(lp[ok]), lp[ok] - lq[ok], drop_mass)


def _epoch_specs(run: DpSgdRun) -> list[_Spec]:
    """(sigma in noise-std/C units, batches processed T', weight w) per epoch."""
    # w is the probability that the differing record lies in one of the T' processed
    # batches. Batches hold q N records each (only the last one of a full epoch may be
    # smaller), so w = min(1, T' q). Deriving it from ``steps_per_epoch`` instead would
    # overstate it whenever steps_per_epoch < ceil(1/q) (e.g. a run built from a sample
    # rate with 1/q non-integer): with w too large the "lower" bound can exceed a proven
    # upper bound (review finding, tests/accounting/test_review.py).
    out = []
    for e, s in enumerate(run.noise_multipliers):
        t_e = run.steps_in_epoch(e)
        out.append((float(s), int(t_e), float(min(1.0, t_e * run.sample_rate))))
    return out


def _lower_pld(run: DpSgdRun, delta_scale: float) -> tuple[list[tuple[ComposedPld, int]], tuple[str, ...]]:
    """Composed lower-bound PLDs with the number of epochs each composes
    (:func:`~dpaudit.accounting.lower_compose.lower_prefixes`)."""
    if run.batching != "shuffle" or run.relation == "add_remove":
        return [], ("the Chua et al. construction applies to shuffled batches under the "
                    "replace relations only",)
    specs = [s for s in _epoch_specs(run) if math.isfinite(s[0])]
    return lower_prefixes(specs, _epoch_losses, delta_scale)


def lower_bound(run: DpSgdRun, delta: float) -> LowerBound:
    """A lower bound on the true epsilon at ``delta`` of the shuffled run: the adversary of
    the module docstring achieves it on an explicit pair of neighbouring datasets. The
    trivial bound 0.0 (with a note) when the construction does not apply or yields nothing."""
    delta = check_delta(delta)
    comps, notes = _lower_pld(run, delta)
    return best_lower(comps, delta, run.epochs, notes)


def delta_lower(run: DpSgdRun, epsilon: float) -> float:
    """A lower bound on the true delta(epsilon) of the shuffled run (see module docstring);
    0.0 when no bound applies (Poisson batching, ``add_remove``)."""
    epsilon = check_epsilon(epsilon)
    comps, _ = _lower_pld(run, 1e-12)
    return max([0.0, *(delta_at(c, epsilon) for c, _ in comps)])


def epsilon_lower(run: DpSgdRun, delta: float) -> float:
    """The figure of :func:`lower_bound` (0.0 when no bound applies: Poisson batching,
    ``add_remove``)."""
    return lower_bound(run, delta).epsilon
