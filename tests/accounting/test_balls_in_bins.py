"""Balls-in-bins batching (random allocation): the run value, the dominating pair and its
discretisation (upper bound), the proven lower bound, their closed forms, independent
numerical checks (quadrature, Monte Carlo, an adaptive adversary) and properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpaudit.accounting import DpSgdRun, balls_in_bins, get_accountant, random_allocation
from dpaudit.accounting.events import AllocationSegment, GaussianSegment
from dpaudit.accounting.gaussian import gaussian_epsilon
from dpaudit.accounting.pld import PldAccountant, epsilon_from_segments
from dpaudit.accounting.pld_compose import PrefixComposer, delta_at, epsilon_of
from dpaudit.errors import InvalidParameterError, OutOfValidityError

PLD = PldAccountant()


def _bib(**kw):
    return DpSgdRun.create(batching="balls_in_bins", **kw)


def _eps(run, delta=1e-5):
    return PLD.epsilon(run, delta, extras=False).epsilon


# ---------------------------------------------------------------------------- the run value
def test_spellings_relation_steps_and_round_trip():
    for spelling in ("balls-in-bins", "balls_in_bins"):
        run = DpSgdRun.create(dataset_size=60000, batch_size=256, noise_multiplier=1.1, epochs=60,
                              batching=spelling)
        assert run.batching == "balls_in_bins" and run.relation == "add_remove"
        assert run.steps_per_epoch == 235 and run.total_steps == 60 * 235
        assert DpSgdRun.from_dict(run.to_dict()) == run
        assert run.with_batching("poisson").with_batching("balls-in-bins") == run
    with pytest.raises(InvalidParameterError, match="batching must be one of"):
        DpSgdRun.create(dataset_size=10, batch_size=2, noise_multiplier=1.0, epochs=1, batching="balls")


def test_allocation_segments_cover_the_run_and_partial_epochs():
    run = _bib(dataset_size=60000, batch_size=256, noise_multiplier=[2.0, 1.0], steps=235 + 100)
    segs = run.allocation_checkpoint_segments()
    assert segs == ((AllocationSegment(235, 235, 2.0, 1),), (AllocationSegment(235, 100, 1.0, 1),))
    assert run.segments() == (GaussianSegment(1.0, 2.0, 1), GaussianSegment(1.0, 1.0, 1))
    with pytest.raises(InvalidParameterError):
        _bib(dataset_size=100, batch_size=10, noise_multiplier=1.0, epochs=1,
             relation="replace_one").allocation_checkpoint_segments()


def test_to_dp_event_says_dp_accounting_has_no_such_event():
    import dp_accounting

    run = _bib(dataset_size=1000, batch_size=100, noise_multiplier=1.0, epochs=3)
    with pytest.raises(OutOfValidityError, match="no random-allocation"):
        run.to_dp_event()
    acc = dp_accounting.rdp.RdpAccountant()
    acc.compose(run.to_dp_event(allow_no_amplification=True))
    ours = get_accountant("rdp").epsilon(run, 1e-5).epsilon  # the no-amplification view
    assert acc.get_epsilon(1e-5) == pytest.approx(ours, rel=1e-6)


# ---------------------------------------------------------------------------- closed forms
def test_one_step_is_the_poisson_subsampled_gaussian_with_q_one_over_t():
    """A run of one step: the example is in it with probability 1/t, exactly Poisson q = 1/t
    for one step; cross-checked against dp-accounting's PLD."""
    import dp_accounting

    bib = _bib(dataset_size=1000, batch_size=100, noise_multiplier=0.9, steps=1)
    poi = DpSgdRun.create(sample_rate=0.1, noise_multiplier=0.9, steps=1)
    assert _eps(bib) == pytest.approx(_eps(poi), rel=1e-12)
    ev = dp_accounting.PoissonSampledDpEvent(0.1, dp_accounting.GaussianDpEvent(0.9))
    ref = dp_accounting.pld.PLDAccountant(value_discretization_interval=1e-4)
    ref.compose(ev)
    assert _eps(bib) == pytest.approx(ref.get_epsilon(1e-5), rel=5e-3)


