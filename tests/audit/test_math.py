"""Property tests pinning the audit's statistics: the one-run bound (Steinke et al. 2023),
the likelihood-ratio score and the GDP route (Nasr et al. 2023)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from dpaudit.audit.canaries import gdp_route, llr
from dpaudit.audit.one_run import epsilon_lower_bound, guess_grid, p_value
from dpaudit.errors import InvalidParameterError
from dpaudit.stats import gdp_epsilon, gdp_mu


@given(st.integers(1, 200), st.data(), st.floats(0.0, 5.0))
def test_p_value_without_delta_is_the_binomial_tail(r, data, eps):
    v = data.draw(st.integers(1, r))
    expected = stats.binom.sf(v - 1, r, 1 / (1 + math.exp(-eps)))
    assert p_value(1000, r, v, eps, 0.0) == pytest.approx(expected, rel=1e-9, abs=1e-15)


@given(st.integers(2, 300), st.data(), st.floats(0.0, 4.0), st.floats(0.0, 4.0), st.sampled_from([0.0, 1e-6, 1e-5, 1e-3]))
def test_p_value_is_monotone(r, data, e1, e2, delta):
    v = data.draw(st.integers(1, r))
    lo, hi = sorted((e1, e2))
    m = 2 * r
    # more privacy loss allowed -> more correct guesses plausible -> larger p-value
    assert p_value(m, r, v, lo, delta) <= p_value(m, r, v, hi, delta) + 1e-12
    # more correct guesses -> smaller p-value; the delta term only adds
    if v < r:
        assert p_value(m, r, v + 1, hi, delta) <= p_value(m, r, v, hi, delta) + 1e-12
    assert p_value(m, r, v, hi, delta) >= p_value(m, r, v, hi, 0.0) - 1e-15


@given(st.integers(10, 400), st.data(), st.sampled_from([0.0, 1e-5]))
def test_epsilon_lower_bound_is_the_rejection_boundary(r, data, delta):
    v = data.draw(st.integers(r // 2, r))
    e = epsilon_lower_bound(4 * r, r, v, delta, 0.05)
    if e > 0:
        assert p_value(4 * r, r, v, e, delta) < 0.05
        assert p_value(4 * r, r, v, e + 1e-4, delta) >= 0.05 - 1e-9
    else:
        assert p_value(4 * r, r, v, 0.0, delta) >= 0.05


def test_one_run_bound_is_sound_for_randomized_response():
    """Randomized response at eps is exactly eps-DP per canary; the audit's eps_lb must
    exceed eps in at most about alpha of the trials (here alpha = 0.1, 300 trials)."""
    rng = np.random.default_rng(0)
    eps, m, alpha, trials = 1.0, 200, 0.1, 300
    p_keep = math.exp(eps) / (1 + math.exp(eps))
    exceed = 0
    for _ in range(trials):
        s = rng.random(m) < 0.5
        guess = np.where(rng.random(m) < p_keep, s, ~s)
        v = int(np.sum(guess == s))
        exceed += epsilon_lower_bound(m, m, v, 0.0, alpha) > eps
    assert exceed / trials <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / trials)


def test_one_run_bound_has_power():
    # 95% correct of 1000 guesses is far beyond what eps = 1 allows (73%)
    assert epsilon_lower_bound(1000, 1000, 950, 1e-5, 0.05) > 2.5
    assert epsilon_lower_bound(1000, 1000, 500, 1e-5, 0.05) == 0.0


def test_one_run_rejects_bad_counts():
    with pytest.raises(InvalidParameterError):
        p_value(10, 5, 6, 1.0, 0.0)
    with pytest.raises(InvalidParameterError):
        epsilon_lower_bound(10, 5, 3, 0.0, 1.5)


def test_guess_grid_is_data_independent_and_valid():
    for m in (2, 10, 1000, 12345):
        grid = guess_grid(m)
        assert all(0 <= k_out <= k_in <= m // 2 and k_in >= 1 for k_in, k_out in grid)


@given(st.floats(-20, 20), st.floats(0.001, 1.0), st.floats(0.3, 5.0))
def test_llr_is_the_mixture_density_ratio(o, q, sigma):
    num = (1 - q) * stats.norm.pdf(o, 0, sigma) + q * stats.norm.pdf(o, 1, sigma)
    den = stats.norm.pdf(o, 0, sigma)
    if den > 1e-250 and num > 1e-250:
        assert float(llr(np.array([o]), q, sigma)[0]) == pytest.approx(math.log(num / den), rel=1e-7, abs=1e-9)


def test_gdp_route_is_conservative_on_an_exact_gaussian_mechanism():
    """Scores of the Gaussian mechanism N(0,1) vs N(mu,1) (as LLRs): mu_lb <= mu in at least
    about 1 - alpha of the trials, and the point estimate is close."""
    rng = np.random.default_rng(1)
    mu, n, alpha, trials = gdp_mu(2.0, 1e-5), 2000, 0.1, 60
    above, hats = 0, []
    for _ in range(trials):
        x0, x1 = rng.standard_normal(n), rng.standard_normal(n) + mu
        r = gdp_route(mu * x1 - mu**2 / 2, mu * x0 - mu**2 / 2, 1e-5, alpha)
        above += r["mu_lower"] > mu
        hats.append(r["mu_hat"])
        assert r["epsilon_lower"] == pytest.approx(gdp_epsilon(r["mu_lower"], 1e-5)) or r["mu_lower"] == 0
    assert above / trials <= alpha
    assert abs(np.mean(hats) - mu) < 0.03
