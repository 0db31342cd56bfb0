"""Statistics for privacy attacks and audits: pure numpy (scipy imported lazily), no torch.

What lives here, and where each formula comes from:

* :func:`clopper_pearson` — exact binomial confidence interval (Clopper & Pearson 1934),
  written through Beta quantiles: ``lo = B^{-1}(a; k, n-k+1)``, ``hi = B^{-1}(1-a; k+1, n-k)``.
* :func:`epsilon_lower_bound` — empirical epsilon from one attack's confusion counts.  Any
  (eps, delta)-DP mechanism confines every membership test to the region
  ``FPR + e^eps FNR >= 1 - delta`` and ``FNR + e^eps FPR >= 1 - delta`` (Kairouz, Oh,
  Viswanath 2015, Theorem 2.1; used for auditing by Jagielski, Ullman, Oprea 2020, Sec. 3),
  hence ``eps >= max(ln((1-delta-FNR)/FPR), ln((1-delta-FPR)/FNR))``.  The right-hand side
  falls as FPR/FNR grow, so plugging in Clopper-Pearson *upper* bounds FPR̄, FNR̄ gives a lower
  bound that holds with the stated confidence.
* :func:`epsilon_lower_bound_from_scores` — the same from raw attack scores, with a *valid*
  threshold choice: either a held-out split ("split") or a Bonferroni correction over a
  data-independent family of order-statistic thresholds ("bonferroni").  Picking the best
  threshold on the very data that the bound is computed from is not valid and is not offered.
* :func:`roc_metrics` — descriptive ROC metrics (AUC, TPR at fixed FPR, balanced accuracy,
  advantage of Yeom et al. 2018, Def. 4).
* DP caps — what an (eps, delta)-DP model allows: :func:`dp_tpr_cap` (the Kairouz region),
  :func:`dp_advantage_cap`, :func:`dp_auc_cap` (area under the region's boundary, exact) and
  :func:`gdp_auc_cap` (AUC of the mu-GDP trade-off curve through (eps, delta); Dong, Roth,
  Su 2019/2022, Cor. 2.13 for the mu <-> (eps, delta) link).

Conventions: scores are oriented so that *higher means "member"*.  Rates are fractions in
[0, 1]; epsilons are in nats; ``confidence`` is a probability in (0, 1).

Independence assumption: the bounds treat every scored example as an independent trial of
the membership game.  That is exact for simulations and for audits that train one model per
trial; for a single trained model scored on many examples it is the standard (heuristic)
reading used in the membership-inference literature, not a theorem.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from dpaudit.errors import InvalidParameterError

#: FPR levels at which TPR is reported (LiRA's low-FPR regime; Carlini et al. 2022, Sec. 3).
FPR_LEVELS: tuple[float, ...] = (0.1, 0.01, 0.001)

METHODS: tuple[str, ...] = ("split", "bonferroni")


# --------------------------------------------------------------------------- validation
def _check_confidence(confidence: float) -> float:
    c = float(confidence)
    if not (0.0 < c < 1.0) or not math.isfinite(c):
        raise InvalidParameterError(f"confidence must be in (0, 1), got {confidence!r}")
    return c


def _check_delta(delta: float) -> float:
    d = float(delta)
    if not (0.0 <= d < 1.0) or not math.isfinite(d):
        raise InvalidParameterError(f"delta must be in [0, 1), got {delta!r}")
    return d


def _check_epsilon(epsilon: float) -> float:
    e = float(epsilon)
    if not e >= 0.0 or math.isnan(e):
        raise InvalidParameterError(f"epsilon must be >= 0, got {epsilon!r}")
    return e


def _check_scores(scores: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(scores, dtype=np.float64).ravel()
    if arr.size == 0:
        raise InvalidParameterError(f"{name} is empty")
    if not np.all(np.isfinite(arr)):
        raise InvalidParameterError(f"{name} contains NaN or infinite scores")
    return arr


# --------------------------------------------------------------------------- Clopper-Pearson
def _cp_upper(k: np.ndarray | int, n: np.ndarray | int, alpha: float) -> np.ndarray:
    """One-sided upper Clopper-Pearson bound: P(p > hi) <= alpha.  ``hi = 1`` when k = n."""
    from scipy.special import betaincinv

    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        hi = betaincinv(k + 1.0, np.maximum(n - k, 1e-300), 1.0 - alpha)
    return np.where(k >= n, 1.0, hi)


def _cp_lower(k: np.ndarray | int, n: np.ndarray | int, alpha: float) -> np.ndarray:
    """One-sided lower Clopper-Pearson bound: P(p < lo) <= alpha.  ``lo = 0`` when k = 0."""
    from scipy.special import betaincinv

    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = betaincinv(np.maximum(k, 1e-300), n - k + 1.0, alpha)
    return np.where(k <= 0, 0.0, lo)


def clopper_pearson(
    k: int, n: int, confidence: float = 0.95, two_sided: bool = True
) -> tuple[float, float]:
    """Exact (Clopper-Pearson 1934) confidence interval for a binomial proportion ``k/n``.

    ``two_sided=True``: ``P(lo <= p <= hi) >= confidence``, each tail ``(1-confidence)/2``.
    ``two_sided=False``: both ends are one-sided bounds at level ``confidence`` each
    (``P(p <= hi) >= confidence`` and, separately, ``P(p >= lo) >= confidence``).
    Returns ``(lo, hi)`` as floats in [0, 1].
    """
    c = _check_confidence(confidence)
    if int(n) != n or int(k) != k or n < 1 or not (0 <= k <= n):
        raise InvalidParameterError(f"need integers 0 <= k <= n, n >= 1; got k={k!r}, n={n!r}")
    alpha = (1.0 - c) / 2.0 if two_sided else 1.0 - c
    return float(_cp_lower(k, n, alpha)), float(_cp_upper(k, n, alpha))


# --------------------------------------------------------------------------- epsilon bounds
def _eps_from_rate_bounds(fpr_hi: np.ndarray, fnr_hi: np.ndarray, delta: float) -> np.ndarray:
    """``max(0, ln((1-delta-FNR̄)/FPR̄), ln((1-delta-FPR̄)/FNR̄))`` elementwise (Kairouz et al.
    2015, Thm. 2.1).  A non-positive numerator contributes nothing; a zero upper bound (only
    possible with infinitely many trials) would be infinite and is never produced here."""
    fpr_hi = np.asarray(fpr_hi, dtype=np.float64)
    fnr_hi = np.asarray(fnr_hi, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(
            (1.0 - delta - fnr_hi > 0) & (fpr_hi > 0),
            np.log(np.maximum(1.0 - delta - fnr_hi, 1e-300)) - np.log(fpr_hi),
            -np.inf,
        )
        b = np.where(
            (1.0 - delta - fpr_hi > 0) & (fnr_hi > 0),
            np.log(np.maximum(1.0 - delta - fpr_hi, 1e-300)) - np.log(fnr_hi),
            -np.inf,
        )
    return np.maximum(0.0, np.maximum(a, b))


def epsilon_lower_bound(
    tp: int, fn: int, fp: int, tn: int, delta: float = 0.0, confidence: float = 0.95
) -> float:
    """Empirical epsilon lower bound (nats) from one *pre-chosen* test's confusion counts.

    ``tp, fn`` count members (positives) called member / non-member; ``fp, tn`` count
    non-members.  FPR̄ and FNR̄ are one-sided Clopper-Pearson upper bounds at level
    ``(1-confidence)/2`` each (i.e. the upper ends of two-sided intervals at ``confidence``),
    so both hold together with probability >= ``confidence`` (union bound), and then

        eps_lb = max(0, ln((1-delta-FNR̄)/FPR̄), ln((1-delta-FPR̄)/FNR̄))

    (Kairouz et al. 2015, Thm. 2.1; Jagielski et al. 2020, Sec. 3).  Valid only if the
    threshold was not chosen on these counts; see :func:`epsilon_lower_bound_from_scores`.

    Example (golden value): TP=500, FN=0, FP=0, TN=500, delta=0, confidence=0.99 -> 4.54.
    """
    c = _check_confidence(confidence)
    d = _check_delta(delta)
    for name, v in (("tp", tp), ("fn", fn), ("fp", fp), ("tn", tn)):
        if int(v) != v or v < 0:
            raise InvalidParameterError(f"{name} must be a non-negative integer, got {v!r}")
    if tp + fn < 1 or fp + tn < 1:
        raise InvalidParameterError("need at least one member and one non-member")
    alpha = (1.0 - c) / 2.0
    fpr_hi = _cp_upper(fp, fp + tn, alpha)
    fnr_hi = _cp_upper(fn, tp + fn, alpha)
    return float(_eps_from_rate_bounds(fpr_hi, fnr_hi, d))


@dataclass(frozen=True)
class EpsilonLowerBound:
    """An empirical epsilon lower bound and everything needed to re-derive it.

    ``epsilon``: the bound in nats (>= 0), valid with probability >= ``confidence``.
    ``threshold``: the decision rule's cut; ``rule`` says whether "member" means
    ``score > threshold`` or ``score >= threshold``.  ``tp, fn, fp, tn``: the counts the
    bound is computed from (the evaluation half for ``method="split"``; for "bonferroni" the
    FP (or FN) count is the order-statistic rank, which is >= the empirical count under ties).
    ``fpr_upper``/``fnr_upper``: the Clopper-Pearson upper bounds used.  ``n_thresholds``: how
    many decision rules the confidence was split over (1 for "split").
    """

    epsilon: float
    confidence: float
    delta: float
    method: str
    threshold: float
    rule: str
    tp: int
    fn: int
    fp: int
    tn: int
    fpr_upper: float
    fnr_upper: float
    n_thresholds: int
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        return {
            "epsilon": self.epsilon,
            "confidence": self.confidence,
            "delta": self.delta,
            "method": self.method,
            "threshold": self.threshold,
            "rule": self.rule,
            "tp": self.tp,
            "fn": self.fn,
            "fp": self.fp,
            "tn": self.tn,
            "fpr_upper": self.fpr_upper,
            "fnr_upper": self.fnr_upper,
            "n_thresholds": self.n_thresholds,
            "notes": list(self.notes),
        }


def rank_grid(n: int, max_points: int) -> np.ndarray:
    """Data-independent grid of ranks in ``{0, ..., n-1}``: about ``max_points`` values,
    geometrically spaced (dense at 0, where low-FPR / low-FNR rules live), always including
    0 and n-1.  Depends only on ``n`` and ``max_points``, never on scores."""
    if n < 1:
        raise InvalidParameterError("rank grid needs n >= 1")
    m = max(2, int(max_points))
    grid = np.unique(np.floor(np.geomspace(1.0, float(n), num=m)).astype(np.int64) - 1)
    return np.unique(np.concatenate([[0, n - 1], grid]))


def _bonferroni(
    m: np.ndarray, nm: np.ndarray, delta: float, confidence: float, max_thresholds: int
) -> EpsilonLowerBound:
    """Simultaneous bound over two data-independent families of order-statistic rules.

    Family N (rank k of the non-members): threshold ``tau = x_(n-k)``, the (k+1)-th largest
    non-member score, rule "member iff score > tau".  With ``G(t) = P(S_nonmember > t)`` and
    the quantile coupling ``S = F^{-1}(U)``, ``G(x_(n-k)) <= 1 - U_(n-k) ~ Beta(k+1, n-k)``, so
    the one-sided CP upper bound for ``k`` successes out of ``n`` bounds the true FPR even
    though tau depends on the data (and even with ties).  The members are independent of tau,
    so CP on their counts is exact conditionally.  Family M mirrors this with member order
    statistics (rule "member iff score >= y_(j+1)", FN rank ``j``).  Each rule's pair of bounds
    fails with probability <= 2 * alpha'', and alpha'' = (1-confidence) / (2 * #rules), so all
    rules hold together with probability >= confidence (Bonferroni / union bound).
    """
    n_m, n_n = m.size, nm.size
    ms, ns = np.sort(m), np.sort(nm)
    ks = rank_grid(n_n, max_thresholds)  # FP ranks
    js = rank_grid(n_m, max_thresholds)  # FN ranks
    n_rules = ks.size + js.size
    alpha = (1.0 - confidence) / (2.0 * n_rules)

    # Family N: tau = ns[n_n - 1 - k]; TP = #members > tau.
    tau_n = ns[n_n - 1 - ks]
    tp_n = n_m - np.searchsorted(ms, tau_n, side="right")
    fpr_hi_n = _cp_upper(ks, n_n, alpha)
    fnr_hi_n = _cp_upper(n_m - tp_n, n_m, alpha)
    eps_n = _eps_from_rate_bounds(fpr_hi_n, fnr_hi_n, delta)

    # Family M: tau = ms[j]; FP = #non-members >= tau.
    tau_m = ms[js]
    fp_m = n_n - np.searchsorted(ns, tau_m, side="left")
    fnr_hi_m = _cp_upper(js, n_m, alpha)
    fpr_hi_m = _cp_upper(fp_m, n_n, alpha)
    eps_m = _eps_from_rate_bounds(fpr_hi_m, fnr_hi_m, delta)

    notes = (
        f"confidence Bonferroni-split over {n_rules} order-statistic thresholds "
        f"(ranks fixed before looking at the scores)",
    )
    if eps_n.max() >= eps_m.max():
        i = int(np.argmax(eps_n))
        tp = int(tp_n[i])
        fp = int(ks[i])
        return EpsilonLowerBound(
            epsilon=float(eps_n[i]),
            confidence=confidence,
            delta=delta,
            method="bonferroni",
            threshold=float(tau_n[i]),
            rule="score > threshold",
            tp=tp,
            fn=n_m - tp,
            fp=fp,
            tn=n_n - fp,
            fpr_upper=float(fpr_hi_n[i]),
            fnr_upper=float(fnr_hi_n[i]),
            n_thresholds=int(n_rules),
            notes=notes,
        )
    i = int(np.argmax(eps_m))
    fn = int(js[i])
    fp = int(fp_m[i])
    return EpsilonLowerBound(
        epsilon=float(eps_m[i]),
        confidence=confidence,
        delta=delta,
        method="bonferroni",
        threshold=float(tau_m[i]),
        rule="score >= threshold",
        tp=n_m - fn,
        fn=fn,
        fp=fp,
        tn=n_n - fp,
        fpr_upper=float(fpr_hi_m[i]),
        fnr_upper=float(fnr_hi_m[i]),
        n_thresholds=int(n_rules),
        notes=notes,
    )


def _counts_at(ms: np.ndarray, ns: np.ndarray, taus: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(TP, FP) for rule "member iff score >= tau" given sorted member/non-member scores."""
    tp = ms.size - np.searchsorted(ms, taus, side="left")
    fp = ns.size - np.searchsorted(ns, taus, side="left")
    return tp, fp


def _split(
    m: np.ndarray, nm: np.ndarray, delta: float, confidence: float, rng: np.random.Generator
) -> EpsilonLowerBound:
    """Choose the threshold on a random half of each group, bound epsilon on the other half.

    The threshold maximises the Clopper-Pearson epsilon bound on the selection half (any rule
    would do: the evaluation half never influences it), then :func:`epsilon_lower_bound` is
    applied to the evaluation half's counts at ``confidence`` — a single pre-chosen test.
    """
    pm, pn = rng.permutation(m.size), rng.permutation(nm.size)
    hm, hn = m.size // 2, nm.size // 2
    sel_m, ev_m = np.sort(m[pm[:hm]]), np.sort(m[pm[hm:]])
    sel_n, ev_n = np.sort(nm[pn[:hn]]), np.sort(nm[pn[hn:]])
    alpha = (1.0 - confidence) / 2.0
    taus = np.unique(np.concatenate([sel_m, sel_n, [np.inf]]))
    tp, fp = _counts_at(sel_m, sel_n, taus)
    eps_sel = _eps_from_rate_bounds(
        _cp_upper(fp, sel_n.size, alpha), _cp_upper(sel_m.size - tp, sel_m.size, alpha), delta
    )
    tau = float(taus[int(np.argmax(eps_sel))])
    tp_e, fp_e = _counts_at(ev_m, ev_n, np.array([tau]))
    tp_e, fp_e = int(tp_e[0]), int(fp_e[0])
    fn_e, tn_e = ev_m.size - tp_e, ev_n.size - fp_e
    fpr_hi = float(_cp_upper(fp_e, ev_n.size, alpha))
    fnr_hi = float(_cp_upper(fn_e, ev_m.size, alpha))
    eps = float(_eps_from_rate_bounds(fpr_hi, fnr_hi, delta))
    return EpsilonLowerBound(
        epsilon=eps,
        confidence=confidence,
        delta=delta,
        method="split",
        threshold=tau,
        rule="score >= threshold",
        tp=tp_e,
        fn=fn_e,
        fp=fp_e,
        tn=tn_e,
        fpr_upper=fpr_hi,
        fnr_upper=fnr_hi,
        n_thresholds=1,
        notes=(
            f"threshold chosen on a random half ({sel_m.size} members, {sel_n.size} "
            f"non-members); bound computed on the other half only",
        ),
    )


def epsilon_lower_bound_from_scores(
    member_scores: Sequence[float] | np.ndarray,
    nonmember_scores: Sequence[float] | np.ndarray,
    delta: float = 0.0,
    confidence: float = 0.95,
    method: str = "bonferroni",
    rng: np.random.Generator | int | None = None,
    max_thresholds: int = 32,
) -> EpsilonLowerBound:
    """Empirical epsilon lower bound (nats) from attack scores (higher = "member").

    ``method="split"``: threshold picked on a random half of each group (``rng``), bound on
    the other half.  ``method="bonferroni"`` (default, deterministic): the confidence is split
    over at most ``2 * max_thresholds`` order-statistic rules whose ranks are fixed by the
    sample sizes alone; see :func:`_bonferroni` for why this is valid.  In both cases the
    result holds with probability >= ``confidence`` (under the independence assumption in the
    module docstring) — never "best threshold on the same data".
    """
    c = _check_confidence(confidence)
    d = _check_delta(delta)
    m = _check_scores(member_scores, "member_scores")
    nm = _check_scores(nonmember_scores, "nonmember_scores")
    if method == "bonferroni":
        if int(max_thresholds) < 1:
            raise InvalidParameterError("max_thresholds must be >= 1")
        return _bonferroni(m, nm, d, c, int(max_thresholds))
    if method == "split":
        if m.size < 2 or nm.size < 2:
            raise InvalidParameterError("method='split' needs at least 2 members and 2 non-members")
        gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        return _split(m, nm, d, c, gen)
    raise InvalidParameterError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")


# --------------------------------------------------------------------------- ROC metrics
@dataclass(frozen=True)
class RocMetrics:
    """Descriptive ROC summary of an attack (point estimates; no confidence attached).

    ``fpr``/``tpr``: the empirical ROC curve (rule "member iff score >= threshold", from the
    strictest threshold to the loosest, starting at (0, 0) and ending at (1, 1)).
    ``auc``: area under it = P(member score > non-member score) + 0.5 P(tie) (Mann-Whitney).
    ``tpr_at_fpr``: best TPR among thresholds with FPR <= level.  ``balanced_accuracy``:
    max over thresholds of (TPR + TNR)/2; ``advantage``: max(TPR - FPR) (Yeom et al. 2018,
    Def. 4), = 2 * balanced_accuracy - 1.  Maxima are taken over thresholds on the same data,
    so they are optimistic descriptions, not bounds; the epsilon bound is the calibrated number.
    """

    auc: float
    tpr_at_fpr: dict[float, float]
    balanced_accuracy: float
    advantage: float
    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    n_members: int
    n_nonmembers: int
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self, curve: bool = False) -> dict:
        out = {
            "auc": self.auc,
            "tpr_at_fpr": {str(k): v for k, v in self.tpr_at_fpr.items()},
            "balanced_accuracy": self.balanced_accuracy,
            "advantage": self.advantage,
            "n_members": self.n_members,
            "n_nonmembers": self.n_nonmembers,
            "notes": list(self.notes),
        }
        if curve:
            out["fpr"] = self.fpr.tolist()
            out["tpr"] = self.tpr.tolist()
        return out