def test_full_batch_is_the_gaussian_mechanism_per_epoch():
    run = _bib(dataset_size=100, batch_size=100, noise_multiplier=2.0, epochs=7)
    assert run.steps_per_epoch == 1
    exact = gaussian_epsilon(math.sqrt(7) / 2.0, 1e-5)
    got = _eps(run)
    assert exact <= got <= exact * 1.005


def _quad_delta(t, sigma, eps, direction, n=40001):
    """Exact delta of one epoch of t <= 2 steps (independent of the library's grids): the
    second coordinate integrated in closed form (the log-normal call/put prices
    E[(X - b)_+] = Phi((d^2/2 - ln b)/d) - b Phi((-d^2/2 - ln b)/d), E[(c - X)_+] = c - 1 +
    E[(X - c)_+]), the first by the trapezoidal rule on a smooth integrand."""
    from scipy.special import ndtr

    d = 1.0 / sigma
    a = math.exp(eps)

    def call(b):
        b = np.asarray(b, dtype=float)
        out = 1.0 - b  # b <= 0: E[X - b]
        pos = b > 0
        lb = np.log(b[pos])
        out[pos] = ndtr((0.5 * d * d - lb) / d) - b[pos] * ndtr((-0.5 * d * d - lb) / d)
        return out

    if t == 1:
        b = np.array([a]) if direction == "remove" else np.array([1.0 / a])
        return float(call(b)[0] if direction == "remove" else a * (b[0] - 1.0 + call(b)[0]))
    z = np.linspace(-14, 14, n)
    w = np.exp(-z * z / 2) / math.sqrt(2 * math.pi) * (z[1] - z[0])
    x1 = np.exp(d * z - d * d / 2)
    if direction == "remove":  # E[(x1/2 + X/2 - a)_+] = E[(X - (2a - x1))_+] / 2
        f = 0.5 * call(2 * a - x1)
    else:  # E[(1 - a (x1 + X)/2)_+] = (a/2) E[(c - X)_+], c = 2/a - x1
        c = 2.0 / a - x1
        f = np.where(c > 0, 0.5 * a * (c - 1.0 + call(c)), 0.0)
    return float(np.sum(f * w))


def _one_epoch_delta(t, s, sigma, eps, direction, h=5e-4):
    pmf = random_allocation.allocation_pmf(AllocationSegment(t, s, sigma, 1), h, direction, -25.0)
    comp = next(iter(PrefixComposer([[(pmf, 1)]], h, math.log(1e-13))))
    return delta_at(comp, eps)


@pytest.mark.parametrize("sigma", [0.7, 1.0, 2.0])
@pytest.mark.parametrize("eps", [0.25, 1.0, 2.0])
def test_two_batches_dominate_the_quadrature_and_stay_close(sigma, eps):
    for direction in ("remove", "add"):
        exact = _quad_delta(2, sigma, eps, direction)
        up = _one_epoch_delta(2, 2, sigma, eps, direction)
        assert up >= exact * (1 - 1e-9)
        if exact > 1e-6:
            assert up <= exact * 1.1


def _mc_delta(t, s, sigma, epochs, eps, n, rng, adaptive=False):
    """Monte Carlo of delta(eps) = E_Q[(L - e^eps)_+] (remove) and E_Q[(1 - e^eps L)_+] (add)
    for the product of ``epochs`` epochs; returns ((mean, standard error) per direction).
    ``adaptive``: the differing example's gradient norm at step j is a function of the
    earlier outputs (c_j = |tanh(z_{j-1})|), which Claim 1 says can only lower delta."""
    d = 1.0 / sigma
    log_l = np.zeros(n)
    for _ in range(epochs):
        z = rng.standard_normal((n, s))
        if adaptive:
            c = np.ones((n, s))
            c[:, 1:] = np.abs(np.tanh(z[:, :-1]))
        else:
            c = np.ones((n, s))
        x = np.exp(d * c * z - 0.5 * (d * c) ** 2)
        log_l += np.log((x.sum(axis=1) + (t - s)) / t)
    big = np.exp(log_l)
    a = math.exp(eps)
    out = []
    for f in (np.maximum(big - a, 0.0), np.maximum(1.0 - a * big, 0.0)):
        out.append((float(f.mean()), float(f.std() / math.sqrt(n))))
    return out


