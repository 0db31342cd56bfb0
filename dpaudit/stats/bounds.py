"""Empirical epsilon lower bounds from membership-test outcomes.

Any (eps, delta)-DP mechanism confines every membership test to the region
``FPR + e^eps FNR >= 1 - delta`` and ``FNR + e^eps FPR >= 1 - delta`` (Kairouz, Oh, Viswanath
2015, ICML, Thm 2.1; used for auditing by Jagielski, Ullman, Oprea 2020, NeurIPS, Sec. 3),
hence ``eps >= max(ln((1-delta-FNR)/FPR), ln((1-delta-FPR)/FNR))``. The right-hand side falls
as FPR/FNR grow, so Clopper-Pearson *upper* bounds FPR̄, FNR̄ give a lower bound that holds
with the stated confidence. :func:`epsilon_lower_bound_from_scores` adds a *valid* threshold
choice (a held-out split, or a Bonferroni correction over data-independent order-statistic
thresholds); picking the best threshold on the very data the bound uses is not offered.

Conventions: scores are oriented so that *higher means "member"*; rates are fractions in
[0, 1]; epsilons are in nats. The bounds treat every scored example as an independent trial
of the membership game: exact for simulations and audits that train one model per trial;
for one trained model scored on many examples it is the standard (heuristic) reading of the
membership-inference literature, not a theorem.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from dpaudit.errors import InvalidParameterError
from dpaudit.stats._validate import check_confidence, check_delta, check_scores
from dpaudit.stats.binomial import cp_upper

METHODS: tuple[str, ...] = ("split", "bonferroni")


# --------------------------------------------------------------------------- epsilon bounds
def eps_from_rate_bounds(
    fpr_hi: np.ndarray | float, fnr_hi: np.ndarray | float, delta: float
) -> np.ndarray:
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
    c = check_confidence(confidence)
    d = check_delta(delta)
    for name, v in (("tp", tp), ("fn", fn), ("fp", fp), ("tn", tn)):
        if int(v) != v or v < 0:
            raise InvalidParameterError(f"{name} must be a non-negative integer, got {v!r}")
    if tp + fn < 1 or fp + tn < 1:
        raise InvalidParameterError("need at least one member and one non-member")
    alpha = (1.0 - c) / 2.0
    fpr_hi = cp_upper(fp, fp + tn, alpha)
    fnr_hi = cp_upper(fn, tp + fn, alpha)
    return float(eps_from_rate_bounds(fpr_hi, fnr_hi, d))


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
    fpr_hi_n = cp_upper(ks, n_n, alpha)
    fnr_hi_n = cp_upper(n_m - tp_n, n_m, alpha)
    eps_n = eps_from_rate_bounds(fpr_hi_n, fnr_hi_n, delta)

    # Family M: tau = ms[j]; FP = #non-members >= tau.
    tau_m = ms[js]
    fp_m = n_n - np.searchsorted(ns, tau_m, side="left")
    fnr_hi_m = cp_upper(js, n_m, alpha)
    fpr_hi_m = cp_upper(fp_m, n_n, alpha)
    eps_m = eps_from_rate_bounds(fpr_hi_m, fnr_hi_m, delta)

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


def counts_at(ms: np.ndarray, ns: np.ndarray, taus: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
    tp, fp = counts_at(sel_m, sel_n, taus)
    eps_sel = eps_from_rate_bounds(
        cp_upper(fp, sel_n.size, alpha), cp_upper(sel_m.size - tp, sel_m.size, alpha), delta
    )
    tau = float(taus[int(np.argmax(eps_sel))])
    tp_arr, fp_arr = counts_at(ev_m, ev_n, np.array([tau]))
    tp_e, fp_e = int(tp_arr[0]), int(fp_arr[0])
    fn_e, tn_e = ev_m.size - tp_e, ev_n.size - fp_e
    fpr_hi = float(cp_upper(fp_e, ev_n.size, alpha))
    fnr_hi = float(cp_upper(fn_e, ev_m.size, alpha))
    eps = float(eps_from_rate_bounds(fpr_hi, fnr_hi, delta))
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
    c = check_confidence(confidence)
    d = check_delta(delta)
    m = check_scores(member_scores, "member_scores")
    nm = check_scores(nonmember_scores, "nonmember_scores")
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