def roc_metrics(
    member_scores: Sequence[float] | np.ndarray,
    nonmember_scores: Sequence[float] | np.ndarray,
    fpr_levels: Sequence[float] = FPR_LEVELS,
) -> RocMetrics:
    """ROC curve, AUC, TPR at the given FPR levels, balanced accuracy and advantage."""
    m = _check_scores(member_scores, "member_scores")
    nm = _check_scores(nonmember_scores, "nonmember_scores")
    ms, ns = np.sort(m), np.sort(nm)
    taus = np.unique(np.concatenate([ms, ns]))[::-1]  # strict -> loose
    tp, fp = _counts_at(ms, ns, taus)
    tpr = np.concatenate([[0.0], tp / m.size])
    fpr = np.concatenate([[0.0], fp / nm.size])
    thresholds = np.concatenate([[np.inf], taus])
    auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))
    notes = []
    tpr_at = {}
    for level in fpr_levels:
        lv = float(level)
        if not 0.0 <= lv <= 1.0:
            raise InvalidParameterError(f"FPR level must be in [0, 1], got {level!r}")
        tpr_at[lv] = float(tpr[fpr <= lv + 1e-12].max())
        if lv * nm.size < 1.0:
            notes.append(
                f"FPR {lv:g} is below the resolution 1/{nm.size} of the non-member set: "
                f"TPR there is measured at FPR = 0"
            )
    adv = float(np.max(tpr - fpr))
    return RocMetrics(
        auc=auc,
        tpr_at_fpr=tpr_at,
        balanced_accuracy=(1.0 + adv) / 2.0,
        advantage=adv,
        fpr=fpr,
        tpr=tpr,
        thresholds=thresholds,
        n_members=int(m.size),
        n_nonmembers=int(nm.size),
        notes=tuple(notes),
    )


