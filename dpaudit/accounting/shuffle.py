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
  (P_e^B, Q_e^B). Epochs use independent permutations and noise, so the run's output is
  dominated *from below* by the product of these pairs: by the data-processing inequality
  every hockey-stick divergence of the product is <= that of the real mechanism on (D, D').
* delta_L(eps) = E_{P^B}[(1 - e^{eps - sum_e L_e})_+] (Sommer et al. 2019, Thm 1) is
  evaluated with every loss rounded *down* to the grid h Z (coupling: a pointwise smaller
  sum gives a smaller expectation), with buckets of negligible mass dropped (only lowers the
  expectation) and by an FFT linear convolution large enough that nothing wraps around.
  An allowance for floating-point error is subtracted.

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
bound 0 is returned.
"""

from __future__ import annotations

import math

import numpy as np

from dpaudit.accounting.events import DpSgdRun, check_delta, check_epsilon
from dpaudit.accounting.pld import _Composed, _epsilon_of, norm_sf

#: Loss grid of the lower bound (nats); losses are rounded down to it.
LOWER_INTERVAL = 1e-3
#: Largest linear-convolution length before the grid is coarsened (a looser lower bound).
MAX_CELLS = 1 << 21
#: Breakpoints of the partition of the per-epoch maximum.
_N_BREAKS = 6000


def _log_cdf_max(m: np.ndarray, shift: float, batches: int, w: float) -> np.ndarray:
    """log P(max_t Y_t <= m) for T' = ``batches`` unit normals of which, with probability
    ``w``, one is shifted by ``shift`` (exact closed form)."""
    with np.errstate(divide="ignore"):  # Phi = 0 far below the shift: log = -inf, mass 0
        log_phi = np.log1p(-norm_sf(m))  # log Phi(m); m >= -8 keeps Phi(m) > 1e-16
        log_phi_s = np.log1p(-norm_sf(m - shift))
    shifted = log_phi_s + (batches - 1) * log_phi
    if w >= 1.0:
        return shifted
    null = batches * log_phi
    return np.logaddexp(math.log(w) + shifted, math.log1p(-w) + null)


def _bucket_masses(log_cdf: np.ndarray) -> np.ndarray:
    """Masses of (m_k, m_{k+1}] from log CDF values, via the CDF where it is below 1/2 and
    via the survival function -expm1(log F) above (both well conditioned there)."""
    f = np.exp(log_cdf)
    s = -np.expm1(log_cdf)
    low = f[1:] - f[:-1]
    high = s[:-1] - s[1:]
    return np.maximum(np.where(f[1:] < 0.5, low, high), 0.0)


def _epoch_loss_pmf(
    sigma: float, batches: int, w: float, h: float, drop_mass: float
) -> tuple[int, np.ndarray, float]:
    """Per-epoch lower-bound PLD on the grid h Z: (start index, masses, dropped P-mass)."""
    a, b = 2.0 / sigma, 1.0 / sigma
    top = a + math.sqrt(2.0 * math.log(max(batches, 2))) + 12.0
    m = np.linspace(-8.0, top, _N_BREAKS)
    p = _bucket_masses(_log_cdf_max(m, a, batches, w))
    q = _bucket_masses(_log_cdf_max(m, b, batches, w))
    ok = (p > 1e-300) & (q > 1e-300)
    p, q = p[ok], q[ok]
    loss = np.log(p) - np.log(q)
    # Drop the lowest-loss buckets while their total P-mass stays below drop_mass (each
    # term of delta is in [0, 1], so this lowers delta by at most that mass).
    order = np.argsort(loss)
    csum = np.cumsum(p[order])
    n_drop = int(np.searchsorted(csum, drop_mass, side="right"))
    keep = order[n_drop:]
    p, loss = p[keep], loss[keep]
    # Cap the highest losses (round down; lowers delta).
    if p.size == 0:
        return 0, np.zeros(1), 1.0
    rev = np.argsort(-loss)
    csum_hi = np.cumsum(p[rev])
    n_cap = int(np.searchsorted(csum_hi, drop_mass, side="right"))
    cap = loss[rev[min(n_cap, rev.size - 1)]]
    loss = np.minimum(loss, cap)
    idx = np.floor(loss / h).astype(np.int64)
    start = int(idx.min())
    pmf = np.bincount(idx - start, weights=p)
    return start, pmf, float(csum[n_drop - 1]) if n_drop > 0 else 0.0


def _epoch_specs(run: DpSgdRun) -> list[tuple[float, int, float]]:
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
        w = min(1.0, t_e * run.sample_rate)
        out.append((float(s), int(t_e), float(w)))
    return out


def _compose_lower(run: DpSgdRun, delta_scale: float) -> _Composed | None:
    """The composed lower-bound PLD of the run (``None`` when no bound applies)."""
    if run.batching != "shuffle" or run.relation == "add_remove":
        return None
    specs = [s for s in _epoch_specs(run) if math.isfinite(s[0])]
    if not specs:
        return None
    drop = 1e-4 * delta_scale / len(specs)
    h = LOWER_INTERVAL
    while True:
        table: dict[tuple[float, int, float], tuple[int, np.ndarray]] = {}
        counts: dict[tuple[float, int, float], int] = {}
        for spec in specs:
            if spec not in table:
                st, pm, _ = _epoch_loss_pmf(spec[0], spec[1], spec[2], h, drop)
                table[spec] = (st, pm)
            counts[spec] = counts.get(spec, 0) + 1
        width = sum(counts[k] * (table[k][1].size - 1) for k in counts) + 1
        if width <= MAX_CELLS:
            break
        h *= 2.0
    from dpaudit.accounting.pld import _next_fast_len

    n = _next_fast_len(width)
    lo = sum(counts[k] * table[k][0] for k in counts)
    spec_total = np.ones(n // 2 + 1, dtype=complex)
    for k, c in counts.items():
        spec_total = spec_total * np.fft.rfft(table[k][1], n=n) ** c
    probs = np.fft.irfft(spec_total, n=n)[:width]  # linear convolution: no wrap-around
    np.maximum(probs, 0.0, out=probs)
    allowance = 4.0 * (len(specs) + 10) * 2.2e-16 * math.log2(max(n, 2)) * math.sqrt(n)
    return _Composed(lo, probs, -allowance, h, allowance)


def delta_lower(run: DpSgdRun, epsilon: float) -> float:
    """A lower bound on the true delta(epsilon) of the shuffled run (see module docstring);
    0.0 when no bound applies (Poisson batching, ``add_remove``)."""
    from dpaudit.accounting.pld import _delta_at

    epsilon = check_epsilon(epsilon)
    comp = _compose_lower(run, 1e-12)
    if comp is None:
        return 0.0
    return max(0.0, _delta_at(comp, epsilon))


def epsilon_lower(run: DpSgdRun, delta: float) -> float:
    """A lower bound on the true epsilon at ``delta`` of the shuffled run: the adversary of
    the module docstring achieves it on an explicit pair of neighbouring datasets.
    0.0 when no bound applies (Poisson batching, ``add_remove``)."""
    delta = check_delta(delta)
    comp = _compose_lower(run, delta)
    if comp is None:
        return 0.0
    eps = _epsilon_of(comp, delta)
    if not math.isfinite(eps):  # cannot happen for a valid lower PLD; stay conservative
        return 0.0
    return max(0.0, eps - comp.h * 1e-6)
