"""Property and golden tests for dpaudit.stats (pure numpy/scipy)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dpaudit import stats as S
from dpaudit.errors import InvalidParameterError
from dpaudit.stats import (
    clopper_pearson,
    dp_advantage_cap,
    dp_auc_cap,
    dp_caps,
    dp_tpr_cap,
    epsilon_lower_bound,
    epsilon_lower_bound_from_scores,
    gdp_auc_cap,
    gdp_delta,
    gdp_epsilon,
    gdp_mu,
    roc_metrics,
    verdict,
)

# ----------------------------------------------------------------------------- golden values


def test_golden_perfect_attack_99pct():
    # TP=500/500, FP=0/500, two-sided 99% CP -> ln(TPR_lo / FPR_hi) = 4.54 (issue text).
    lo, _ = clopper_pearson(500, 500, 0.99)
    _, hi = clopper_pearson(0, 500, 0.99)
    assert math.log(lo / hi) == pytest.approx(4.54, abs=0.005)
    assert epsilon_lower_bound(500, 0, 0, 500, delta=0.0, confidence=0.99) == pytest.approx(
        4.54, abs=0.005
    )
    # closed forms at the edges: hi(0, n) = 1 - a^(1/n), lo(n, n) = a^(1/n)
    assert hi == pytest.approx(1 - 0.005 ** (1 / 500), rel=1e-12)
    assert lo == pytest.approx(0.005 ** (1 / 500), rel=1e-12)


# ----------------------------------------------------------------------------- Clopper-Pearson


@given(
    n=st.integers(1, 400),
    frac=st.floats(0, 1),
    conf=st.sampled_from([0.8, 0.9, 0.95, 0.99, 0.999]),
)
def test_cp_matches_scipy_exact_interval(n, frac, conf):
    from scipy.stats import binomtest

    k = int(round(frac * n))
    ref = binomtest(k, n).proportion_ci(confidence_level=conf, method="exact")
    lo, hi = clopper_pearson(k, n, conf)
    assert lo == pytest.approx(ref.low, abs=1e-9)
    assert hi == pytest.approx(ref.high, abs=1e-9)
    assert 0 <= lo <= k / n <= hi <= 1


@given(n=st.integers(2, 300), k=st.integers(0, 299))
def test_cp_monotone(n, k):
    k = min(k, n - 1)
    lo1, hi1 = clopper_pearson(k, n, 0.95)
    lo2, hi2 = clopper_pearson(k + 1, n, 0.95)
    assert hi2 >= hi1 and lo2 >= lo1  # more successes -> interval moves up
    lo3, hi3 = clopper_pearson(k, n, 0.99)
    assert hi3 >= hi1 and lo3 <= lo1  # more confidence -> wider
    _, hi_one = clopper_pearson(k, n, 0.95, two_sided=False)
    assert hi_one <= hi1  # one-sided 95% is tighter than the two-sided upper end


@pytest.mark.parametrize("p,n", [(0.01, 50), (0.3, 40), (0.5, 200), (0.97, 120)])
def test_cp_upper_coverage_by_simulation(p, n):
    rng = np.random.default_rng(1)
    ks = rng.binomial(n, p, size=4000)
    his = S.cp_upper(ks, n, 0.05)
    assert np.mean(p <= his) >= 0.95 - 0.01  # exact method: coverage >= nominal


def test_cp_rejects_bad_input():
    for args in [(3, 2), (-1, 5), (1, 0), (1.5, 3)]:
        with pytest.raises(InvalidParameterError):
            clopper_pearson(*args)
    with pytest.raises(InvalidParameterError):
        clopper_pearson(1, 5, 1.0)


# ----------------------------------------------------------------------------- epsilon bound


counts = st.integers(0, 300)


@given(tp=counts, fn=counts, fp=counts, tn=counts)
def test_eps_lb_monotone_and_nonnegative(tp, fn, fp, tn):
    if tp + fn == 0 or fp + tn == 0:
        return
    e = epsilon_lower_bound(tp, fn, fp, tn, 1e-5, 0.95)
    assert e >= 0
    # moving a member from TP to FN or a non-member from TN to FP can only lower the bound
    if tp > 0:
        assert epsilon_lower_bound(tp - 1, fn + 1, fp, tn, 1e-5, 0.95) <= e + 1e-12
    if tn > 0:
        assert epsilon_lower_bound(tp, fn, fp + 1, tn - 1, 1e-5, 0.95) <= e + 1e-12
    # more confidence or more delta -> smaller bound
    assert epsilon_lower_bound(tp, fn, fp, tn, 1e-5, 0.99) <= e + 1e-12
    assert epsilon_lower_bound(tp, fn, fp, tn, 1e-2, 0.95) <= e + 1e-12


@given(tp=counts, fp=counts, n=st.integers(301, 600))
def test_eps_lb_symmetric_in_labels(tp, fp, n):
    # Swapping the roles of the two error types gives the same bound (the region is symmetric).
    fn, tn = n - tp, n - fp
    a = epsilon_lower_bound(tp, fn, fp, tn, 0.0, 0.9)
    b = epsilon_lower_bound(tn, fp, fn, tp, 0.0, 0.9)
    assert a == pytest.approx(b, rel=1e-9, abs=1e-12)


def test_eps_lb_is_below_point_estimate():
    # CP upper bounds exceed the observed rates, so the bound is below the plug-in value.
    tp, fn, fp, tn = 400, 100, 20, 480
    point = max(math.log((1 - fn / 500) / (fp / 500)), math.log((1 - fp / 500) / (fn / 500)))
    assert 0 < epsilon_lower_bound(tp, fn, fp, tn, 0.0, 0.95) < point


def test_eps_lb_bad_input():
    with pytest.raises(InvalidParameterError):
        epsilon_lower_bound(1, 1, 1, 1, delta=1.0)
    with pytest.raises(InvalidParameterError):
        epsilon_lower_bound(0, 0, 1, 1)
    with pytest.raises(InvalidParameterError):
        epsilon_lower_bound_from_scores([1.0, np.nan], [0.0])
    with pytest.raises(InvalidParameterError):
        epsilon_lower_bound_from_scores([1.0], [0.0], method="best")
    with pytest.raises(InvalidParameterError):
        epsilon_lower_bound_from_scores([], [0.0])


# ----------------------------------------------------------------------------- confidence by simulation


def _rr_scores(rng, eps, n, member):
    """Randomized response with jitter: pure eps-DP, every threshold in a region is tight."""
    p = math.exp(eps) / (1 + math.exp(eps)) if member else 1 / (1 + math.exp(eps))
    return (rng.random(n) < p).astype(float) + rng.random(n)


def test_confidence_gaussian_known_epsilon():
    # Scores N(mu, 1) vs N(0, 1): the attack's trade-off curve is exactly mu-GDP, whose
    # epsilon at delta is gdp_epsilon(mu, delta).  The bound must stay below it in >= 95%.
    rng = np.random.default_rng(2024)
    for mu, delta in [(1.0, 0.05), (2.0, 0.01)]:
        true_eps = gdp_epsilon(mu, delta)
        for method in ("bonferroni", "split"):
            below = [
                epsilon_lower_bound_from_scores(
                    rng.normal(mu, 1, 500),
                    rng.normal(0, 1, 500),
                    delta,
                    0.95,
                    method=method,
                    rng=rng,
                ).epsilon
                <= true_eps
                for _ in range(100)
            ]
            assert np.mean(below) >= 0.95


def test_confidence_tight_mechanism_and_naive_selection_fails():
    # On a mechanism whose region boundary is attained by a whole range of thresholds, the
    # valid methods keep >= 95% coverage while "best threshold on the same data" does not:
    # this is the check that would catch an invalid threshold selection.
    eps, n, trials = 2.0, 500, 300
    rng = np.random.default_rng(7)
    ok = {"bonferroni": 0, "split": 0}
    naive_over = 0
    for _ in range(trials):
        m, nm = _rr_scores(rng, eps, n, True), _rr_scores(rng, eps, n, False)
        for method in ok:
            r = epsilon_lower_bound_from_scores(m, nm, 0.0, 0.95, method=method, rng=rng)
            ok[method] += r.epsilon <= eps
        ms, ns = np.sort(m), np.sort(nm)
        taus = np.unique(np.concatenate([ms, ns]))
        tp, fp = S.counts_at(ms, ns, taus)
        naive = S.eps_from_rate_bounds(S.cp_upper(fp, n, 0.025), S.cp_upper(n - tp, n, 0.025), 0)
        naive_over += naive.max() > eps
    for method, k in ok.items():
        assert k / trials >= 0.95, method
    assert naive_over / trials > 0.05


def test_bound_detects_strong_leak():
    rng = np.random.default_rng(3)
    m, nm = rng.normal(6, 1, 1000), rng.normal(0, 1, 1000)
    for method in ("bonferroni", "split"):
        r = epsilon_lower_bound_from_scores(m, nm, 1e-5, 0.95, method=method, rng=0)
        assert r.epsilon > 3.0
        assert r.tp + r.fn in (1000, 500) and r.fp + r.tn in (1000, 500)
    # no leak -> (almost always) zero
    same = epsilon_lower_bound_from_scores(rng.normal(0, 1, 1000), rng.normal(0, 1, 1000), 1e-5)
    assert same.epsilon < 0.3


def test_bonferroni_grid_is_data_independent():
    g = S.rank_grid(1000, 32)
    assert g[0] == 0 and g[-1] == 999 and np.all(np.diff(g) > 0) and g.size <= 34
    rng = np.random.default_rng(0)
    a = epsilon_lower_bound_from_scores(rng.normal(1, 1, 300), rng.normal(0, 1, 200))
    b = epsilon_lower_bound_from_scores(rng.normal(3, 1, 300), rng.normal(0, 1, 200))
    assert a.n_thresholds == b.n_thresholds


# ----------------------------------------------------------------------------- ROC metrics


@given(
    st.lists(st.integers(-5, 5), min_size=1, max_size=60),
    st.lists(st.integers(-5, 5), min_size=1, max_size=60),
)
def test_roc_matches_sklearn(mem, non):
    from sklearn.metrics import roc_auc_score, roc_curve

    r = roc_metrics(mem, non)
    y = np.r_[np.ones(len(mem)), np.zeros(len(non))]
    s = np.r_[mem, non].astype(float)
    assert r.auc == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    assert r.advantage == pytest.approx(np.max(tpr - fpr), abs=1e-12)
    for lv, v in r.tpr_at_fpr.items():
        assert v == pytest.approx(tpr[fpr <= lv].max(), abs=1e-12)
    assert r.balanced_accuracy == pytest.approx((1 + r.advantage) / 2)
    assert r.fpr[0] == 0 and r.tpr[0] == 0 and r.fpr[-1] == 1 and r.tpr[-1] == 1


def test_roc_resolution_note():
    r = roc_metrics(np.arange(50.0), np.arange(50.0) - 10)
    assert any("0.001" in n for n in r.notes)


# ----------------------------------------------------------------------------- DP caps and GDP


@given(eps=st.floats(0, 8), delta=st.floats(0, 0.1), a=st.floats(0, 1))
def test_tpr_cap_is_region_boundary(eps, delta, a):
    cap = dp_tpr_cap(a, eps, delta)
    assert 0 <= cap <= 1
    assert cap >= a - 1e-12  # the trivial test is always allowed
    # the cap satisfies both Kairouz inequalities with FNR = 1 - cap
    fnr = 1 - cap
    assert fnr + math.exp(eps) * a >= 1 - delta - 1e-9
    assert a + math.exp(eps) * fnr >= 1 - delta - 1e-9
    assert dp_tpr_cap(a, eps + 0.1, delta) >= cap - 1e-12


@given(eps=st.floats(0, 8), delta=st.floats(0, 0.1))
def test_caps_consistent(eps, delta):
    adv = dp_advantage_cap(eps, delta)
    corner = (1 - delta) / (1 + math.exp(eps))  # the region's kinks are grid points
    grid = np.union1d(np.linspace(0, 1, 20001), [corner, 1 - delta])
    caps = dp_tpr_cap(grid, eps, delta)
    assert adv == pytest.approx(np.max(caps - grid), abs=1e-9)
    assert dp_auc_cap(eps, delta) == pytest.approx(np.trapezoid(caps, grid), abs=1e-9)
    assert 0.5 <= dp_auc_cap(eps, delta) <= 1
    assert dp_auc_cap(eps + 0.5, delta) >= dp_auc_cap(eps, delta)


def test_cap_no_privacy_limit():
    assert dp_auc_cap(0, 0) == pytest.approx(0.5)
    assert dp_advantage_cap(0, 0) == 0
    assert dp_caps(None, None) is None
    c = dp_caps(1.0, 1e-5)
    assert set(c["tpr_at_fpr"]) == {"0.1", "0.01", "0.001"}
    assert c["auc_gdp"] <= c["auc"]


@pytest.mark.parametrize("mu,eps", [(0.5, 0.3), (1.0, 1.0), (2.0, 3.0), (4.0, 10.0)])
def test_gdp_delta_agrees_with_dp_accounting(mu, eps):
    # mu-GDP == Gaussian mechanism with sensitivity 1 and sigma = 1/mu.
    from dp_accounting.pld import privacy_loss_distribution as pld

    ref = pld.from_gaussian_mechanism(
        1.0 / mu, value_discretization_interval=1e-3
    ).get_delta_for_epsilon(eps)
    assert gdp_delta(mu, eps) == pytest.approx(ref, rel=1e-9, abs=1e-12)


@given(mu=st.floats(0.1, 6), delta=st.floats(1e-9, 0.2))
def test_gdp_inverses(mu, delta):
    e = gdp_epsilon(mu, delta)
    if e > 0:
        assert gdp_delta(mu, e) == pytest.approx(delta, rel=1e-6, abs=1e-12)
        assert gdp_mu(e, delta) == pytest.approx(mu, rel=1e-6)
    assert gdp_epsilon(mu * 1.1, delta) >= e
    assert 0.5 <= gdp_auc_cap(max(e, 1e-6), delta) <= 1


def test_verdict():
    assert verdict(0.5, 1.0) == "consistent"
    assert verdict(1.0, 1.0) == "consistent"
    assert verdict(1.2, 1.0) == "violation"
    assert verdict(1.2, None) == "no-claim"
    assert verdict(1.2, math.inf) == "no-claim"
