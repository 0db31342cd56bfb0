"""The privacy loss of one epoch of balls-in-bins batching (random allocation), bounded
from above and from below on a grid.

Setting. An epoch allocates every example to one of t steps ("batches"), uniformly and
independently (Chua, Ghazi, Harrison, Leeman, Kamath, Kumar, Manurangsi, Sinha, Zhang,
AISTATS 2025, "Balls-and-Bins Sampling for DP-SGD", arXiv:2412.16802; the 1-out-of-t random
allocation of Feldman & Shenfeld 2025, arXiv:2502.08202). Step j releases the noisy sum
y_j = sum_{i in B_j} g_i(theta_j) + N(0, sigma^2 C^2 I), the g_i clipped to norm <= C and
theta_j a function of y_1..y_{j-1} (adaptive). An epoch that stops after s <= t steps (a
partial last epoch) releases y_1..y_s. Batch sizes are not released (the trainer divides by
the expected batch size). Units below: the noise std, d = 1/sigma.

**Claim 1 (dominating pair; proved here).** Under add/remove of one example x (and under
replacing x by a zero-gradient record, which adds nothing to any batch), the epoch is
dominated, in both directions, by the pair

    P = (1/t) sum_{J<=s} N(d e_J, I_s) + ((t-s)/t) N(0, I_s),     Q = N(0, I_s).

Its likelihood ratio is L = dP/dQ(z) = (1/t) (sum_{j<=s} X_j + t - s), X_j = exp(d z_j - d^2/2)
i.i.d. log-normal under Q (mean 1). For s = t this is the pair (P_B, Q_B) that Chua et al.
2025 identify as tightly dominating for ABLQ_B and the Gaussian random-allocation pair of
Feldman & Shenfeld 2025/2026; we did not have their theorem statements in full, so the proof
is given here. Proof: (i) the others' allocation A is independent of x's batch J and has the
same law in both worlds; by joint convexity of hockey-stick divergences it suffices to fix A.
(ii) Fix A; write g_j for x's clipped gradient at step j (a function of y_<j, |g_j| <= C)
and, in units of the noise std sigma C, v_j for the others' sum (a function of y_<j). With D'
(without x) the output density is prod_j phi(y_j - v_j); with D it is
(1/t) sum_J prod_j phi(y_j - v_j - [j = J] g_j) (J > s: x is not processed). So
L = (1/t)(sum_{j<=s} exp(<w_j, g_j> - |g_j|^2/2) + t - s) with w_j = y_j - v_j. Under Q the
innovations w_j are i.i.d. N(0, I) and g_j depends on the past only, so u_j =
<w_j, g_j>/|g_j| are i.i.d. N(0, 1) and L = (1/t)(sum Z_j + t - s), Z_j =
exp(d c_j u_j - (d c_j)^2/2), c_j = |g_j|/C in [0, 1] predictable. (iii) Let V_j be i.i.d.
N(0, 1) independent of everything and W_j = c_j u_j + sqrt(1 - c_j^2) V_j: given the past
W_j ~ N(0, 1), so the W_j are i.i.d. N(0, 1), and E[exp(d W_j - d^2/2) | u] = Z_j. Hence
L = E[L* | u] with L* = (1/t)(sum exp(d W_j - d^2/2) + t - s), which has the law of L under
the pair above. (iv) Both hockey-stick divergences of a pair are expectations of convex
functions of its likelihood ratio under Q, H_a(P||Q) = E_Q[(L - a)_+] and
H_a(Q||P) = E_Q[(1 - a L)_+], so conditional Jensen gives E f(L) <= E f(L*). Epochs use fresh
allocations and noise, so the run is dominated by the product of the epochs' pairs (Zhu, Dong,
Wang 2022, AISTATS, Thm 10, adaptive composition). The pair is achieved (gradient C e for x
at every step, 0 for everyone else), which the lower bound below uses. Under ``replace_one``
both worlds hold a record in batch J, a mixture against a mixture; we claim no amplification
there (one Gaussian per epoch, sensitivity 2C).

**Claim 2 (sound upper bound on a grid; proved here).** Write S = sum_{j<=s} X_j, so
L = (S + t - s)/t, and let nu be the law of S under Q. As in Feldman & Shenfeld 2026
(arXiv:2602.17284), the PLD is computed from the law of this sum of per-step likelihood
ratios ("exp space"), by FFT; both directions come from nu alone (the P-law of S is
L x nu). Their discretisation rounds values up or down (dominance); ours uses
mean-preserving spreads (convex order). Every step below replaces the pair
by one that dominates it in both directions, or adds non-negative mass to a privacy-loss
measure, which can only raise delta after any composition (delta(eps) = int (1 - e^{eps -
l})_+ dmu(l) is monotone in mu, and convolution of non-negative measures is monotone):

1. *Mean-preserving spreads* (convex order). Replacing a variable by a randomised rounding
   to two grid points that keeps its mean makes every E f(L), f convex, larger (Jensen), so
   the spread pair dominates in both directions (for pairs, Blackwell order is convex order
   of L under Q). Each X_j is spread onto a partition of [0, x_max] (fine grid dx ~ 0.05 sd(X)
   in the bulk, wider cells in the tail; bucket masses from the closed forms
   Q(X <= x) = Phi((ln x + d^2/2)/d), E_Q[X; X <= x] = Phi((ln x - d^2/2)/d)); sums of
   independent spreads are spreads; intermediate sums may be spread again onto a coarser
   grid. This is the exp-space analogue of connect-the-dots (Doroshenko, Ghazi, Kamath,
   Kumar, Manurangsi 2022, PoPETs, Sec. 3-4), which is itself such a spread of L.
2. *Events sent to infinity.* For any event E of the (extended) outcome space the pair
   restricted to E is dominated by a P-only atom of mass P(E) and a Q-only atom of mass Q(E)
   (H_a(P||Q) restricted to E is <= P(E), H_a(Q||P) <= Q(E)). Used for: a coordinate above
   x_max (Q <= s Q(X > x_max), P <= P_1(X > x_max) + s Q(X > x_max), P_1 the shifted law);
   more than k_max tail coordinates (binomial tails); a partial sum outside its FFT window
   (Chernoff bound on the discrete sums for Q, and P(E) = E_Q[L 1_E] <= sqrt(E_Q[L^2] Q(E))
   by Cauchy-Schwarz, with E_Q[L^2] <= 1 + (s (e^{d^2} + w^2) + D^2) / t^2 for the spread
   variables, w and D the widest cells). The remove direction gets the P masses as its
   infinity mass, the add direction the Q masses.
3. *Circular FFT windows.* Mass outside a window wraps into it. The true mass outside is
   covered by step 2; the wrapped copy is extra non-negative mass (same likelihood-ratio
   labels as the cell it lands in), harmless by the monotonicity above. The composer of
   :mod:`~dpaudit.accounting.pld_compose` handles finite parts of total mass above
   1 - inf_mass exactly.
4. *Loss grid.* The atoms (L, nu) are put on the loss grid h Z by connect-the-dots (a further
   spread); losses below the grid are moved up (P-mass kept: dominates in both directions),
   above it to the infinity atom.
5. *Floating point.* Negative FFT cells are set to 0 (adds mass); the FFT's rounding
   allowance (``pld_compose.fp_allowance``, the empirical margin used for every FFT here),
   per part of the law and scaled by that part's operand masses, times the part's largest
   L, is added to the infinity masses.

Heavy tails (small sigma): when one fine window cannot reach x_max, a coordinate is split at
c (s Q(X > c) = ``TAIL_RATE``) into bulk and tail and nu = sum_k C(s, k) a_B^{*(s-k)} *
a_T^{*k} for k <= k_max tail coordinates: k = 0 on the fine grid; k = 1 per geometric band of
the tail (x doubling, ``BAND_CELLS`` cells each, so the resolution is relative); k >= 2 on one
coarse grid spanning the k-fold tail; every grid starts at its part's smallest atom, so a
spread never moves mass below it (step 1); K > k_max to infinity (step 2). Below
``SIGMA_MIN`` the PLD is not computed (:class:`OutOfRange`; the accountant falls back to the
no-amplification bound).

**Claim 3 (lower bound).** On the pair of datasets that achieves Claim 1 the adversary maps
each coordinate to the left end r(X_j) of its cell and keeps S_q = sum r(X_j) modulo the
window length (a deterministic function of the output: post-processing). The law of S_q
under Q is a^{*s} and under P is (1/t)(s a' * a^{*(s-1)} + (t - s) a^{*s}) (a the cell
Q-masses, a' = E_Q[X; cell] the shifted masses), both computed exactly by a circular FFT
(modular wrap-around is part of the statistic). Cells whose masses are within the FFT's
rounding allowance e of zero are dropped (dropping outcomes only lowers delta); the kept
ones get loss log((p - e)/(q + e)) and mass p - e, below the true values. So the pair is
dominated by the real one and :mod:`~dpaudit.accounting.lower_compose` turns it into a
lower bound on the true epsilon of the run.

Imports: numpy and math only (no scipy).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from dpaudit.accounting.events import AllocationSegment
from dpaudit.accounting.gaussian import interval_masses
from dpaudit.accounting.pld_compose import (
    WindowTooLarge,
    chernoff_orders,
    chernoff_window,
    cpow,
    fp_allowance,
    next_fast_len,
)
from dpaudit.accounting.pld_pmf import (
    LossPmf,
    connect_the_dots,
    gaussian_cells,
    gaussian_pmf,
    subsampled_gaussian_cells,
    subsampled_gaussian_pmf,
)

__all__ = [
    "SIGMA_MIN",
    "EpochAtoms",
    "OutOfRange",
    "allocation_cells",
    "allocation_pmf",
    "epoch_atoms",
    "lower_epoch_pair",
]

#: Fine grid spacing of a coordinate X in units of its standard deviation: the spreads add
#: at most (0.05)^2 / 4 ~ 6e-4 of the per-epoch loss variance.
KAPPA_X = 0.05
#: ... and at most this fraction of t (a grid step moves L = (S + t - s)/t by <= 1e-3).
ETA_X = 1e-3
#: Largest fine window (cells) of the bulk sum before the tail is split off.
MAX_FINE = 1 << 16
#: Cells of the coarse grid that spans the tail terms with k >= 2 tail coordinates.
TAIL_CELLS = 1 << 15
#: Cells per geometric band of the one-tail-coordinate term (relative resolution 1/BAND_CELLS).
BAND_CELLS = 1 << 11
#: Expected number of tail coordinates per epoch when the tail is split off.
TAIL_RATE = 1e-3
#: Relative width of the coordinate cells beyond the bulk: max(dx, TAIL_REL (x + t)).
TAIL_REL = 2e-3
#: Hard cap on any window (cells); beyond it the fine grid is coarsened (looser, still sound).
MAX_CELLS = 1 << 21
#: Smallest noise multiplier the grids resolve: below it a coordinate's likelihood ratio
#: spans too many orders of magnitude (sigma = 0.2: x_max ~ e^42) and the accountant uses
#: the no-amplification bound instead (:class:`OutOfRange`).
SIGMA_MIN = 0.25


class OutOfRange(Exception):
    """The random-allocation PLD is not computed for these parameters (the message says
    why); callers fall back to a sound bound that needs no grid."""


# ---------------------------------------------------------------------------- coordinates
def _cell_masses(d: float, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Q-mass, P_1-mass) of the cells (edges[k], edges[k+1]] of X = exp(d Z - d^2/2), Z ~ N(0,1)
    under Q; P_1-mass = E_Q[X; cell] (Z ~ N(d, 1)). ``edges`` increasing, may start at 0 and
    end at inf."""
    with np.errstate(divide="ignore"):
        lx = np.log(edges)
    zq = (lx + 0.5 * d * d) / d
    return interval_masses(zq), interval_masses(zq - d)


