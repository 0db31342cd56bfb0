"""Shuffled-batching lower bounds: validity (never above a sound upper bound), the closed
forms they rest on, the Poisson gap the papers report, monotonicity, edges."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpaudit.accounting import DpSgdRun, pld, shuffle
from dpaudit.errors import InvalidParameterError


def _shuffled(sigma, epochs, n=60000, b=256, relation=None):
    return DpSgdRun.create(
        dataset_size=n, batch_size=b, noise_multiplier=sigma, epochs=epochs,
        batching="shuffle", relation=relation,
    )


def _upper(run, delta):
    """Sound no-amplification upper bound: one Gaussian per epoch (exact mu-GDP)."""
    eps, _ = pld.epsilon_from_segments(run.shuffle_segments(), delta)
    return eps


def test_max_law_matches_monte_carlo():
    """The closed-form law of the per-epoch maximum used by the construction."""
    rng = np.random.default_rng(0)
    t, shift = 20, 1.7
    y = rng.standard_normal((200000, t))
    y[np.arange(y.shape[0]), rng.integers(0, t, y.shape[0])] += shift
    mx = y.max(axis=1)
    for m in (1.0, 2.0, 3.0, 4.0):
        f = math.exp(float(shuffle._log_cdf_max(np.array([m]), shift, t, 1.0)[0]))
        assert f == pytest.approx(np.mean(mx <= m), abs=4e-3)
    # partial epoch: with prob. 1 - w no coordinate is shifted
    w = 0.3
    hit = rng.random(y.shape[0]) < w
    y2 = rng.standard_normal((200000, t))
    y2[hit, 0] += shift
    f = math.exp(float(shuffle._log_cdf_max(np.array([2.5]), shift, t, w)[0]))
    assert f == pytest.approx(np.mean(y2.max(axis=1) <= 2.5), abs=4e-3)


def test_one_epoch_lower_below_exact_test_bound():
    """Single epoch: delta_lower(eps) is itself >= the delta of the simplest threshold
    test on the max (a direct, closed-form lower bound) and <= the Gaussian upper bound."""
    sigma, t = 1.0, 50
    run = DpSgdRun.create(dataset_size=t * 10, batch_size=10, noise_multiplier=sigma, epochs=1, batching="shuffle")
    a, b = 2 / sigma, 1 / sigma
    for eps in (0.5, 1.0, 2.0):
        dl = shuffle.delta_lower(run, eps)
        # best threshold test S = {max > tau}: P(S) - e^eps Q(S)
        taus = np.linspace(0, 8, 801)
        fp = np.exp(shuffle._log_cdf_max(taus, a, t, 1.0))
        fq = np.exp(shuffle._log_cdf_max(taus, b, t, 1.0))
        direct = float(np.max((1 - fp) - math.exp(eps) * (1 - fq)))
        assert dl >= direct * (1 - 1e-2) - 1e-9  # grid rounding (h = 1e-3) costs < 1%
        assert dl <= pld.gaussian_delta(1 / sigma, eps) + 1e-12


@settings(max_examples=20)
@given(
    sigma=st.floats(0.4, 6.0),
    epochs=st.integers(1, 30),
    batch=st.sampled_from([16, 64, 256, 1000]),
    delta=st.floats(1e-10, 1e-2),
)
def test_lower_never_exceeds_sound_upper(sigma, epochs, batch, delta):
    run = _shuffled(sigma, epochs, n=20000, b=batch)
    lo = shuffle.epsilon_lower(run, delta)
    up = _upper(run, delta)
    assert 0.0 <= lo <= up * (1 + 1e-9) + 1e-9


@settings(max_examples=15)
@given(sigma=st.floats(0.5, 4.0), epochs=st.integers(1, 20), eps=st.floats(0.0, 20.0))
def test_delta_lower_below_gaussian_delta(sigma, epochs, eps):
    run = _shuffled(sigma, epochs, n=20000, b=200)
    mu = math.sqrt(epochs) / sigma
    assert shuffle.delta_lower(run, eps) <= pld.gaussian_delta(mu, eps) + 1e-12


@pytest.mark.parametrize("sigma,epochs", [(0.8, 1), (0.8, 15), (1.0, 10), (1.1, 60)])
def test_shuffle_lower_exceeds_poisson_in_the_papers_regime(sigma, epochs):
    """q = 256/60000, sigma 0.8-1.1: the Poisson figure is far below what shuffling
    provably leaks (Chua et al. ICML 2024 Fig. 1; NeurIPS 2024 Sec. 3)."""
    run = _shuffled(sigma, epochs)
    lo = shuffle.epsilon_lower(run, 1e-5)
    poisson = pld.ACCOUNTANT.epsilon(run.with_batching("poisson"), 1e-5).epsilon
    assert lo > 2.0 * poisson


def test_headline_example_poisson_2_4_vs_shuffle_10():
    run = _shuffled(1.1, 60)
    poisson = pld.ACCOUNTANT.epsilon(run.with_batching("poisson"), 1e-5).epsilon
    lo = shuffle.epsilon_lower(run, 1e-5)
    assert poisson == pytest.approx(2.38, abs=0.03)
    assert lo >= 10.0


@settings(max_examples=10)
@given(sigma=st.floats(0.6, 3.0), epochs=st.integers(1, 10), f=st.floats(1.2, 2.0))
def test_lower_monotone_in_sigma_and_epochs(sigma, epochs, f):
    base = shuffle.epsilon_lower(_shuffled(sigma, epochs, n=10000, b=100), 1e-5)
    assert shuffle.epsilon_lower(_shuffled(sigma * f, epochs, n=10000, b=100), 1e-5) <= base + 1e-2
    assert shuffle.epsilon_lower(_shuffled(sigma, epochs + 1, n=10000, b=100), 1e-5) >= base - 1e-2


def test_delta_lower_and_epsilon_lower_consistent():
    run = _shuffled(1.0, 5)
    eps = shuffle.epsilon_lower(run, 1e-5)
    assert shuffle.delta_lower(run, eps) == pytest.approx(1e-5, rel=1e-3)
    assert shuffle.delta_lower(run, eps + 0.1) < 1e-5 < shuffle.delta_lower(run, max(0.0, eps - 0.1))


def test_partial_epoch_between_neighbours():
    full1 = shuffle.epsilon_lower(_shuffled(1.0, 1), 1e-5)
    half = shuffle.epsilon_lower(_shuffled(1.0, 1.5), 1e-5)
    full2 = shuffle.epsilon_lower(_shuffled(1.0, 2), 1e-5)
    assert full1 <= half <= full2


def test_not_applicable_cases_return_trivial_bound():
    poisson = DpSgdRun.create(dataset_size=1000, batch_size=10, noise_multiplier=1.0, epochs=2)
    assert shuffle.epsilon_lower(poisson, 1e-5) == 0.0
    ar = _shuffled(1.0, 2, relation="add_remove")
    assert shuffle.epsilon_lower(ar, 1e-5) == 0.0
    assert shuffle.delta_lower(ar, 1.0) == 0.0


def test_replace_one_uses_valid_pair_below_its_upper():
    run = _shuffled(1.0, 3, relation="replace_one")
    lo = shuffle.epsilon_lower(run, 1e-5)
    assert 0 < lo <= _upper(run, 1e-5)
    assert lo == pytest.approx(shuffle.epsilon_lower(_shuffled(1.0, 3), 1e-5), rel=1e-9)


def test_extreme_inputs_no_nan():
    for sigma, epochs in [(0.05, 2), (100.0, 3), (0.3, 40)]:
        run = _shuffled(sigma, epochs, n=5000, b=50)
        lo = shuffle.epsilon_lower(run, 1e-5)
        assert math.isfinite(lo) and 0 <= lo <= _upper(run, 1e-5) + 1e-9


@pytest.mark.parametrize("delta", [0.0, 1.0, float("nan")])
def test_bad_input(delta):
    with pytest.raises(InvalidParameterError):
        shuffle.epsilon_lower(_shuffled(1.0, 1), delta)
    with pytest.raises(InvalidParameterError):
        shuffle.delta_lower(_shuffled(1.0, 1), -1.0)