# --------------------------------------------------------------------------- DP caps
def dp_tpr_cap(fpr: float | np.ndarray, epsilon: float, delta: float) -> float | np.ndarray:
    """Largest TPR an (eps, delta)-DP model allows at a given FPR (Kairouz et al. 2015,
    Thm. 2.1): ``min(1, e^eps FPR + delta, 1 - e^-eps (1 - delta - FPR))``."""
    e, d = _check_epsilon(epsilon), _check_delta(delta)
    a = np.asarray(fpr, dtype=np.float64)
    with np.errstate(over="ignore"):
        cap = np.minimum.reduce(
            [np.ones_like(a), math.exp(min(e, 700.0)) * a + d, 1.0 - math.exp(-e) * (1.0 - d - a)]
        )
    cap = np.clip(cap, 0.0, 1.0)
    return float(cap) if cap.ndim == 0 else cap


def dp_advantage_cap(epsilon: float, delta: float) -> float:
    """Max TPR - FPR under (eps, delta)-DP: ``(e^eps - 1 + 2 delta) / (e^eps + 1)``, reached at
    FPR = FNR = (1-delta)/(1+e^eps) (the corner of the Kairouz region; cf. Humphries et al.
    2020).  Balanced-accuracy cap = (1 + advantage cap) / 2."""
    e, d = _check_epsilon(epsilon), _check_delta(delta)
    if e > 700:
        return 1.0
    return min(1.0, (math.exp(e) - 1.0 + 2.0 * d) / (math.exp(e) + 1.0))


