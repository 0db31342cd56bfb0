"""PLD accountant: soundness against exact values, tightness against dp_accounting,
monotonicity, composition, numerics at the edges, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpaudit.accounting import DpSgdRun, GaussianSegment, get_accountant, pld, pld_compose, pld_pmf
from dpaudit.errors import InvalidParameterError

ACC = pld.ACCOUNTANT


def _run(q: float, sigma: float, steps: int) -> DpSgdRun:
    return DpSgdRun.create(sample_rate=q, noise_multiplier=sigma, steps=steps)


def _eps(q: float, sigma: float, steps: int, delta: float = 1e-5) -> float:
    return ACC.epsilon(_run(q, sigma, steps), delta).epsilon


# ------------------------------------------------------------------ exact Gaussian (q = 1)
def _gauss_delta_ref(mu: float, eps: float) -> float:
    from scipy.special import ndtr

    return float(ndtr(-eps / mu + mu / 2) - math.exp(eps) * ndtr(-eps / mu - mu / 2))


@given(mu=st.floats(0.05, 20.0), eps=st.floats(0.0, 30.0))
def test_gaussian_delta_matches_scipy_formula(mu, eps):
    ref = _gauss_delta_ref(mu, eps)
    got = pld.gaussian_delta(mu, eps)
    assert got == pytest.approx(ref, rel=1e-7, abs=1e-15)


@given(mu=st.floats(0.05, 50.0), delta=st.floats(1e-12, 0.5))
def test_gaussian_epsilon_is_tight_upper_root(mu, delta):
    eps = pld.gaussian_epsilon(mu, delta)
    assert pld.gaussian_delta(mu, eps) <= delta * (1 + 1e-9)
    if eps > 0:
        assert pld.gaussian_delta(mu, eps * (1 - 1e-6) - 1e-12) >= delta * (1 - 1e-6)


def test_gaussian_huge_mu_no_overflow():
    eps = pld.gaussian_epsilon(1000.0, 1e-5)  # sigma = 1e-3
    assert math.isfinite(eps) and eps > 5e5
    assert pld.gaussian_delta(1000.0, eps) <= 1e-5


def test_q1_matches_dp_accounting_gaussian():
    dpa = pytest.importorskip("dp_accounting")
    from dp_accounting.pld import pld_privacy_accountant as ppa

    for sigma, n in [(1.0, 1), (2.0, 10), (5.0, 100), (0.7, 3)]:
        acc = ppa.PLDAccountant(value_discretization_interval=1e-3)
        acc.compose(dpa.SelfComposedDpEvent(dpa.GaussianDpEvent(sigma), n))
        ref = acc.get_epsilon(1e-5)
        got = ACC.epsilon(DpSgdRun.create(sample_rate=1.0, noise_multiplier=sigma, steps=n), 1e-5).epsilon
        # ours is exact; dp_accounting's is a pessimistic discretisation, slightly above
        assert got <= ref * (1 + 1e-9)
        assert got == pytest.approx(ref, rel=5e-3)


@pytest.mark.parametrize("sigma,k", [(5.0, 100), (2.0, 30), (10.0, 1000)])
def test_fft_path_sound_and_tight_on_exact_gaussian(sigma, k):
    """The discretise + FFT machinery on a case with a closed form: k Gaussians."""
    mu = math.sqrt(k) / sigma
    for h in (2e-3, 5e-4):
        pmf = pld_pmf.gaussian_pmf(1.0 / sigma, h, -40.0)
        comp = pld_compose.compose_prefixes([[(pmf, k)]], h, math.log(1e-11))[0]  # 1e-3 x min delta
        for delta in (1e-3, 1e-5, 1e-8):
            exact = pld.gaussian_epsilon(mu, delta)
            got = pld_compose.epsilon_of(comp, delta)
            assert got >= exact * (1 - 1e-9)  # sound
            assert got <= exact * 1.005 + 1e-6  # within 0.5%
        for eps in (0.0, 0.5, 2.0):
            assert pld_compose.delta_at(comp, eps) >= pld.gaussian_delta(mu, eps) * (1 - 1e-9)


@pytest.mark.parametrize("log_target", [math.log(0.3), math.log(1e-2), math.log(1e-4)])
def test_narrow_fft_window_stays_sound(log_target):
    """A deliberately small window: folded mass and the Chernoff tail term must keep delta
    an upper bound (a wrong sign in the aliasing argument would fail here)."""
    sigma, k = 4.0, 64
    mu = math.sqrt(k) / sigma
    pmf = pld_pmf.gaussian_pmf(1.0 / sigma, 1e-3, -40.0)
    comp = pld_compose.compose_prefixes([[(pmf, k)]], 1e-3, log_target)[0]
    for eps in (0.0, 0.5, 1.0, 2.0, 4.0, 8.0):
        assert pld_compose.delta_at(comp, eps) >= pld.gaussian_delta(mu, eps) * (1 - 1e-9)


def test_cpow_matches_power():
    rng = np.random.default_rng(1)
    x = rng.standard_normal(50) + 1j * rng.standard_normal(50)
    x /= np.abs(x).max()
    for k in (1, 2, 7, 64, 1001):
        assert np.allclose(pld_compose.cpow(x, k), x**k, rtol=1e-10, atol=1e-300)


def test_single_release_pmf_is_a_dominating_discretisation():
    """One subsampled-Gaussian release: the discrete profile is >= the exact hockey stick
    (closed form of the remove/add pairs) and close to it."""
    q, sigma = 0.05, 1.0
    d = 1 / sigma
    from scipy.stats import norm

    def exact_remove(eps):
        x = math.log((math.expm1(eps) + q) / q) / d + d / 2
        return q * norm.sf(x - d) - (math.exp(eps) - 1 + q) * norm.sf(x)

    def exact_add(eps):
        if eps >= -math.log1p(-q):
            return 0.0
        x = math.log((math.expm1(-eps) + q) / q) / d + d / 2
        return (1 - math.exp(eps) * (1 - q)) * norm.cdf(x) - q * math.exp(eps) * norm.cdf(x - d)

    for direction, exact in (("remove", exact_remove), ("add", exact_add)):
        pmf = pld_pmf.subsampled_gaussian_pmf(q, sigma, 1e-3, direction, -40.0)
        assert pmf.probs.sum() + pmf.inf_mass == pytest.approx(1.0, abs=1e-12)
        # a valid pair: E_P[e^{-L}] <= 1
        assert float(np.sum(pmf.probs * np.exp(-pmf.losses))) <= 1 + 1e-12
        comp = pld_compose.ComposedPld(pmf.start, pmf.probs, pmf.inf_mass, pmf.h)
        for eps in (0.0, 0.01, 0.03, 0.1, 0.3, 1.0):
            ref = exact(eps)
            got = pld_compose.delta_at(comp, eps)
            assert got >= ref - 1e-15
            assert got <= ref + 1e-6 + 1e-3 * ref


# ------------------------------------------------------------------ agreement with dp_accounting
def test_agrees_with_dp_accounting_pld_within_half_percent():
    dpa = pytest.importorskip("dp_accounting")
    from dp_accounting.pld import pld_privacy_accountant as ppa

    for q, sigma, n in [(0.01, 4.0, 10000), (0.02, 1.0, 500), (0.1, 2.0, 200)]:
        acc = ppa.PLDAccountant()
        acc.compose(dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(q, dpa.GaussianDpEvent(sigma)), n))
        ref = acc.get_epsilon(1e-5)
        got = _eps(q, sigma, n)
        assert abs(got - ref) / ref <= 5e-3, (q, sigma, n, got, ref)
        assert ACC.delta(_run(q, sigma, n), ref) == pytest.approx(1e-5, rel=0.1)


def test_heterogeneous_run_agrees_with_dp_accounting():
    """Per-epoch noise plus an extra release: composition of different segments."""
    pytest.importorskip("dp_accounting")
    from dp_accounting.pld import pld_privacy_accountant as ppa

    run = DpSgdRun.create(dataset_size=3000, batch_size=60, noise_multiplier=[1.0, 1.5, 0.8], epochs=3)
    run = DpSgdRun.from_dict({**run.to_dict(), "extra_segments": [[0.05, 3.0, 40]]})
    acc = ppa.PLDAccountant(value_discretization_interval=5e-4)
    acc.compose(run.to_dp_event())
    ref = acc.get_epsilon(1e-6)
    got = ACC.epsilon(run, 1e-6).epsilon
    assert abs(got - ref) / ref <= 5e-3, (got, ref)
    curve = ACC.epsilon_curve(run, 1e-6)
    assert curve[-1] == pytest.approx(got, rel=2e-3)


def test_pld_below_rdp():
    try:
        from dpaudit.accounting import rdp

        def rdp_eps(run, delta):
            return rdp.ACCOUNTANT.epsilon(run, delta).epsilon
    except Exception:  # pragma: no cover - the rdp module is optional here
        pytest.importorskip("dp_accounting")
        from dp_accounting.rdp import rdp_privacy_accountant as rpa

        def rdp_eps(run, delta):
            acc = rpa.RdpAccountant()
            acc.compose(run.to_dp_event())
            return acc.get_epsilon(delta)

    for q, sigma, n in [(256 / 60000, 1.1, 14062), (0.01, 4.0, 10000), (0.05, 0.7, 300), (0.5, 3.0, 20)]:
        run = _run(q, sigma, n)
        assert ACC.epsilon(run, 1e-5).epsilon < rdp_eps(run, 1e-5)


@pytest.mark.slow
def test_sound_and_tight_against_fine_dp_accounting():
    """Fine references: dp_accounting pessimistic (connect-the-dots) at 2e-5 and an
    optimistic (rounded-down privacy buckets) estimate at 1e-5, which is a lower bound."""
    from dp_accounting.pld import privacy_loss_distribution as pldm

    for q, sigma, n in [(256 / 60000, 1.1, 14062), (0.01, 4.0, 10000), (256 / 60000, 0.8, 3516)]:
        pess = pldm.from_gaussian_mechanism(
            sigma, sampling_prob=q, value_discretization_interval=2e-5
        ).self_compose(n).get_epsilon_for_delta(1e-5)
        opt = pldm.from_gaussian_mechanism(
            sigma, sampling_prob=q, value_discretization_interval=1e-5,
            pessimistic_estimate=False, use_connect_dots=False,
        ).self_compose(n).get_epsilon_for_delta(1e-5)
        got = _eps(q, sigma, n)
        assert got >= opt
        assert got <= pess * 1.005


# ------------------------------------------------------------------ structure
def test_heterogeneous_segments_compose():
    """Composition is order-free and equals merging; splitting a segment changes nothing."""
    a = GaussianSegment(0.01, 1.0, 300)
    b = GaussianSegment(0.02, 2.0, 200)
    e1, _ = pld.epsilon_from_segments([a, b], 1e-5, interval=1e-3)
    e2, _ = pld.epsilon_from_segments([b, a], 1e-5, interval=1e-3)
    e3, _ = pld.epsilon_from_segments(
        [GaussianSegment(0.01, 1.0, 100), b, GaussianSegment(0.01, 1.0, 200)], 1e-5, interval=1e-3
    )
    assert e1 == pytest.approx(e2, rel=1e-9)
    assert e1 == pytest.approx(e3, rel=1e-9)
    ea, _ = pld.epsilon_from_segments([a], 1e-5, interval=1e-3)
    eb, _ = pld.epsilon_from_segments([b], 1e-5, interval=1e-3)
    assert max(ea, eb) < e1 < ea + eb


def test_mixed_q1_and_subsampled_segments():
    g = GaussianSegment(1.0, 20.0, 4)
    s = GaussianSegment(0.01, 1.0, 500)
    e_mix, _ = pld.epsilon_from_segments([g, s], 1e-5)
    e_s, _ = pld.epsilon_from_segments([s], 1e-5)
    e_g, _ = pld.epsilon_from_segments([g], 1e-5)
    assert max(e_s, e_g) < e_mix


def test_epsilon_curve_incremental_matches_truncations():
    run = DpSgdRun.create(dataset_size=6000, batch_size=60, noise_multiplier=[1.0, 1.5, 0.9, 2.0], epochs=4)
    acc = pld.PldAccountant(value_discretization_interval=1e-3)
    curve = acc.epsilon_curve(run, 1e-5)
    assert len(curve) == 4
    assert all(x < y for x, y in zip(curve, curve[1:]))
    for e in (1, 3, 4):
        ref = acc.epsilon(run.truncate(e), 1e-5).epsilon
        assert curve[e - 1] == pytest.approx(ref, rel=2e-3)


def test_epsilon_curve_shuffle_is_exact_gaussian():
    run = DpSgdRun.create(dataset_size=6000, batch_size=60, noise_multiplier=2.0, epochs=5, batching="shuffle")
    curve = ACC.epsilon_curve(run, 1e-5)
    for e, val in enumerate(curve, start=1):
        assert val == pytest.approx(pld.gaussian_epsilon(math.sqrt(e) / 2.0, 1e-5), rel=1e-12)


def test_shuffle_report_has_lower_and_poisson():
    run = DpSgdRun.create(dataset_size=60000, batch_size=256, noise_multiplier=1.0, epochs=2, batching="shuffle")
    rep = ACC.epsilon(run, 1e-5)
    assert rep.batching == "shuffle" and rep.sound
    assert 0 < rep.extra["epsilon_lower"] <= rep.epsilon
    assert rep.extra["epsilon_if_poisson"] < rep.extra["epsilon_lower"]
    assert rep.epsilon == pytest.approx(pld.gaussian_epsilon(math.sqrt(2.0), 1e-5), rel=1e-12)


def test_delta_and_epsilon_are_inverse():
    run = _run(0.02, 1.2, 400)
    eps = ACC.epsilon(run, 1e-6).epsilon
    d = ACC.delta(run, eps)
    assert d == pytest.approx(1e-6, rel=0.05)
    assert ACC.delta(run, eps * 1.05) < 1e-6 < ACC.delta(run, eps * 0.95)


# ------------------------------------------------------------------ monotonicity (hypothesis)
small_q = st.floats(1e-3, 0.2)
sig = st.floats(0.6, 5.0)
steps = st.integers(1, 800)


@settings(max_examples=15)
@given(q=small_q, s=sig, n=steps, f=st.floats(1.05, 2.0))
def test_monotone_in_sigma(q, s, n, f):
    assert _eps(q, s * f, n) <= _eps(q, s, n) * (1 + 1e-3) + 1e-9


@settings(max_examples=15)
@given(q=small_q, s=sig, n=steps, f=st.floats(1.05, 3.0))
def test_monotone_in_q(q, s, n, f):
    assert _eps(q, s, n) <= _eps(min(1.0, q * f), s, n) * (1 + 1e-3) + 1e-9


@settings(max_examples=15)
@given(q=small_q, s=sig, n=steps, extra=st.integers(1, 400))
def test_monotone_in_steps(q, s, n, extra):
    assert _eps(q, s, n) <= _eps(q, s, n + extra) * (1 + 1e-3) + 1e-9


@settings(max_examples=15)
@given(q=small_q, s=sig, n=steps, d=st.floats(1e-9, 1e-2), f=st.floats(1.5, 50.0))
def test_monotone_in_delta(q, s, n, d, f):
    run = _run(q, s, n)
    assert ACC.epsilon(run, min(0.5, d * f)).epsilon <= ACC.epsilon(run, d).epsilon * (1 + 1e-3) + 1e-9


@settings(max_examples=15)
@given(q=small_q, s=sig, n=steps)
def test_pld_below_no_amplification_and_above_one_step(q, s, n):
    e = _eps(q, s, n)
    assert e <= pld.gaussian_epsilon(math.sqrt(n) / s, 1e-5) * (1 + 1e-3) + 1e-9
    assert e >= _eps(q, s, 1) * (1 - 1e-3) - 1e-9


# ------------------------------------------------------------------ edges and bad input
@pytest.mark.parametrize(
    "q,sigma,n",
    [(1e-6, 1.0, 10), (0.999, 1.0, 5), (0.5, 0.2, 3), (1e-3, 50.0, 100000), (0.01, 0.3, 100)],
)
def test_extreme_valid_inputs_finite_and_sound(q, sigma, n):
    e = _eps(q, sigma, n)
    assert math.isfinite(e) and e >= 0
    assert e <= pld.gaussian_epsilon(math.sqrt(n) / sigma, 1e-5) * 1.01 + 1e-9


def test_tiny_sigma_subsampled_is_sound():
    run = _run(0.01, 0.05, 10)
    rep = ACC.epsilon(run, 1e-5)
    no_amp = pld.gaussian_epsilon(math.sqrt(10) / 0.05, 1e-5)
    assert 0 < rep.epsilon <= no_amp * 1.01
    assert math.isfinite(rep.epsilon)


def test_tiny_delta_answered_by_a_sound_fallback_not_refused():
    """Below the FFT path's floor (delta < 1e-11, or the rounding allowance above delta/2)
    the PLD accountant reports the tightest other sound bound (RDP here) and says so."""
    run = _run(0.01, 1.0, 100)
    rdp = get_accountant("rdp").epsilon(run, 1e-13).epsilon
    rep = ACC.epsilon(run, 1e-13)
    assert math.isfinite(rep.epsilon) and rep.epsilon == pytest.approx(rdp, rel=1e-12)
    assert "RDP" in rep.method and any("not applicable" in n for n in rep.notes)
    assert rep.epsilon > ACC.epsilon(run, 1e-10).epsilon  # monotone in delta across the switch
    gauss = DpSgdRun.create(sample_rate=1.0, noise_multiplier=1.0, steps=4)
    assert math.isfinite(ACC.epsilon(gauss, 1e-30).epsilon)


def test_small_delta_many_steps_close_to_dp_accounting():
    """delta = 1e-8 with 4e4 steps: the FFT allowance is above delta/20, the PLD figure
    is still reported when it is the tightest (min with RDP), close to dp-accounting."""
    pytest.importorskip("dp_accounting")
    from dp_accounting.pld import pld_privacy_accountant as ppa

    run = _run(256 / 60000, 1.1, 40000)
    rep = ACC.epsilon(run, 1e-8)
    acc = ppa.PLDAccountant(value_discretization_interval=1e-4)
    acc.compose(run.to_dp_event())
    ref = acc.get_epsilon(1e-8)
    assert ref * (1 - 2e-3) <= rep.epsilon <= ref * 1.01
    assert rep.epsilon < get_accountant("rdp").epsilon(run, 1e-8).epsilon


@pytest.mark.parametrize("delta", [0.0, 1.0, -1e-5, float("nan")])
def test_bad_delta(delta):
    with pytest.raises(InvalidParameterError):
        ACC.epsilon(_run(0.01, 1.0, 10), delta)


def test_bad_interval():
    with pytest.raises(InvalidParameterError):
        pld.PldAccountant(value_discretization_interval=0.0)
    with pytest.raises(InvalidParameterError):
        ACC.delta(_run(0.01, 1.0, 10), -1.0)


def test_registry_and_no_scipy_at_import():
    import subprocess
    import sys

    code = (
        "import sys; from dpaudit.accounting import get_accountant; a = get_accountant('pld');"
        "from dpaudit.accounting import DpSgdRun;"
        "r = DpSgdRun.create(dataset_size=60000, batch_size=256, noise_multiplier=1.1, epochs=60);"
        "a.epsilon(r, 1e-5); print('scipy' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
