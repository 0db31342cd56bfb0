"""Property tests pinning the f-DP math: trade-off curves (Gaussian, PLD, (eps, delta)), the
noise family's epsilon bounds (cross-checked with dp-accounting), the multi-run corner
test and the one-run recursion (soundness by simulation, comparison with Steinke et al.)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from dpaudit.accounting.events import GaussianSegment
from dpaudit.accounting.gaussian import gaussian_epsilon
from dpaudit.accounting.pld_pmf import gaussian_pmf
from dpaudit.stats.family import NoiseFamily, segments_tradeoff
from dpaudit.stats.fdp_test import (
    curve_p_value,
    family_bound,
    gdp_mu_lower,
    perfect_corner,
    rate_corners,
    runs_needed,
)
from dpaudit.stats.one_run import fdp_p_value, fdp_rejects, guess_bound, steinke_epsilon
from dpaudit.stats.tradeoff import (
    GaussianTradeoff,
    PiecewiseTradeoff,
    kairouz_tradeoff,
    pmf_tradeoff,
)

ALPHAS = np.concatenate((np.geomspace(1e-6, 1e-2, 30), np.linspace(0.01, 1.0, 200)))


# --------------------------------------------------------------------------- curves
@given(st.floats(0.0, 6.0), st.floats(0.0, 1.0))
def test_gaussian_curve_is_the_normal_trade_off(mu, a):
    expected = stats.norm.cdf(stats.norm.ppf(1 - a) - mu)
    assert float(GaussianTradeoff(mu)(a)) == pytest.approx(expected, abs=1e-12)


@given(st.floats(0.05, 4.0), st.sampled_from([1e-3, 1e-5, 1e-7]))
def test_gaussian_curve_epsilon_is_the_gdp_epsilon(mu, delta):
    c = GaussianTradeoff(mu)
    assert c.epsilon(delta) == gaussian_epsilon(mu, delta)
    assert c.epsilon_lower(delta) <= c.epsilon(delta)


@settings(max_examples=25, deadline=None)
@given(st.floats(0.1, 3.0))
def test_connect_the_dots_curve_lies_below_the_exact_one(mu):
    """The discretised pair dominates the Gaussian pair: its trade-off curve is pointwise <=
    the exact mu-GDP curve (a violation is never declared because of discretisation), and
    close to it."""
    pmf = gaussian_pmf(mu, 1e-3, math.log(1e-15))
    disc = pmf_tradeoff(pmf.losses, pmf.probs, pmf.inf_mass)
    exact = GaussianTradeoff(mu)(ALPHAS)
    assert np.all(disc(ALPHAS) <= exact + 1e-12)
    assert np.max(exact - disc(ALPHAS)) < 2e-3


@given(st.floats(0.0, 5.0), st.sampled_from([0.0, 1e-6, 1e-3, 0.05]))
def test_kairouz_curve_round_trips(eps, delta):
    c = kairouz_tradeoff(eps, delta)
    assert c.symmetric()
    assert c.epsilon(delta) == pytest.approx(eps, abs=1e-9)
    assert c.delta(eps) == pytest.approx(delta, abs=1e-12)
    a = np.linspace(0, 1, 101)
    want = np.maximum.reduce([np.zeros_like(a), 1 - delta - math.exp(eps) * a, math.exp(-eps) * (1 - delta - a)])
    np.testing.assert_allclose(c(a), want, atol=1e-12)


def test_inverse_and_symmetrization():
    segs = (GaussianSegment(0.25, 1.0, 4),)
    f = segments_tradeoff(segs)
    assert isinstance(f, PiecewiseTradeoff) and not f.symmetric()
    b = f(ALPHAS)
    # f^{-1}(f(a)) <= a (generalised inverse), equality where f is strictly decreasing
    assert np.all(f.inverse(b) <= ALPHAS + 1e-9)
    s = f.symmetrized()
    assert s.symmetric()
    assert np.all(s(ALPHAS) <= np.minimum(f(ALPHAS), f.inverse(ALPHAS)) + 1e-12)
    assert np.all(np.diff(s(ALPHAS)) <= 1e-12)


@pytest.mark.parametrize("q, sigma, steps", [(0.1, 1.0, 20), (0.25, 1.564, 4), (0.01, 1.0, 1000), (0.089, 3.38, 330)])
def test_family_epsilons_bracket_dp_accounting(q, sigma, steps):
    """Upper and lower bounds on the member's epsilon bracket dp-accounting's PLD (fine
    grid); the remove-direction curve's own epsilon is within 0.5% of it (that direction
    decides epsilon for these mechanisms)."""
    import dp_accounting
    from dp_accounting import pld

    acc = pld.PLDAccountant(value_discretization_interval=1e-4)
    acc.compose(dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps))
    ref = acc.get_epsilon(1e-5)
    fam = NoiseFamily((GaussianSegment(q, sigma, steps),))
    assert fam.epsilon_lower(1.0, 1e-5) <= ref * (1 + 1e-4)
    assert fam.epsilon(1.0, 1e-5) >= ref * (1 - 1e-3)
    assert fam.epsilon_lower(1.0, 1e-5) >= 0.99 * ref
    assert fam.curve(1.0).epsilon(1e-5) == pytest.approx(ref, rel=5e-3)


def test_family_is_ordered_and_solvable():
    fam = NoiseFamily((GaussianSegment(0.1, 1.0, 20),))
    lo, hi = fam.curve(0.8), fam.curve(1.25)
    assert np.all(lo(ALPHAS) <= hi(ALPHAS) + 1e-9)  # more noise, higher curve
    s = fam.scale_for_epsilon(3.0, 1e-5)
    assert fam.epsilon(s, 1e-5) == pytest.approx(3.0, rel=1e-3)
    gauss = NoiseFamily((GaussianSegment(1.0, 2.0, 4),))
    assert gauss.gaussian and gauss.mu(2.0) == pytest.approx(0.5)


# --------------------------------------------------------------------------- multi-run test
def test_corner_test_holds_its_level_at_the_true_curve():
    """Scores of N(mu, 1) (in) vs N(0, 1) (out): the true mu-GDP curve is rejected in at
    most about alpha of the trials (Bonferroni makes it lower)."""
    rng = np.random.default_rng(3)
    mu, alpha, trials, n = 0.8, 0.2, 200, 400
    rejected = 0
    for _ in range(trials):
        c = rate_corners(rng.standard_normal(n) + mu, rng.standard_normal(n), alpha)
        rejected += c.rejects(GaussianTradeoff(mu))
    assert rejected / trials <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / trials)


def test_corner_test_has_power_and_agrees_with_its_p_value():
    rng = np.random.default_rng(4)
    c = rate_corners(rng.standard_normal(3000) + 1.5, rng.standard_normal(3000), 0.05)
    assert c.rejects(GaussianTradeoff(1.0)) and not c.rejects(GaussianTradeoff(2.0))
    assert curve_p_value(GaussianTradeoff(1.0), c) < 0.05 < curve_p_value(GaussianTradeoff(2.0), c)
    assert c.cp_epsilon(1e-5) <= GaussianTradeoff(gdp_mu_lower(c)).epsilon(1e-5) + 1e-9


def test_gdp_closed_form_matches_the_family_bisection():
    rng = np.random.default_rng(5)
    c = rate_corners(rng.standard_normal(5000) + 0.7, rng.standard_normal(5000), 0.05)
    mu = gdp_mu_lower(c)
    fb = family_bound(lambda s: GaussianTradeoff(1.0 / s), c.rejects, start=1.0, rel_tol=1e-6)
    assert 1.0 / fb.scale == pytest.approx(mu, rel=1e-5)


@given(st.floats(0.2, 3.0), st.sampled_from([0.05, 1e-3]), st.integers(5, 20))
def test_runs_needed_is_the_smallest_size_whose_perfect_corner_rejects(mu, alpha, k):
    curve = GaussianTradeoff(mu)
    n = runs_needed(curve, alpha, k)
    p0, p1 = perfect_corner(n, n, alpha, k)
    assert float(curve(p0)) > p1
    if n > 1:
        p0, p1 = perfect_corner(n - 1, n - 1, alpha, k)
        assert float(curve(p0)) <= p1 + 1e-12


# --------------------------------------------------------------------------- one run
def _gdp_one_run(rng, mu, m, k):
    s = rng.random(m) < 0.5
    z = rng.standard_normal(m) + mu * s
    top = np.argsort(-z)[:k]
    return int(s[top].sum())


def test_one_run_recursion_is_sound_for_a_gaussian_mechanism():
    """Top-k guesses on canaries of the mu-GDP Gaussian mechanism: the true curve is rejected
    in at most about gamma of the trials, sharp and paper form alike."""
    rng = np.random.default_rng(6)
    mu, m, k, gamma, trials = 1.0, 400, 40, 0.1, 300
    phi = guess_bound(GaussianTradeoff(mu), two_sided=False)
    rej = sum(fdp_rejects(phi, m, k, _gdp_one_run(rng, mu, m, k), gamma) for _ in range(trials))
    assert rej / trials <= gamma + 3 * math.sqrt(gamma * (1 - gamma) / trials)


def test_one_run_recursion_is_sound_for_randomized_response():
    """Randomized response is exactly eps-DP: v ~ Binomial(r, e^eps/(1+e^eps))."""
    eps, m, gamma = 1.0, 100, 0.05
    p = math.exp(eps) / (1 + math.exp(eps))
    phi = guess_bound(kairouz_tradeoff(eps, 0.0), two_sided=True)
    v_min = min(v for v in range(m + 2) if v > m or fdp_rejects(phi, m, m, v, gamma))
    # exact rejection probability when every canary is guessed from its randomized response
    assert stats.binom.sf(v_min - 1, m, p) <= gamma
    # "in" guesses only (sharp form): the k canaries whose response says "in"
    rng = np.random.default_rng(7)
    k, trials = 40, 20000
    s_ = rng.random((trials, m)) < 0.5
    b = np.where(rng.random((trials, m)) < p, s_, ~s_) + 0.5 * rng.random((trials, m))
    top = np.argsort(-b, axis=1)[:, :k]
    w = np.take_along_axis(s_, top, axis=1).sum(1)
    phi = guess_bound(kairouz_tradeoff(eps, 0.0), two_sided=False)
    v_min = min(v for v in range(k + 2) if v > k or fdp_rejects(phi, m, k, v, gamma))
    assert np.mean(w >= v_min) <= gamma


@settings(max_examples=60, deadline=None)
@given(st.integers(20, 3000), st.data(), st.floats(0.1, 2.0))
def test_sharp_form_rejects_whenever_the_paper_form_does(m, data, mu):
    r = data.draw(st.integers(2, m))
    v = data.draw(st.integers(r // 2, r))
    curve = GaussianTradeoff(mu)
    if fdp_rejects(guess_bound(curve, False, sharp=False), m, r, v, 0.05):
        assert fdp_rejects(guess_bound(curve, False), m, r, v, 0.05)


def _fdp_eps(m, r, v, delta, gamma):
    def rej(e):
        return fdp_rejects(guess_bound(kairouz_tradeoff(e, delta), True), m, r, v, gamma)

    if not rej(0.0):
        return 0.0
    lo, hi = 0.0, 1.0
    while rej(hi):
        lo, hi = hi, 2 * hi
    while hi - lo > 1e-5:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if rej(mid) else (lo, mid)
    return lo


@pytest.mark.parametrize("m, r, v, delta", [(100, 83, 69, 0.0), (1000, 479, 469, 0.0), (10000, 1211, 1181, 0.0),
                                            (1000, 913, 686, 1e-5), (10000, 1277, 965, 1e-6)])
def test_with_the_dp_curve_the_recursion_is_close_to_steinke(m, r, v, delta):
    """With f the (eps, delta) curve the recursion is a relaxation: it never certifies more
    than Steinke et al.'s bound at delta = 0 (the exact binomial tail), and at most 2%
    less in eps on these cases (measured worst over a random grid: 1.6%)."""
    a = steinke_epsilon(m, r, v, delta, 0.05)
    b = _fdp_eps(m, r, v, delta, 0.05)
    if delta == 0:
        assert b <= a * 1.0001 + 1e-6
    assert b >= 0.98 * a - 1e-6


def test_with_many_canaries_the_recursion_beats_the_2m_delta_term():
    """m = 10^6 canaries at delta = 1e-5: Steinke et al.'s 2 m delta = 20 term halves their
    figure; the recursion, which sees delta through the curve, is unaffected."""
    m, r, v, delta = 1_000_000, 2000, 1700, 1e-5
    assert _fdp_eps(m, r, v, delta, 0.05) > 2 * steinke_epsilon(m, r, v, delta, 0.05)


def test_one_run_p_value_agrees_with_the_test():
    phi = guess_bound(GaussianTradeoff(0.5), True)
    p = fdp_p_value(phi, 10_000, 400, 330)
    assert 0 < p < 1
    assert fdp_rejects(phi, 10_000, 400, 330, p * 1.01) and not fdp_rejects(phi, 10_000, 400, 330, p * 0.99)


@pytest.mark.parametrize("segs", [(GaussianSegment(0.1, 1.0, 20),), (GaussianSegment(0.01, 1.0, 1000),)])
def test_coarsened_curve_lies_below_and_close(segs):
    f = segments_tradeoff(segs)
    c = f.coarsened(2000)
    assert c.alphas.size <= 2100
    x = np.concatenate((np.geomspace(1e-12, 1e-2, 2000), np.linspace(0.01, 1.0, 20000)))
    assert np.all(c(x) <= f(x) + 1e-13)
    assert np.max(f(x) - c(x)) < 1e-4