def _z_tail(log_tail: float) -> float:
    """z with 1 - Phi(z) <= exp(-z^2/2) / 2 <= e^{log_tail}."""
    return math.sqrt(max(-2.0 * log_tail, 1.0))


def _x_max(d: float, s: int, log_tail: float) -> float:
    """Truncation point of a coordinate: P_1(X > x) <= e^{log_tail} and
    s Q(X > x) <= e^{log_tail}."""
    zp = _z_tail(log_tail)
    zq = _z_tail(log_tail - math.log(s))
    return max(math.exp(d * zp + 0.5 * d * d), math.exp(d * zq - 0.5 * d * d))


def _edges(lo: int, fine_top: int, top: int, unit: int, t: int, dx: float) -> np.ndarray:
    """Cell edges in units of dx: 0, then lo..fine_top step 1, then cells of width about
    max(unit, TAIL_REL (x + t)) (edges on multiples of ``unit``) up to the first multiple of
    ``unit`` >= top."""
    fine = np.arange(lo, fine_top + 1, dtype=np.int64)
    start = math.ceil(fine_top / unit) * unit
    last = max(start, math.ceil(top / unit) * unit)
    # widths are ``unit`` until TAIL_REL (x dx + t) reaches 2 unit dx, then grow geometrically
    x_geo = max(start, math.floor((2.0 * unit * dx / TAIL_REL - t) / dx / unit) * unit)
    lin = np.arange(start, min(x_geo, last) + 1, unit, dtype=np.int64)
    parts = [np.array([0], dtype=np.int64), fine, lin, np.array([last], dtype=np.int64)]
    if last > x_geo:
        x0 = x_geo * dx + t
        n = math.ceil(math.log((last * dx + t) / x0) / math.log1p(TAIL_REL)) + 1
        geo = (x0 * np.exp(np.arange(n + 1) * math.log1p(TAIL_REL)) - t) / dx
        parts.append(np.minimum(np.floor(geo / unit).astype(np.int64) * unit, last))
    return np.unique(np.concatenate(parts))