def dp_auc_cap(epsilon: float, delta: float) -> float:
    """Largest ROC AUC any test can reach against an (eps, delta)-DP model: the area under
    :func:`dp_tpr_cap`, a piecewise-linear curve through (0, delta), the corner
    ((1-delta)/(1+e^eps), (e^eps+delta)/(1+e^eps)), (1-delta, 1) and (1, 1); exact."""
    e, d = _check_epsilon(epsilon), _check_delta(delta)
    if e > 700:
        return 1.0
    a_star = (1.0 - d) / (1.0 + math.exp(e))
    xs = [0.0, a_star, 1.0 - d, 1.0]
    ys = [d, (math.exp(e) + d) / (1.0 + math.exp(e)), 1.0, 1.0]
    return float(sum((xs[i + 1] - xs[i]) * (ys[i + 1] + ys[i]) / 2.0 for i in range(3)))


def gdp_delta(mu: float, epsilon: float) -> float:
    """delta(eps) of mu-GDP: ``Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2)`` (Dong, Roth,
    Su 2022, Cor. 2.13); computed in log space so large eps does not overflow."""
    from scipy.special import log_ndtr, ndtr

    if mu < 0 or not math.isfinite(mu):
        raise InvalidParameterError(f"mu must be finite and >= 0, got {mu!r}")
    e = _check_epsilon(epsilon)
    if mu == 0:
        return 0.0
    a = float(ndtr(-e / mu + mu / 2.0))
    b = math.exp(min(e + float(log_ndtr(-e / mu - mu / 2.0)), 0.0))
    return max(0.0, a - b)


