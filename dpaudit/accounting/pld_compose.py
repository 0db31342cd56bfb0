"""Composition of discretised PLDs by FFT, and the privacy curve of the result.

Composition of independent mechanisms adds independent losses, i.e. convolves their PLDs
(Sommer, Meiser, Mohammadi 2019, PoPETs, Thm 1; Koskela, Jälkö, Honkela 2020, AISTATS,
Sec. 3). The characteristic function of a sum is the product of the summands', so ``count``
identical releases cost one complex power (Koskela et al. 2020, Sec. 4; Koskela, Jälkö,
Prediger, Honkela 2021, AISTATS). Dominating pairs compose into a dominating pair (Zhu,
Dong, Wang 2022, AISTATS, Thm 10), so composing the connect-the-dots PMFs of
:mod:`dpaudit.accounting.pld_pmf` gives an upper bound on the composed privacy curve.

Soundness of the circular FFT (upper bounds): the circular result equals the true PMF folded
modulo the window length N, so inside the window it is >= the true PMF (folded mass only
adds, which can only raise delta); the mass that leaves the window at the top is bounded by a
Chernoff bound on the discrete losses, P(S > U) <= exp(K(lambda) - lambda U), and added to
delta in full (:attr:`ComposedPld.const`). The FFT's rounding error is covered by an
allowance (:func:`fp_allowance`), an empirical margin.

Public names are shared with the shuffle lower bound (:mod:`dpaudit.accounting.shuffle`),
which uses the same window and curve machinery in the other direction.

Imports: numpy and math only (no scipy).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from dpaudit.accounting.pld_pmf import LossPmf

#: Largest FFT window (cells); callers coarsen the grid beyond it (still an upper bound).
MAX_WINDOW = 1 << 21

#: Fixed orders lambda of the Chernoff bounds (negative: lower tail); scale-relative ones
#: are added per composition (:func:`chernoff_orders`). Any set is sound: only the window
#: size and the tail term's tightness depend on it.
_BASE_ORDERS = np.concatenate((-np.geomspace(0.1, 10.0, 3), np.geomspace(0.1, 100.0, 7)))


def chernoff_orders(scale: float) -> np.ndarray:
    """Chernoff orders for a composed loss of standard deviation ``scale`` (nats): the fixed
    set plus +-geomspace(0.05, 50)/scale, so that losses of any magnitude (10^-4 for tiny
    sample rates, 10^9 for tiny noise) get useful tail bounds."""
    s = scale if math.isfinite(scale) and scale > 0 else 1.0
    rel = np.geomspace(0.05, 50.0, 7) / s
    return np.unique(np.concatenate((_BASE_ORDERS, rel, -rel)))


class WindowTooLarge(Exception):
    """The composition needs more than the allowed window at this grid interval;
    ``factor`` estimates by how much the interval must grow."""

    def __init__(self, factor: float) -> None:
        super().__init__(f"window too large by a factor {factor:.3g}")
        self.factor = float(factor)


@dataclass(frozen=True)
class ComposedPld:
    """A composed PLD in a window: mass ``probs[j]`` at loss ``(lo + j) h`` (nats), plus
    ``const``, added to delta at every epsilon (upper bounds: infinity mass + bound on the
    mass above the window + rounding allowance; lower bounds: minus such terms)."""

    lo: int
    probs: np.ndarray
    const: float
    h: float
    fp_allowance: float = 0.0

    @property
    def losses(self) -> np.ndarray:
        return (self.lo + np.arange(self.probs.size)) * self.h


_FAST_LENS: list[int] = []


def next_fast_len(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n (cheap FFT sizes for numpy's pocketfft); n itself beyond
    the table (2 * MAX_WINDOW)."""
    if not _FAST_LENS:
        top = 2 * MAX_WINDOW
        vals = set()
        p2 = 1
        while p2 <= top:
            p23 = p2
            while p23 <= top:
                p235 = p23
                while p235 <= top:
                    vals.add(p235)
                    p235 *= 5
                p23 *= 3
            p2 *= 2
        _FAST_LENS.extend(sorted(vals))
    i = bisect.bisect_left(_FAST_LENS, n)
    return _FAST_LENS[i] if i < len(_FAST_LENS) else n


def cpow(x: np.ndarray, k: int) -> np.ndarray:
    """x**k for a complex array by binary exponentiation (a few multiplications; numpy's
    complex power goes through exp/log and is ~10x slower). Relative error ~k 2^-52."""
    out = np.ones_like(x)
    base = x.copy()
    while k:
        if k & 1:
            out *= base
        k >>= 1
        if k:
            base *= base
    return out


def fp_allowance(n: int, total_count: int) -> float:
    """Allowance for the FFT's rounding error, added to delta.

    The summed absolute error of the window masses measured against an independent power
    evaluation (polar form) is ~k * 2^-52 (k = number of composed releases; 2e-11 for
    k = 1e5, n = 3e4). The allowance 4 k 2^-52 log2(n) is >= 50x that. It is an
    empirical margin, not a proof; callers refuse deltas it would distort.
    """
    return 4.0 * (total_count + 10) * 2.2e-16 * math.log2(max(n, 2))