@pytest.mark.parametrize("t,s,sigma,epochs", [(3, 3, 1.0, 1), (4, 4, 0.8, 1), (3, 2, 1.0, 1), (4, 4, 1.2, 2)])
def test_upper_and_lower_bracket_monte_carlo(t, s, sigma, epochs):
    """The true delta of the mixture pair, by Monte Carlo (independent code), lies between the
    lower and the upper bound (5 standard errors of slack) -- several epochs included."""
    rng = np.random.default_rng(1)
    run = _bib(dataset_size=t * 10, batch_size=10, noise_multiplier=sigma, steps=(epochs - 1) * t + s)
    for eps in (0.3, 1.0, 2.0):
        (m_rem, se_rem), (m_add, se_add) = _mc_delta(t, s, sigma, epochs, eps, 400_000, rng)
        up = PLD.delta(run, eps)
        assert up >= max(m_rem, m_add) - 5 * max(se_rem, se_add) - 1e-9
        low = balls_in_bins.delta_lower(run, eps)
        assert low <= max(m_rem, m_add) + 5 * max(se_rem, se_add) + 1e-9


def test_adaptive_gradients_never_exceed_the_pair():
    """Claim 1 (iii): an adversary whose gradient norm depends on earlier outputs gets a
    smaller delta than the fixed-norm pair (Monte Carlo, common random numbers)."""
    for eps in (0.5, 1.5):
        fixed = _mc_delta(3, 3, 0.8, 1, eps, 300_000, np.random.default_rng(5))
        adapt = _mc_delta(3, 3, 0.8, 1, eps, 300_000, np.random.default_rng(5), adaptive=True)
        for (mf, sf), (ma, sa) in zip(fixed, adapt):
            assert ma <= mf + 3 * (sf + sa)


# ---------------------------------------------------------------------------- the papers' regime
def test_headline_config_is_poisson_level_and_far_below_shuffle():
    from dpaudit.accounting import shuffle

    run = _bib(dataset_size=60000, batch_size=256, noise_multiplier=1.1, epochs=60)
    up = _eps(run)
    poisson = _eps(run.with_batching("poisson"))
    low = balls_in_bins.epsilon_lower(run, 1e-5)
    assert low <= up <= 1.05 * poisson
    assert low >= 0.97 * up  # the interval is tight
    assert up < 0.5 * shuffle.epsilon_lower(run.with_batching("shuffle"), 1e-5)


def test_other_accountants_use_the_no_amplification_view_and_say_so():
    run = _bib(dataset_size=6000, batch_size=100, noise_multiplier=1.0, epochs=5)
    shuffled = run.with_batching("shuffle")
    for name in ("rdp", "ma", "cdp"):
        rep = get_accountant(name).epsilon(run, 1e-5)
        assert rep.epsilon == pytest.approx(get_accountant(name).epsilon(shuffled, 1e-5).epsilon)
        assert any("no random-allocation analysis" in n for n in rep.notes)
        assert rep.extra["epsilon_lower"] <= PLD.epsilon(run, 1e-5).epsilon <= rep.epsilon


def test_relations():
    kw = dict(dataset_size=6000, batch_size=100, noise_multiplier=1.0, epochs=5)
    base = _eps(_bib(**kw))
    assert _eps(_bib(relation="replace_zero", **kw)) == pytest.approx(base, rel=1e-12)
    one = PLD.epsilon(_bib(relation="replace_one", **kw), 1e-5)
    assert one.epsilon == pytest.approx(gaussian_epsilon(math.sqrt(5) * 2.0, 1e-5), rel=1e-9)
    assert any("replace_one" in n for n in one.notes)


def test_tiny_sigma_falls_back_to_the_no_amplification_bound():
    run = _bib(dataset_size=6000, batch_size=100, noise_multiplier=0.1, epochs=3)
    rep = PLD.epsilon(run, 1e-5, extras=False)
    assert rep.epsilon == pytest.approx(gaussian_epsilon(math.sqrt(3) * 10.0, 1e-5), rel=1e-9)
    assert any("not computed" in n for n in rep.notes)