def gdp_epsilon(mu: float, delta: float) -> float:
    """Smallest eps with mu-GDP => (eps, delta)-DP, i.e. the root of ``gdp_delta(mu, eps) =
    delta`` (delta is decreasing in eps).  Returns 0 when ``gdp_delta(mu, 0) <= delta``."""
    from scipy.optimize import brentq

    d = _check_delta(delta)
    if d <= 0:
        raise InvalidParameterError("gdp_epsilon needs delta > 0 (mu-GDP is not (eps, 0)-DP)")
    if gdp_delta(mu, 0.0) <= d:
        return 0.0
    hi = 1.0
    while gdp_delta(mu, hi) > d:
        hi *= 2.0
        if hi > 1e6:
            raise InvalidParameterError("gdp_epsilon: epsilon beyond 1e6")
    return float(brentq(lambda x: gdp_delta(mu, x) - d, 0.0, hi, xtol=1e-12, rtol=1e-12))


def gdp_mu(epsilon: float, delta: float) -> float:
    """The mu whose GDP trade-off curve passes through (eps, delta): the largest mu with
    mu-GDP => (eps, delta)-DP (delta of mu-GDP increases with mu; Dong et al. 2022, Cor. 2.13).
    This is the "GDP approximation" of an (eps, delta) claim.  Needs delta > 0 (no mu > 0
    GDP mechanism is (eps, 0)-DP); returns inf when mu would exceed 1e4."""
    from scipy.optimize import brentq

    e, d = _check_epsilon(epsilon), _check_delta(delta)
    if d <= 0:
        raise InvalidParameterError("gdp_mu needs delta > 0")
    hi = 1.0
    while gdp_delta(hi, e) < d:
        hi *= 2.0
        if hi > 1e4:
            return math.inf
    return float(brentq(lambda x: gdp_delta(x, e) - d, 0.0, hi, xtol=1e-12, rtol=1e-12))