def _spread_sparse(edges: np.ndarray, qm: np.ndarray, pm: np.ndarray,
                   dx: float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_spread` as atoms (grid indices = the edges, masses)."""
    left = edges[:-1]
    width = (edges[1:] - left).astype(float)
    hi = (pm / dx - left * qm) / width
    hi = np.clip(np.where(np.isfinite(hi), hi, qm), 0.0, qm)
    out = np.zeros(edges.size)
    out[:-1] += qm - hi
    out[1:] += hi
    return edges.copy(), out


def _spread(edges: np.ndarray, qm: np.ndarray, pm: np.ndarray, dx: float) -> np.ndarray:
    """Mean-preserving two-point spread of each cell (edges[k], edges[k+1]] onto its ends
    (Claim 2, step 1): masses on the grid indices edges[0]..edges[-1] (a Q-measure; its
    P_1-measure is x times it)."""
    left = edges[:-1]
    width = (edges[1:] - left).astype(float)
    # the mass at the right end: E[X - x_left; cell] / cell width
    hi = (pm / dx - left * qm) / width
    hi = np.clip(np.where(np.isfinite(hi), hi, qm), 0.0, qm)
    base = int(edges[0])
    out = np.zeros(int(edges[-1]) - base + 1)
    np.add.at(out, left - base, qm - hi)
    np.add.at(out, edges[1:] - base, hi)
    return out


def _log_mgf(masses: np.ndarray, start: int, lams: np.ndarray) -> np.ndarray:
    """log sum_i m_i exp(lambda (start + i)) for each lambda (grid units)."""
    nz = masses > 1e-300
    lp = np.log(masses[nz])
    idx = (start + np.flatnonzero(nz)).astype(float)
    out = np.empty(lams.size)
    for i, lam in enumerate(lams):
        x = lp + lam * idx
        mx = float(x.max())
        out[i] = mx + math.log(float(np.exp(x - mx).sum()))
    return out


@dataclass(frozen=True)
class _Coordinate:
    """One coordinate's spread law on the grid dx Z: the bulk [0, c] as a dense array, the
    tail (c, x_max] as sparse atoms (empty when no split is needed)."""

    dx: float
    bulk: np.ndarray  # Q-masses at indices 0..len-1
    tail_idx: np.ndarray  # grid indices of the tail atoms
    tail: np.ndarray  # their Q-masses
    beyond_q: float  # Q(X > x_max) (excluded)
    beyond_p: float  # P_1(X > x_max)
    widest: float  # widest cell (x units)


def _coordinate(d: float, s: int, log_tail: float, dx: float, split_at: float | None,
                unit: int, t: int) -> _Coordinate:
    """The spread law of X on the grid dx Z (Claim 2, step 1): one cell (0, lo] of negligible
    mass, the fine grid up to the bulk's end (or the split point c), then cells growing with
    x up to x_max; with a split, the cells above c (edges on multiples of ``unit``) form
    the tail."""
    x_top = _x_max(d, s, log_tail)
    x_lo = math.exp(-d * _z_tail(log_tail - math.log(s) - 10.0) - 0.5 * d * d)
    lo = max(1, math.floor(x_lo / dx))
    top = math.ceil(x_top / dx)
    if split_at is None:
        fine_top = min(top, max(lo + 1, math.ceil(_bulk_end(d) / dx)))
        unit = 1
    else:
        fine_top = max(lo + unit, math.floor(split_at / dx / unit) * unit)
    edges = _edges(lo, fine_top, max(top, fine_top), unit, t, dx)
    qm, pm = _cell_masses(d, np.append(edges.astype(float) * dx, np.inf))
    beyond_q, beyond_p = float(qm[-1]), float(pm[-1])
    qm, pm = qm[:-1], pm[:-1]
    widest = float(np.max(np.diff(edges))) * dx
    none = np.zeros(0)
    if split_at is None:
        return _Coordinate(dx, _spread(edges, qm, pm, dx), none.astype(np.int64), none, beyond_q,
                           beyond_p, widest)
    k = int(np.searchsorted(edges, fine_top))  # edges[k] == fine_top
    bulk = _spread(edges[: k + 1], qm[:k], pm[:k], dx)
    t_idx, t_mass = _spread_sparse(edges[k:], qm[k:], pm[k:], dx)
    return _Coordinate(dx, bulk, t_idx, t_mass, beyond_q, beyond_p, widest)


def _bulk_end(d: float) -> float:
    """End of the fine region without a split: the P_1 quantile 1 - 1e-3 of X."""
    return math.exp(d * 3.1 + 0.5 * d * d)


# ---------------------------------------------------------------------------- epoch laws
@dataclass(frozen=True)
class EpochAtoms:
    """The (dominating) Q-law of the spread sum S of one epoch as atoms sorted by S:
    S = ``values`` (units of X), mass ``masses`` (may exceed the true total by harmless
    wrapped copies, Claim 2 step 3), ``log_ratios`` = log L = log((S + t - s)/t) (-inf at
    L = 0). ``inf_remove`` / ``inf_add``: masses sent to the infinity atom of each direction
    (Claim 2, steps 2 and 5)."""

    values: np.ndarray
    masses: np.ndarray
    log_ratios: np.ndarray
    batches: int
    steps: int
    inf_remove: float
    inf_add: float

    @property
    def ratios(self) -> np.ndarray:
        """L = dP/dQ at each atom."""
        return (self.values + (self.batches - self.steps)) / self.batches


def _binom_tail(n: int, p: float, k: int) -> float:
    """P(Binomial(n, p) >= k) (upper bound by summing terms until they are negligible)."""
    if k <= 0:
        return 1.0
    if k > n or p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    lp, l1p = math.log(p), math.log1p(-p)
    total = 0.0
    first = None
    for j in range(k, n + 1):
        term = math.exp(math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1) + j * lp + (n - j) * l1p)
        total += term
        if first is None:
            first = term
        if term < 1e-30 * total and j > n * p:
            # the remaining terms decrease geometrically with ratio <= (n-j) p / ((j+1)(1-p))
            r = (n - j) * p / ((j + 1) * (1.0 - p))
            if r < 1.0:
                total += term * r / (1.0 - r)
                break
    return min(1.0, total)


def _chernoff_tails(log_k: np.ndarray, lams: np.ndarray, lo: int, hi: int) -> tuple[float, float]:
    """Bounds on the mass at grid indices < lo and >= hi of a measure on the integers >= 0
    with log-MGF ``log_k`` at ``lams`` (Chernoff)."""
    neg, pos = lams < 0, lams > 0
    below = 0.0 if lo <= 0 else math.exp(min(0.0, float(np.min(log_k[neg] - lams[neg] * (lo - 1)))))
    above = math.exp(min(0.0, float(np.min(log_k[pos] - lams[pos] * hi))))
    return below, above


def _stats(masses: np.ndarray, start: int, lams: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(mean, variance, log-MGF at ``lams``) of the measure (grid units)."""
    idx = start + np.arange(masses.size, dtype=float)
    tot = max(float(masses.sum()), 1e-300)
    m = float(np.sum(masses * idx)) / tot
    v = float(np.sum(masses * (idx - m) ** 2)) / tot
    return m, v, _log_mgf(masses, start, lams)


def _fine_power_window(bulk: np.ndarray, powers: range, log_target: float) -> tuple[int, int, float]:
    """Window [lo, lo + n) (grid indices) holding every power's sum up to e^{log_target} in
    each tail, and the Chernoff bound on the mass outside it (summed over the powers)."""
    _, v1, _ = _stats(bulk, 0, np.zeros(1))
    lams = chernoff_orders(math.sqrt(max(v1 * max(powers), 1e-12)))
    m1, v1, k1 = _stats(bulk, 0, lams)
    stats = [(p * m1, p * v1, p * k1) for p in powers]
    lo, hi = chernoff_window(stats, 1.0, log_target, lams)
    lo = max(lo, 0)
    n = next_fast_len(hi - lo + 1)
    if n > MAX_CELLS:
        raise WindowTooLarge(n / MAX_CELLS)
    out = 0.0
    for _, _, k in stats:
        b, a = _chernoff_tails(k, lams, lo, lo + n)
        out += b + a
    return lo, n, out


def _spread_to_unit(values: np.ndarray, masses: np.ndarray, unit: int,
                    origin: int) -> tuple[int, np.ndarray]:
    """Mean-preserving spread of atoms at integer ``values`` (>= ``origin``) onto the grid
    origin + unit Z: (index of the first grid point, masses per grid point)."""
    j = np.floor_divide(values - origin, unit)
    frac = (values - origin - j * unit) / unit
    j0 = int(j.min())
    out = np.zeros(int(j.max()) - j0 + 2)
    np.add.at(out, j - j0, masses * (1.0 - frac))
    np.add.at(out, j - j0 + 1, masses * frac)
    return origin + j0 * unit, out


def _linear_conv(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    n = next_fast_len(a.size + b.size - 1)
    return np.fft.irfft(np.fft.rfft(a, n) * np.fft.rfft(b, n), n)[: a.size + b.size - 1]


def _bands(idx: np.ndarray) -> list[tuple[int, int]]:
    """Geometric bands [start, end) of the tail atoms' grid indices, each doubling the
    previous start (relative resolution on a linear grid per band)."""
    out = []
    start = int(idx[0])
    top = int(idx[-1]) + 1
    while start < top:
        end = min(top, max(start + 1, 2 * start))
        out.append((start, end))
        start = end
    return out


def _convolve_on(bulk_pos: np.ndarray, bulk_mass: np.ndarray, part_pos: np.ndarray,
                 part_mass: np.ndarray, unit: int) -> tuple[np.ndarray, np.ndarray]:
    """Atoms of (bulk sum) + (tail part), each spread onto its own origin + unit Z and
    convolved (linear, no wrap): (values in grid units, masses)."""
    b0, b = _spread_to_unit(bulk_pos, bulk_mass, unit, int(bulk_pos[0]))
    t0, tl = _spread_to_unit(part_pos, part_mass, unit, int(part_pos[0]))
    term = _linear_conv(b, tl)
    np.maximum(term, 0.0, out=term)
    return (b0 + t0 + unit * np.arange(term.size)).astype(float), term


def _tail_terms(coord: _Coordinate, f_bulk: np.ndarray, n: int, lo: int, s: int,
                k_max: int) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Atoms of the terms with k = 1..k_max tail coordinates (Claim 2, heavy tails): the
    bulk sum of s - k coordinates convolved with the k-fold tail. One tail coordinate
    (k = 1): per geometric band of the tail, both spread onto a grid of BAND_CELLS cells
    per band (relative resolution); k >= 2: the k-fold tail on one coarse grid starting at
    k c. Every grid starts at its part's smallest atom (spreads never move mass below it).
    Returns [(values in grid units, masses, rounding allowance)]."""
    out = []
    t_mass = float(coord.tail.sum())
    powers = [cpow(f_bulk, s - k_max)]  # bulk spectra of powers s - k_max .. s - 1
    for _ in range(k_max - 1):
        powers.append(powers[-1] * f_bulk)
    for k in range(1, k_max + 1):
        bulk_k = np.roll(np.fft.irfft(powers[k_max - k], n=n), -(lo % n))
        np.maximum(bulk_k, 0.0, out=bulk_k)
        keep = np.flatnonzero(bulk_k > 1e-300)
        b_pos, b_mass = lo + keep, bulk_k[keep]
        weight = math.exp(math.lgamma(s + 1) - math.lgamma(k + 1) - math.lgamma(s - k + 1))
        # rounding allowances scale with the operands' masses (the bulk's is <= 1), so each
        # part carries its own (the caller weights it by the part's largest L)
        if k == 1:
            for start, end in _bands(coord.tail_idx):
                sel = (coord.tail_idx >= start) & (coord.tail_idx < end)
                if not sel.any():
                    continue
                unit = max(1, math.ceil((end - start) / BAND_CELLS))
                v, m = _convolve_on(b_pos, b_mass, coord.tail_idx[sel], coord.tail[sel], unit)
                band = float(coord.tail[sel].sum())
                fpa = (fp_allowance(n, s) + fp_allowance(v.size, 2)) * weight * band
                out.append((v, m * weight, fpa))
        else:
            span = int(coord.tail_idx[-1] - coord.tail_idx[0]) + 1
            unit = max(1, math.ceil(k * span / TAIL_CELLS))
            t0, tl = _spread_to_unit(coord.tail_idx, coord.tail, unit, int(coord.tail_idx[0]))
            nt = next_fast_len(k * tl.size)
            tk = np.fft.irfft(cpow(np.fft.rfft(tl, nt), k), nt)[: k * (tl.size - 1) + 1]
            np.maximum(tk, 0.0, out=tk)
            keep_t = np.flatnonzero(tk > 0)
            v, m = _convolve_on(b_pos, b_mass, k * t0 + unit * keep_t, tk[keep_t], unit)
            fpa = (fp_allowance(n, s) + fp_allowance(nt, k) + fp_allowance(v.size, 2)) * weight * t_mass**k
            out.append((v, m * weight, fpa))
    return out


def _choose_grid(d: float, t: int, s: int, log_tail: float) -> tuple[float, float | None, int]:
    """(fine dx, split point c or None, coarse unit of the tail cells in dx)."""
    sd = math.sqrt(math.expm1(d * d))
    dx = min(KAPPA_X * sd, ETA_X * t)
    x_top = _x_max(d, s, log_tail)
    bulk_cells = 2.0 * _z_tail(2 * log_tail) * math.sqrt(s) * sd / dx
    if x_top / dx + bulk_cells <= MAX_FINE:
        return dx, None, 1
    # split at c with s Q(X > c) = TAIL_RATE (Q(X > c) = 1 - Phi((ln c + d^2/2)/d))
    z = _normal_isf(min(0.5, TAIL_RATE / s))
    c = math.exp(d * z - 0.5 * d * d)
    # the fine window must still fit: coarsen dx if it cannot (sound, looser)
    need = c / dx + bulk_cells
    if need > MAX_FINE:
        dx *= need / MAX_FINE
    unit = max(1, int(TAIL_REL * (c + t) / dx))
    return dx, c, unit


def _normal_isf(p: float) -> float:
    """z with 1 - Phi(z) ~ p (bisection on erfc; accuracy 1e-10 is ample for a grid choice)."""
    lo, hi = -10.0, 40.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if 0.5 * math.erfc(mid / math.sqrt(2.0)) > p:
            lo = mid
        else:
            hi = mid
    return hi


@functools.lru_cache(maxsize=32)
def epoch_atoms(batches: int, steps: int, sigma: float, log_tail: float) -> EpochAtoms:
    """Dominating atoms of one epoch of random allocation among ``batches`` steps with the
    first ``steps`` released, noise multiplier ``sigma`` (Claim 2); ``log_tail`` = log of
    the mass each truncation may send to infinity."""
    if not float(sigma) >= SIGMA_MIN:
        raise OutOfRange(f"noise multiplier {sigma:g} < {SIGMA_MIN:g}: the random-allocation PLD "
                         "is not computed (a coordinate's likelihood ratio spans too many scales)")
    t, s, d = int(batches), int(steps), 1.0 / float(sigma)
    dx, split_at, unit = _choose_grid(d, t, s, log_tail)
    for _ in range(30):
        try:
            return _epoch_atoms(t, s, d, log_tail, dx, split_at, unit)
        except WindowTooLarge as exc:
            dx *= max(2.0, 1.1 * exc.factor)
            unit = max(1, unit // 2)
    raise WindowTooLarge(2.0)


def _epoch_atoms(t: int, s: int, d: float, log_tail: float, dx: float, split_at: float | None,
                 unit: int) -> EpochAtoms:
    coord = _coordinate(d, s, log_tail, dx, split_at, unit, t)
    p_tail = float(coord.tail.sum())
    k_max = 0
    beyond_k_q = beyond_k_p = 0.0
    if p_tail > 0.0:
        target = math.exp(log_tail)
        while k_max < s and _binom_tail(s - 1, p_tail, k_max) > target:
            k_max += 1
        beyond_k_q = _binom_tail(s, p_tail, k_max + 1)
        beyond_k_p = _binom_tail(s - 1, p_tail, k_max)
    # second moment of L for the spread variables (Cauchy-Schwarz step)
    span = int(coord.tail_idx.max()) if coord.tail_idx.size else 0
    coarse = dx * max(1, math.ceil(max(k_max, 1) * span / TAIL_CELLS))
    m2 = 1.0 + (s * (math.exp(d * d) + coord.widest**2) + coarse**2 + 1.0) / (t * t)
    log_target = 2.0 * log_tail - math.log(m2) - math.log(k_max + 1)
    lo, n, outside_q = _fine_power_window(coord.bulk, range(max(1, s - k_max), s + 1), log_target)
    cells = np.bincount(np.arange(coord.bulk.size) % n, weights=coord.bulk, minlength=n)
    f_bulk = np.fft.rfft(cells)
    nu0 = np.roll(np.fft.irfft(cpow(f_bulk, s), n=n), -(lo % n))
    np.maximum(nu0, 0.0, out=nu0)
    fpa = fp_allowance(n, s)
    # rounding allowance, weighted by the largest L of each part for the remove direction
    fp_add = fpa
    fp_remove = fpa * max(1.0, ((lo + n) * dx + t - s) / t)
    values = [(lo + np.arange(n)).astype(float)]
    masses = [nu0]
    if k_max > 0:
        for v, m, f in _tail_terms(coord, f_bulk, n, lo, s, k_max):
            values.append(v)
            masses.append(m)
            fp_add += f
            fp_remove += f * max(1.0, (float(v[-1]) * dx + t - s) / t)
    vals = np.concatenate(values) * dx
    mass = np.concatenate(masses)
    keep = mass > 0.0
    vals, mass = vals[keep], mass[keep]
    outside_p = math.sqrt(m2 * outside_q)
    trunc_q = s * coord.beyond_q
    trunc_p = coord.beyond_p + s * coord.beyond_q
    inf_remove = trunc_p + beyond_k_p + outside_p + fp_remove
    inf_add = trunc_q + beyond_k_q + outside_q + fp_add
    order = np.argsort(vals, kind="stable")
    vals, mass = vals[order], mass[order]
    with np.errstate(divide="ignore"):
        log_r = np.log((vals + (t - s)) / t)
    return EpochAtoms(vals, mass, log_r, t, s, min(1.0, inf_remove), min(1.0, inf_add))


# ---------------------------------------------------------------------------- loss grid
def _loss_atoms(atoms: EpochAtoms, direction: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(losses ascending, P-masses, Q-masses, infinity mass) of the atoms in ``direction``
    (remove: the pair (P, Q), loss log L; add: (Q, P), loss -log L)."""
    lr, nu = atoms.log_ratios, atoms.masses
    pos = np.isfinite(lr)
    lr, nu_p = lr[pos], nu[pos]
    if direction == "remove":
        return lr, np.exp(lr) * nu_p, nu_p, atoms.inf_remove
    if direction == "add":
        return -lr[::-1], nu_p[::-1], (np.exp(lr) * nu_p)[::-1], atoms.inf_add + float(nu[~pos].sum())
    raise ValueError(direction)


@functools.lru_cache(maxsize=16)
def _sorted_losses(batches: int, steps: int, sigma: float, direction: str,
                   log_tail: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, int, int]:
    """:func:`_loss_atoms` trimmed (Claim 2, step 4): the first ``i0`` atoms (lowest losses,
    P-mass <= e^{log_tail}) are moved up to the grid point above atom i0, atoms from ``i1``
    on (highest losses, P-mass <= e^{log_tail}) go to infinity. Returns (losses, pm, qm, inf mass, i0, i1)."""
    atoms = epoch_atoms(batches, steps, sigma, log_tail)
    loss, pm, qm, inf = _loss_atoms(atoms, direction)
    cum = np.cumsum(pm)
    tail = math.exp(log_tail)
    total = float(cum[-1]) if cum.size else 0.0
    i0 = int(np.searchsorted(cum, tail, side="right"))
    i1 = int(np.searchsorted(cum, total - tail, side="left")) + 1
    i1 = max(min(i1, loss.size), 1)
    i0 = min(i0, i1 - 1)
    return loss, pm, qm, inf + float(pm[i1:].sum()), i0, i1


def _grid_range(loss: np.ndarray, i0: int, i1: int, h: float) -> tuple[int, int]:
    """(first bucket index, number of grid points) of the trimmed losses on h Z."""
    k0 = math.floor(float(loss[i0]) / h)
    k1 = math.floor(float(loss[i1 - 1]) / h)
    return k0, k1 - k0 + 2


@functools.lru_cache(maxsize=64)
def _pmf_cached(batches: int, steps: int, sigma: float, h: float, direction: str,
                log_tail: float) -> LossPmf:
    """Connect-the-dots of the trimmed atoms onto h Z (Claim 2, step 4)."""
    loss, pm, qm, inf, i0, i1 = _sorted_losses(batches, steps, sigma, direction, log_tail)
    k0, cells = _grid_range(loss, i0, i1, h)
    k = np.floor(loss[i0:i1] / h).astype(np.int64) - k0
    pmb = np.bincount(k, weights=pm[i0:i1], minlength=cells - 1)
    qmb = np.bincount(k, weights=qm[i0:i1], minlength=cells - 1)
    probs = connect_the_dots(k0, pmb, qmb, h)
    # the lowest atoms (losses <= loss[i0] < (k0 + 1) h) moved up to grid point k0 + 1, P-mass kept
    probs[1] += float(pm[:i0].sum())
    return LossPmf(k0, probs, min(1.0, inf), h)


def _special_pmf(seg: AllocationSegment, h: float, direction: str, log_tail: float) -> LossPmf | None:
    """Closed forms: one released step (s = 1) is exactly the Poisson-subsampled Gaussian
    with q = 1/t (L = 1 - q + q X); t = 1 is the Gaussian mechanism."""
    if seg.steps != 1:
        return None
    if seg.batches == 1:
        return gaussian_pmf(1.0 / seg.noise_multiplier, h, log_tail)
    return subsampled_gaussian_pmf(1.0 / seg.batches, seg.noise_multiplier, h, direction, log_tail)


def allocation_cells(seg: AllocationSegment, h: float, direction: str, log_tail: float) -> int:
    """Grid points :func:`allocation_pmf` allocates (without building the PMF)."""
    if seg.steps == 1:
        if seg.batches == 1:
            return gaussian_cells(1.0 / seg.noise_multiplier, h, log_tail)
        return subsampled_gaussian_cells(1.0 / seg.batches, seg.noise_multiplier, h, direction, log_tail)
    loss, _, _, _, i0, i1 = _sorted_losses(seg.batches, seg.steps, float(seg.noise_multiplier),
                                           direction, float(log_tail))
    return _grid_range(loss, i0, i1, h)[1]


def allocation_pmf(seg: AllocationSegment, h: float, direction: str, log_tail: float) -> LossPmf:
    """Dominating PLD of one epoch of ``seg`` on the grid h Z in ``direction`` (``remove``:
    the pair (P, Q) of Claim 1; ``add``: (Q, P)). Callers check the size first with
    :func:`allocation_cells`."""
    special = _special_pmf(seg, h, direction, log_tail)
    if special is not None:
        return special
    return _pmf_cached(seg.batches, seg.steps, float(seg.noise_multiplier), float(h), direction,
                       float(log_tail))


# ---------------------------------------------------------------------------- lower bound
def _fft_cell_error(k: int, n: int, l2: float) -> float:
    """Bound on the largest absolute error of a cell of irfft(rfft(a)^k) (length n, masses
    of total <= 1, l2 = ||a||_2): the FFT's error ||dF||_2 <= c eps log2(n) ||F||_2 with
    ||F||_2 = sqrt(n) ||a||_2 (c = 5, generous for pocketfft), |d(F^k)| <= k |dF| + k eps
    per frequency (|F| <= 1), and max |e_j| <= ||e||_2 for the inverse transform."""
    eps, c, lg = 2.3e-16, 5.0, math.log2(max(n, 2))
    return eps * (k * c * lg * l2 + k + c * lg)


@functools.lru_cache(maxsize=32)
def lower_epoch_pair(batches: int, steps: int, sigma: float, interval: float) -> tuple[np.ndarray, np.ndarray]:
    """(P-masses, losses) of a pair *dominated* by one epoch on the datasets that achieve
    Claim 1 (Claim 3): the adversary's statistic is sum_j r(X_j) modulo the window, r(x)
    the left end of x's cell, capped at the largest value the window holds (any function
    of the output will do). ``interval``: the loss resolution aimed at (nats)."""
    if not float(sigma) >= SIGMA_MIN:
        raise OutOfRange(f"noise multiplier {sigma:g} < {SIGMA_MIN:g}")
    t, s, d = int(batches), int(steps), 1.0 / float(sigma)
    sd = math.sqrt(math.expm1(d * d))
    log_tail = -40.0
    dx = min(KAPPA_X * sd, ETA_X * t, interval * t / math.sqrt(s))
    bulk_cells = 2.0 * _z_tail(log_tail) * math.sqrt(s) * sd / dx
    if bulk_cells > MAX_FINE:
        dx *= bulk_cells / MAX_FINE
        bulk_cells = MAX_FINE
    # cap r at the point where P_1(X > x) <= e^-30 (or what the window holds)
    x_cap = min(_x_max(d, s, -30.0), (2 * MAX_FINE - bulk_cells) * dx)
    lo = max(1, math.floor(math.exp(-d * _z_tail(log_tail - math.log(s)) - 0.5 * d * d) / dx))
    top = max(lo + 1, math.ceil(x_cap / dx))
    fine_top = min(top, max(lo + 1, math.ceil(_bulk_end(d) / dx)))
    edges = _edges(lo, fine_top, top, 1, t, dx)
    qm, pm = _cell_masses(d, np.append(edges.astype(float) * dx, np.inf))
    # cell k = (edges[k], edges[k+1]] -> edges[k]; the last cell (top, inf) -> top
    a = np.zeros(int(edges[-1]) + 1)
    a1 = np.zeros_like(a)
    np.add.at(a, edges, qm)
    np.add.at(a1, edges, pm)
    _, v1, _ = _stats(a, 0, np.zeros(1))
    lams = chernoff_orders(math.sqrt(max(v1 * s, 1e-12)))
    m1, v1, k1 = _stats(a, 0, lams)
    lo_w, hi_w = chernoff_window([(s * m1, s * v1, s * k1)], 1.0, math.log(1e-30), lams)
    # any window length is a valid statistic (mod n); this one holds the bulk and one
    # coordinate up to the cap, where the Chernoff window asks for more
    n = next_fast_len(min(max(hi_w - lo_w + 1, 16), 2 * MAX_FINE))
    fa = np.fft.rfft(np.bincount(np.arange(a.size) % n, weights=a, minlength=n))
    fa1 = np.fft.rfft(np.bincount(np.arange(a1.size) % n, weights=a1, minlength=n))
    pow_m1 = cpow(fa, s - 1)
    q = np.fft.irfft(pow_m1 * fa, n)
    p = (s / t) * np.fft.irfft(pow_m1 * fa1, n) + ((t - s) / t) * q
    err_q = _fft_cell_error(s, n, float(np.linalg.norm(a)))
    err_p = _fft_cell_error(s, n, float(max(np.linalg.norm(a), np.linalg.norm(a1))))
    keep = (p > 1e3 * err_p) & (q > 1e3 * err_q)
    pk = p[keep] - err_p
    loss = np.log(pk) - np.log(q[keep] + err_q)
    return pk, loss