def chernoff_window(
    stats: Sequence[tuple[float, float, np.ndarray]], h: float, log_target: float, lams: np.ndarray
) -> tuple[int, int]:
    """Window [lo, hi] (grid indices) holding every prefix's mass up to ~e^{log_target} in
    each tail, from (mean, variance, log-MGF at ``lams``) and the Chernoff bound."""
    lo_i, hi_i = math.inf, -math.inf
    pos, neg = lams > 0, lams < 0
    w = math.sqrt(-2.0 * log_target)
    for m, v, k_tot in stats:
        sd = math.sqrt(max(v, 0.0))
        up, low = m + w * sd + 10 * h, m - w * sd - 10 * h
        for _ in range(60):  # widen until the Chernoff bound certifies the upper tail
            if np.min(k_tot[pos] - lams[pos] * up) <= log_target:
                break
            up = m + 2.0 * (up - m) + h
        for _ in range(60):
            if np.min(k_tot[neg] - lams[neg] * low) <= log_target:
                break
            low = m - 2.0 * (m - low) - h
        lo_i = min(lo_i, math.floor(low / h))
        hi_i = max(hi_i, math.ceil(up / h))
    return int(lo_i), int(hi_i)


def _prefix_stats(
    checkpoints: Sequence[Sequence[tuple[LossPmf, int]]],
) -> tuple[list[tuple[float, float, np.ndarray]], list[tuple[float, int]], np.ndarray]:
    """Per checkpoint: (mean, variance, log-MGF) of the composed finite part, and
    (infinity mass, number of releases); plus the Chernoff orders used."""
    pmfs = {id(p): p for grp in checkpoints for p, _ in grp}
    mom = {key: p.moments() for key, p in pmfs.items()}
    var_total = sum(k * mom[id(p)][1] for grp in checkpoints for p, k in grp)
    lams = chernoff_orders(math.sqrt(var_total))
    mgf = {key: p.log_mgf(lams) for key, p in pmfs.items()}
    stats: list[tuple[float, float, np.ndarray]] = []
    infs: list[tuple[float, int]] = []
    m = v = 0.0
    k_tot = np.zeros(lams.size)
    # Composed mass involving an infinite loss: prod(F_i + I_i) - prod(F_i), F_i the finite
    # mass of a release and I_i its infinity mass, written as
    # prod(F_i + I_i) * (1 - prod(1 - I_i/(F_i + I_i))) to keep relative precision. For a
    # normalised PMF (F = 1 - I) it is 1 - prod(1 - I_i); a finite part heavier than 1 - I
    # (harmless extra mass, random_allocation Claim 2 step 3) is counted exactly.
    fin = {key: float(p.probs.sum()) for key, p in pmfs.items()}
    log_tot = 0.0
    log_fin = 0.0
    counts = 0
    for group in checkpoints:
        for pmf, k in group:
            mm, vv = mom[id(pmf)]
            m += k * mm
            v += k * vv
            k_tot = k_tot + k * mgf[id(pmf)]
            inf = min(pmf.inf_mass, 1.0 - 1e-16)
            tot = max(fin[id(pmf)] + inf, 1.0)
            log_tot += k * math.log(tot) if tot > 1.0 else 0.0
            log_fin += k * math.log1p(-inf / tot)
            counts += k
        stats.append((m, v, k_tot.copy()))
        infs.append((math.exp(log_tot) * -math.expm1(log_fin), counts))
    return stats, infs, lams