def gdp_auc_cap(epsilon: float, delta: float) -> float:
    """AUC of the mu-GDP trade-off curve with mu = :func:`gdp_mu` (eps, delta):
    ``Phi(mu / sqrt 2)`` (the AUC of N(mu, 1) vs N(0, 1)).  An approximation — the sound cap
    is :func:`dp_auc_cap`; DP-SGD's privacy curve is close to GDP for many steps (Dong et al.
    2022, Thm. 3.5 CLT), so this is the more realistic ceiling."""
    from scipy.special import ndtr

    mu = gdp_mu(epsilon, delta)
    if not math.isfinite(mu):
        return 1.0
    return float(ndtr(mu / math.sqrt(2.0)))


def dp_caps(
    epsilon: float | None, delta: float | None, fpr_levels: Sequence[float] = FPR_LEVELS
) -> dict | None:
    """All caps an (eps, delta)-DP claim imposes on a membership attack, as a JSON-able dict:
    ``tpr_at_fpr`` (per level), ``advantage``, ``balanced_accuracy``, ``auc`` (exact region
    bound), ``auc_gdp`` (GDP approximation) and ``gdp_mu``.  ``None`` when there is no claim."""
    if epsilon is None or not math.isfinite(float(epsilon)):
        return None
    d = 0.0 if delta is None else float(delta)
    adv = dp_advantage_cap(epsilon, d)
    return {
        "epsilon": float(epsilon),
        "delta": d,
        "tpr_at_fpr": {str(float(lv)): float(dp_tpr_cap(lv, epsilon, d)) for lv in fpr_levels},
        "advantage": adv,
        "balanced_accuracy": (1.0 + adv) / 2.0,
        "auc": dp_auc_cap(epsilon, d),
        "auc_gdp": gdp_auc_cap(epsilon, d) if d > 0 else None,
        "gdp_mu": gdp_mu(epsilon, d) if d > 0 else None,
    }


# --------------------------------------------------------------------------- verdict
VERDICTS: tuple[str, ...] = ("consistent", "violation", "no-claim")


def verdict(epsilon_lb: float, claimed_epsilon: float | None) -> str:
    """``"violation"`` if the empirical lower bound exceeds the claimed epsilon (at the bound's
    confidence), ``"consistent"`` if not, ``"no-claim"`` for a model without a finite claim."""
    if claimed_epsilon is None or not math.isfinite(float(claimed_epsilon)):
        return "no-claim"
    return "violation" if float(epsilon_lb) > float(claimed_epsilon) else "consistent"
