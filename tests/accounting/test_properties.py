"""Properties every sound accountant must have (hypothesis): monotonicity, composition,
finiteness at valid extremes, and soundness against the tight PLD accountant."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpaudit.accounting import DpSgdRun, GaussianSegment, get_accountant
from dpaudit.accounting import rdp as rdp_mod

NAMES = ("rdp", "ma", "cdp")
REL = 1e-9

q_st = st.floats(1e-4, 0.5)
sigma_st = st.floats(0.5, 20.0)
steps_st = st.integers(1, 5000)


def _eps(name: str, q: float, sigma: float, steps: int, delta: float = 1e-5) -> float:
    run = DpSgdRun.create(sample_rate=q, noise_multiplier=sigma, steps=steps)
    return get_accountant(name).epsilon(run, delta).epsilon


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=12)
@given(q=q_st, sigma=sigma_st, steps=steps_st, f=st.floats(1.05, 3.0))
def test_epsilon_decreases_with_noise(name, q, sigma, steps, f):
    assert _eps(name, q, sigma * f, steps) <= _eps(name, q, sigma, steps) * (1 + REL)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=12)
@given(q=q_st, sigma=sigma_st, steps=steps_st, d=st.floats(1e-10, 1e-3), f=st.floats(1.5, 100.0))
def test_epsilon_decreases_with_delta(name, q, sigma, steps, d, f):
    assert _eps(name, q, sigma, steps, d * f) <= _eps(name, q, sigma, steps, d) * (1 + REL)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=12)
@given(q=q_st, sigma=sigma_st, steps=steps_st, f=st.floats(1.05, 2.0))
def test_epsilon_increases_with_sample_rate(name, q, sigma, steps, f):
    assert _eps(name, q, sigma, steps) <= _eps(name, min(1.0, q * f), sigma, steps) * (1 + REL)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=12)
@given(q=q_st, sigma=sigma_st, steps=steps_st, extra=st.integers(1, 5000))
def test_epsilon_increases_with_steps(name, q, sigma, steps, extra):
    assert _eps(name, q, sigma, steps) <= _eps(name, q, sigma, steps + extra) * (1 + REL)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=12)
@given(q=q_st, sigma=sigma_st, steps=steps_st, eps=st.floats(0.1, 20.0))
def test_delta_decreases_with_epsilon(name, q, sigma, steps, eps):
    run = DpSgdRun.create(sample_rate=q, noise_multiplier=sigma, steps=steps)
    acc = get_accountant(name)
    d1, d2 = acc.delta(run, eps), acc.delta(run, eps * 1.5)
    assert 0.0 <= d2 <= d1 * (1 + REL) <= 1.0 + REL


@settings(max_examples=20)
@given(q=st.floats(1e-6, 1.0), s1=sigma_st, s2=sigma_st, n1=steps_st, n2=steps_st)
def test_rdp_composition_is_additive(q, s1, s2, n1, n2):
    a, b = GaussianSegment(q, s1, n1), GaussianSegment(q, s2, n2)
    both = rdp_mod.rdp_of_segments([a, b])
    assert np.allclose(both, n1 * rdp_mod.compute_rdp(q, s1) + n2 * rdp_mod.compute_rdp(q, s2), rtol=1e-14)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "q,sigma,steps",
    [(1e-6, 0.3, 1), (1e-6, 100.0, 10**6), (1.0, 0.3, 10**6), (1.0, 100.0, 1), (0.5, 0.3, 1000),
     (1e-3, 0.3, 10**6), (0.999, 100.0, 10**6), (256 / 60000, 1.1, 14040)],
)
def test_valid_extremes_give_finite_epsilon(name, q, sigma, steps):
    # Built from one segment: with q ~ 1 every step is an epoch and DpSgdRun.create would
    # spend its time on 10^6 per-epoch entries; the accountants only see segments.
    spe = max(1, round(1 / q))
    run = DpSgdRun(sample_rate=q, noise_multipliers=(sigma,), steps_per_epoch=max(spe, steps),
                   total_steps=steps)
    acc = get_accountant(name)
    rep = acc.epsilon(run, 1e-5)
    assert math.isfinite(rep.epsilon) and rep.epsilon >= 0
    d = acc.delta(run, max(rep.epsilon, 0.1))
    assert not math.isnan(d) and 0.0 <= d <= 1.0


def _pld_accountant():
    try:
        return get_accountant("pld")
    except (ImportError, AttributeError):
        return None


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "kw",
    [
        dict(dataset_size=60000, batch_size=256, noise_multiplier=1.1, epochs=5),
        dict(sample_rate=0.05, noise_multiplier=[2.0, 1.0], steps=40),
        dict(dataset_size=1000, batch_size=100, noise_multiplier=2.0, epochs=3, batching="shuffle"),
    ],
)
def test_sound_against_tight_pld(name, kw):
    pld = _pld_accountant()
    if pld is None:
        pytest.skip("dpaudit.accounting.pld not available yet")
    run = DpSgdRun.create(**kw)
    tight = pld.epsilon(run, 1e-5).epsilon
    assert get_accountant(name).epsilon(run, 1e-5).epsilon >= tight * (1 - 1e-9)