class PrefixComposer:
    """Composition of PLDs checkpoint by checkpoint on one window.

    ``checkpoints[c]`` lists the (pmf, count) added after checkpoint c-1. Construction
    computes the window (raising :class:`WindowTooLarge` when it would exceed
    ``max_window`` cells) without composing anything; iterating yields the composed PLD
    at each checkpoint (upper bounds) one at a time, so a curve of many checkpoints holds
    one window in memory, not one per checkpoint. ``progress(done, total)`` is called
    after each checkpoint.
    """

    def __init__(
        self,
        checkpoints: Sequence[Sequence[tuple[LossPmf, int]]],
        h: float,
        log_target: float,
        *,
        max_window: int = MAX_WINDOW,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.checkpoints = checkpoints
        self.h = h
        self.progress = progress
        self.stats, self.infs, self.lams = _prefix_stats(checkpoints)
        self.lo, hi = chernoff_window(self.stats, h, log_target, self.lams)
        # The window must also hold every single-release PMF (a long, light lower tail, e.g.
        # q -> 1 in the add direction, would otherwise force coarsening; review finding:
        # 12% at q = 1 - 1e-9, sigma = 1).
        widest = max((pmf.probs.size for group in checkpoints for pmf, _ in group), default=1)
        self.n = next_fast_len(max(hi - self.lo + 1, widest))
        if self.n > max_window:
            raise WindowTooLarge(self.n / max_window)

    @property
    def fp_allowance(self) -> float:
        """The rounding allowance of the last (largest) checkpoint."""
        return fp_allowance(self.n, self.infs[-1][1]) if self.infs else 0.0

    def __iter__(self) -> Iterator[ComposedPld]:
        n, h, lo, lams = self.n, self.h, self.lo, self.lams
        ffts: dict[int, np.ndarray] = {}
        powers: dict[tuple[int, int], np.ndarray] = {}  # equal chunks share one power
        spec = np.ones(n // 2 + 1, dtype=complex)
        top = (lo + n - 1) * h
        pos = lams > 0
        for c, group in enumerate(self.checkpoints):
            for pmf, k in group:
                key = id(pmf)
                if key not in ffts:
                    # absolute grid index i sits in cell i mod n; sums of indices then
                    # land in their own cell modulo n (circular convolution)
                    idx = (pmf.start + np.arange(pmf.probs.size)) % n
                    ffts[key] = np.fft.rfft(np.bincount(idx, weights=pmf.probs, minlength=n))
                if (key, k) not in powers:
                    if len(powers) > 8:
                        powers.clear()
                    powers[(key, k)] = cpow(ffts[key], k)
                spec = spec * powers[(key, k)]
            probs = np.roll(np.fft.irfft(spec, n=n), -(lo % n))  # cell j <-> index lo + j
            np.maximum(probs, 0.0, out=probs)
            kt = self.stats[c][2]
            tail = math.exp(min(0.0, float(np.min(kt[pos] - lams[pos] * top))))
            inf_tot, cnt = self.infs[c]
            fpa = fp_allowance(n, cnt)
            yield ComposedPld(lo, probs, inf_tot + tail + fpa, h, fpa)
            if self.progress is not None:
                self.progress(c + 1, len(self.checkpoints))


def compose_prefixes(
    checkpoints: Sequence[Sequence[tuple[LossPmf, int]]],
    h: float,
    log_target: float,
    *,
    max_window: int = MAX_WINDOW,
    progress: Callable[[int, int], None] | None = None,
) -> list[ComposedPld]:
    """All the composed PLDs of :class:`PrefixComposer` as a list."""
    return list(PrefixComposer(checkpoints, h, log_target, max_window=max_window, progress=progress))


def delta_at(comp: ComposedPld, epsilon: float) -> float:
    """delta(eps) = const + sum_j p_j (1 - e^{eps - l_j})_+ for the composed PLD, capped at 1."""
    l_ = comp.losses
    sel = l_ > epsilon
    val = comp.const + float(np.sum(comp.probs[sel] * -np.expm1(epsilon - l_[sel])))
    return min(1.0, val)


def epsilon_of(comp: ComposedPld, delta: float) -> float:
    """Smallest eps >= 0 with delta(eps) <= delta, exact for the discrete PLD (``inf`` when
    ``const`` alone exceeds delta)."""
    if comp.const >= delta:
        return math.inf
    l_ = comp.losses
    first = int(np.searchsorted(l_, 0.0, side="right"))  # first index with l > 0
    p = comp.probs[first:]
    lp = l_[first:]
    if p.size == 0:
        return 0.0
    # A_j = sum_{i>=j} p_i, B_j = sum_{i>=j} p_i e^{-l_i} (l_i > 0 so no overflow).
    a = np.cumsum(p[::-1])[::-1]
    b = np.cumsum((p * np.exp(-lp))[::-1])[::-1]
    const = comp.const
    if const + a[0] - b[0] <= delta:  # delta(0) <= target
        return 0.0
    m = p.size

    def d_grid(j: int) -> float:
        """delta at eps = l_j: const + A_{j+1} - e^{l_j} B_{j+1}; the subtracted term is
        <= A_{j+1} exactly, so clamping a rounding excess is pessimistic."""
        if j + 1 >= m:
            return const
        bj = float(b[j + 1])
        term = math.exp(float(lp[j]) + math.log(bj)) if bj > 0.0 else 0.0
        return const + float(a[j + 1]) - min(term, float(a[j + 1]))

    # delta(l_j) is non-increasing in j: bisect for the first grid point where it is
    # <= delta (a later one, should rounding break monotonicity, is only pessimistic).
    lo, hi = -1, m - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if d_grid(mid) <= delta:
            hi = mid
        else:
            lo = mid
    j = hi
    left = lp[j - 1] if j > 0 else 0.0
    # On (left, l_j]: delta(eps) = const + A_j - e^eps B_j.
    num = const + a[j] - delta
    eps = math.log(num / b[j]) if num > 0 and b[j] > 0 else float(lp[j])
    return float(min(max(eps, left), lp[j]))