def test_curve_ends_at_the_figure_and_increases():
    run = _bib(dataset_size=6000, batch_size=100, noise_multiplier=1.0, epochs=6)
    curve = PLD.epsilon_curve(run, 1e-5)
    assert all(b >= a for a, b in zip(curve, curve[1:]))
    assert curve[-1] == pytest.approx(_eps(run), rel=1e-9)


def test_mixed_segments_compose():
    """Allocation epochs and extra Poisson releases compose (order-free)."""
    a = AllocationSegment(50, 50, 1.0, 3)
    g = GaussianSegment(0.01, 2.0, 100)
    e1, _ = epsilon_from_segments([a, g], 1e-5)
    e2, _ = epsilon_from_segments([g, a], 1e-5)
    ea, _ = epsilon_from_segments([a], 1e-5)
    assert e1 == pytest.approx(e2, rel=1e-9) and e1 > ea


# ---------------------------------------------------------------------------- properties
@settings(max_examples=12, deadline=None)
@given(
    t=st.integers(8, 400),
    sigma=st.floats(0.6, 3.0),
    epochs=st.integers(1, 30),
)
def test_properties_upper_lower_and_monotone(t, sigma, epochs):
    kw = dict(dataset_size=t * 50, batch_size=50, epochs=epochs)
    run = _bib(noise_multiplier=sigma, **kw)
    up = _eps(run)
    low = balls_in_bins.epsilon_lower(run, 1e-5)
    one_epoch_low = balls_in_bins.epsilon_lower(run.truncate(1), 1e-5)
    assert low <= up * (1 + 1e-9)
    assert one_epoch_low <= up * (1 + 1e-9)  # never below the single-epoch bound
    tol = 1 + 2.5e-3  # each figure is within rel_tol of its converged value
    assert _eps(_bib(noise_multiplier=sigma * 1.1, **kw)) <= up * tol  # more noise
    assert _eps(_bib(noise_multiplier=sigma, dataset_size=t * 50, batch_size=60,
                     epochs=epochs)) >= up / tol  # larger q = B/N: fewer batches
    assert _eps(_bib(noise_multiplier=sigma, dataset_size=t * 50, batch_size=50,
                     epochs=epochs + 1)) >= up / tol  # more epochs


@settings(max_examples=8, deadline=None)
@given(steps=st.integers(1, 600), sigma=st.floats(0.7, 2.0))
def test_monotone_in_steps_across_partial_epochs(steps, sigma):
    kw = dict(dataset_size=10000, batch_size=100, noise_multiplier=sigma)
    a = _eps(_bib(steps=steps, **kw))
    b = _eps(_bib(steps=steps + 37, **kw))
    assert b >= a / (1 + 2.5e-3)


def test_lower_bound_of_small_epsilons_is_not_rounded_away():
    run = _bib(sample_rate=1e-4, noise_multiplier=50.0, steps=100_000)
    low = balls_in_bins.epsilon_lower(run, 1e-5)
    up = _eps(run)
    assert 0.9 * up <= low <= up


def test_per_epoch_atoms_are_a_valid_dominating_law():
    """E_Q[L] <= 1 + extra and masses ~ 1 (the spreads keep means; wrapped copies only add)."""
    for t, s, sigma in [(235, 235, 1.1), (100, 37, 4.0), (1000, 1000, 0.6)]:
        a = random_allocation.epoch_atoms(t, s, sigma, -22.5)
        assert a.masses.sum() == pytest.approx(1.0, abs=1e-8)
        assert float(np.sum(a.ratios * a.masses)) == pytest.approx(1.0, abs=1e-8)
        assert a.inf_remove < 1e-8 and a.inf_add < 1e-8


def test_epsilon_of_a_composed_epoch_agrees_with_delta():
    pmf = random_allocation.allocation_pmf(AllocationSegment(100, 100, 1.0, 1), 1e-3, "remove", -25.0)
    comp = next(iter(PrefixComposer([[(pmf, 5)]], 1e-3, math.log(1e-9))))
    eps = epsilon_of(comp, 1e-6)
    assert delta_at(comp, eps) <= 1e-6 * (1 + 1e-9)
