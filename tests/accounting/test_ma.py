"""Moments accountant (Abadi et al. 2016): log moments vs RDP, golden value, composition."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpaudit.accounting import DpSgdRun, GaussianSegment
from dpaudit.accounting import ma as ma_mod
from dpaudit.accounting import rdp as rdp_mod
from dpaudit.errors import InvalidParameterError

MA = ma_mod.ACCOUNTANT


@settings(max_examples=25)
@given(q=st.floats(1e-6, 1.0), sigma=st.floats(0.3, 100.0))
def test_log_moment_equals_lambda_times_rdp(q, sigma):
    # Abadi et al.'s alpha(lambda) is log A_{lambda+1} = lambda * RDP(lambda + 1)
    # (Mironov, Talwar, Zhang 2019): independent numerical integration vs binomial series.
    lam = np.asarray(ma_mod.LAMBDAS, dtype=float)
    alpha = ma_mod.log_moments(q, sigma)
    ref = lam * rdp_mod.compute_rdp(q, sigma, [float(v) + 1.0 for v in ma_mod.LAMBDAS])
    assert np.all(np.abs(alpha - ref) <= np.maximum(1e-6 * np.abs(ref), 1e-13))


@pytest.mark.parametrize("q,sigma", [(0.01, 0.02), (0.3, 0.05), (0.999, 3.0)])
def test_log_moment_narrow_and_extreme_noise(q, sigma):
    lam = np.asarray(ma_mod.LAMBDAS, dtype=float)
    ref = lam * rdp_mod.compute_rdp(q, sigma, [float(v) + 1.0 for v in ma_mod.LAMBDAS])
    assert np.allclose(ma_mod.log_moments(q, sigma), ref, rtol=1e-6, atol=0)


def test_abadi_et_al_example():
    # Abadi et al. 2016, Sec. 3.1 / 5: q = 0.01, sigma = 4, 10,000 steps, delta = 1e-5
    # -> epsilon ~ 1.26 with the moments accountant.
    run = DpSgdRun.create(sample_rate=0.01, noise_multiplier=4.0, steps=10000)
    rep = MA.epsilon(run, 1e-5)
    assert rep.epsilon == pytest.approx(1.26, abs=0.005)
    assert rep.parameter in ma_mod.LAMBDAS


def test_q1_matches_gaussian_closed_form():
    lam = np.asarray(ma_mod.LAMBDAS, dtype=float)
    assert np.allclose(ma_mod.log_moments(1.0, 2.0), lam * (lam + 1) / 8.0, rtol=1e-15)
    # The numerical integral approaches the closed form as q -> 1.
    assert np.allclose(ma_mod.log_moments(1.0 - 1e-12, 2.0), lam * (lam + 1) / 8.0, rtol=1e-9)


def test_composition_adds_log_moments():
    a = GaussianSegment(0.02, 1.5, 100)
    b = GaussianSegment(0.02, 3.0, 50)
    both = ma_mod._compose([a, b], ma_mod.LAMBDAS)
    sep = 100 * ma_mod.log_moments(0.02, 1.5) + 50 * ma_mod.log_moments(0.02, 3.0)
    assert np.allclose(both, sep, rtol=1e-14)


def test_rdp_never_looser_than_moments_accountant():
    # The MA tail bound is the classic RDP conversion at integer orders 2..33, all in the
    # RDP grid, and Balle et al.'s conversion is never looser than the classic one.
    for kw in [dict(sample_rate=0.01, noise_multiplier=4.0, steps=10000),
               dict(dataset_size=60000, batch_size=256, noise_multiplier=[1.5, 1.1, 0.9], epochs=3)]:
        run = DpSgdRun.create(**kw)
        assert rdp_mod.ACCOUNTANT.epsilon(run, 1e-5).epsilon <= MA.epsilon(run, 1e-5).epsilon


def test_delta_inverts_and_curve_is_consistent():
    run = DpSgdRun.create(sample_rate=0.02, noise_multiplier=[2.0, 1.2], steps=80)
    rep = MA.epsilon(run, 1e-6)
    assert MA.delta(run, rep.epsilon) == pytest.approx(1e-6, rel=1e-6)
    curve = MA.epsilon_curve(run, 1e-6)
    assert curve[-1] == pytest.approx(rep.epsilon, rel=1e-12)
    assert curve[0] == pytest.approx(MA.epsilon(run.truncate(1), 1e-6).epsilon, rel=1e-12)


def test_no_finite_moment_gives_inf_with_note():
    run = DpSgdRun.create(sample_rate=0.5, noise_multiplier=1e-200, steps=3)
    rep = MA.epsilon(run, 1e-5)
    assert rep.epsilon == math.inf and rep.notes


def test_shuffle_extra_keys():
    run = DpSgdRun.create(dataset_size=1000, batch_size=100, noise_multiplier=2.0, epochs=2, batching="shuffle")
    assert "epsilon_if_poisson" in MA.epsilon(run, 1e-5).extra


def test_bad_input_raises():
    run = DpSgdRun.create(sample_rate=0.1, noise_multiplier=1.0, steps=5)
    with pytest.raises(InvalidParameterError):
        MA.epsilon(run, 0.0)
    with pytest.raises(InvalidParameterError):
        MA.delta(run, math.nan)
    with pytest.raises(InvalidParameterError):
        ma_mod.log_moments(1.5, 1.0)
