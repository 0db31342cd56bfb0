"""solve_plan: spends the target within 1e-3 and never above it, for every schedule x
accountant x batching; pinned against dp-accounting's calibration."""

from __future__ import annotations

import math

import pytest
from alloc_testlib import available_accountants, runs
from hypothesis import given, settings
from hypothesis import strategies as st

from dpaudit.accounting import get_accountant
from dpaudit.allocation import (
    SCHEDULES,
    ValidationDecay,
    compare_schedules,
    solve_plan,
)
from dpaudit.allocation.solver import SCALE_MAX
from dpaudit.errors import InvalidParameterError

ACCS = available_accountants()
MNIST = dict(dataset_size=60000, batch_size=256, epochs=30)

def _check_window(plan, target, acc):
    assert target - 1e-3 <= plan.epsilon <= target
    # the plan's epsilon is the accountant's own figure for exactly the planned run
    assert acc.epsilon(plan.run, plan.delta).epsilon == plan.epsilon
    assert plan.noise_multipliers == plan.schedule.sigmas(plan.scale, plan.epochs)


@given(runs)
def test_window_fast_reference_rdp(fast_rdp, kw):
    plan = solve_plan(accountant=fast_rdp, curve=False, **kw)
    _check_window(plan, kw["target_epsilon"], fast_rdp)


def _run_for(kw, sigma):
    from dpaudit.accounting import DpSgdRun

    return DpSgdRun.create(noise_multiplier=sigma, sample_rate=kw["sample_rate"],
                           epochs=kw["epochs"], batching=kw["batching"])


@pytest.mark.parametrize("name", ACCS)
@settings(max_examples=5)
@given(kw=runs)
def test_window_every_registry_accountant(name, kw):
    if name == "pld":  # keep the tight accountant's examples small
        kw = {**kw, "epochs": min(kw["epochs"], 3)}
    acc = get_accountant(name)
    try:
        plan = solve_plan(accountant=name, curve=False, **kw)
    except InvalidParameterError as exc:
        # Only a genuinely infeasible target may be refused: e.g. the moments accountant's
        # finite orders give eps >= log(1/delta)/lambda_max even for huge noise.
        assert "too small" in str(exc)
        run = _run_for(kw, 1.0)
        run = run.with_noise(kw["schedule"].sigmas(SCALE_MAX, run.epochs))
        assert kw["target_epsilon"] < acc.epsilon(run, kw["delta"]).epsilon
        return
    _check_window(plan, kw["target_epsilon"], acc)


@settings(max_examples=15)
@given(runs, st.floats(1.002, 3.0))
def test_larger_target_means_less_noise_everywhere(fast_rdp, kw, ratio):
    a = solve_plan(accountant=fast_rdp, curve=False, **kw)
    kw2 = {**kw, "target_epsilon": kw["target_epsilon"] * ratio}
    if kw2["target_epsilon"] - kw["target_epsilon"] <= 1e-3:
        return
    b = solve_plan(accountant=fast_rdp, curve=False, **kw2)
    assert all(x > y for x, y in zip(a.noise_multipliers, b.noise_multipliers))


def _dpa_event(run, sigma):
    import dp_accounting

    return dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(run.sample_rate, dp_accounting.GaussianDpEvent(sigma)),
        run.total_steps,
    )


def _dpa_rdp_epsilon(run, sigma, delta=1e-5):
    import dp_accounting

    acc = dp_accounting.rdp.RdpAccountant()
    acc.compose(_dpa_event(run, sigma))
    return acc.get_epsilon(delta)


@pytest.mark.skipif("rdp" not in ACCS, reason="rdp accountant not present")
def test_constant_rdp_matches_dp_accounting():
    """Issue check: eps=2, delta=1e-5, q=256/60000, 30 epochs, RDP -> sigma ~ 1.0352.

    dp-accounting's RDP (fractional + integer orders) brackets our sigma: the plan spends
    [1.999, 2] there too, and 1e-3 less noise would exceed 2 -- so our sigma is within 1e-3
    of dp-accounting's root (its calibrate_dp_mechanism gives 1.03471 in dp-accounting 0.6,
    see the slow test below; 1.03516 is Opacus' bisection at epsilon_tolerance 0.01)."""
    plan = solve_plan(2.0, 1e-5, accountant="rdp", **MNIST)
    assert plan.scale == pytest.approx(1.0352, abs=1e-3)
    assert 1.999 <= plan.epsilon <= 2.0
    assert 1.999 <= _dpa_rdp_epsilon(plan.run, plan.scale) <= 2.0
    assert _dpa_rdp_epsilon(plan.run, plan.scale - 1e-3) > 2.0


@pytest.mark.slow
@pytest.mark.skipif("rdp" not in ACCS, reason="rdp accountant not present")
def test_constant_rdp_matches_calibrate_dp_mechanism():
    import dp_accounting
    from dp_accounting import mechanism_calibration as mc

    plan = solve_plan(2.0, 1e-5, accountant="rdp", **MNIST)
    ref = mc.calibrate_dp_mechanism(dp_accounting.rdp.RdpAccountant,
                                    lambda s: _dpa_event(plan.run, s), 2.0, 1e-5)
    assert plan.scale == pytest.approx(ref, abs=1e-3)


def test_reference_adapter_agrees_with_dp_accounting(fast_rdp, dpa_rdp):
    """The fast test accountant is dp-accounting's RDP (integer orders) -- pin it."""
    from dpaudit.accounting import DpSgdRun

    for sig, batching in [(0.7, "poisson"), (1.3, "poisson"), (2.0, "poisson"), (2.0, "shuffle")]:
        run = DpSgdRun.create(noise_multiplier=[sig, 1.1 * sig], sample_rate=0.01, epochs=2,
                              batching=batching)
        fast, ref = fast_rdp.epsilon(run, 1e-5).epsilon, dpa_rdp.epsilon(run, 1e-5).epsilon
        # integer orders only: never below dp-accounting (which also has fractional orders),
        # and equal where the optimal order is an integer >= 2
        assert fast >= ref - 1e-9
        if sig > 1:
            assert fast == pytest.approx(ref, rel=0.02)


@pytest.mark.skipif(not {"rdp", "pld"} <= set(ACCS), reason="accountants not present")
def test_default_pld_plan_is_tighter_than_rdp_and_curve_is_consistent():
    pld = solve_plan(2.0, 1e-5, accountant="pld", **MNIST)
    rdp = solve_plan(2.0, 1e-5, accountant="rdp", **MNIST)
    assert pld.scale < rdp.scale
    for plan in (pld, rdp):
        c = plan.cumulative_epsilon
        assert len(c) == 30 and all(b >= a for a, b in zip(c, c[1:]))
        assert c[-1] == pytest.approx(plan.epsilon, rel=1e-4)  # curve: incremental composition
        assert plan.evaluations <= 12


def test_validation_schedule_reports_both_cases_and_bounds_runtime_trajectories(fast_rdp):
    plan = solve_plan(3.0, 1e-5, sample_rate=0.02, epochs=8, accountant=fast_rdp,
                      schedule=ValidationDecay(factor=0.7, patience=2, min_ratio=0.4))
    rule = plan.runtime_rule
    assert rule is not None and rule.worst_case == plan.noise_multipliers
    assert rule.initial_sigma == plan.scale
    assert plan.best_case_epsilon < plan.epsilon <= 3.0
    # whatever validation accuracies come, the trajectory spends <= the plan
    for accs in ([0.1] * 7, [0.1, 0.2, 0.2, 0.2, 0.3, 0.3, 0.3], [0.5, 0.4, 0.3, 0.2, 0.1, 0, 0]):
        sig = rule.sigmas(accs)
        spent = fast_rdp.epsilon(plan.run.with_noise(sig), plan.delta).epsilon
        assert spent <= plan.epsilon + 1e-12


def test_shuffle_needs_more_noise_than_poisson(fast_rdp):
    p = solve_plan(2.0, 1e-5, accountant=fast_rdp, **MNIST)
    s = solve_plan(2.0, 1e-5, accountant=fast_rdp, batching="shuffle", **MNIST)
    assert s.scale > p.scale and s.batching == "shuffle"


def test_fractional_epochs(fast_rdp):
    plan = solve_plan(1.0, 1e-5, dataset_size=1000, batch_size=100, epochs=2.5,
                      accountant=fast_rdp)
    assert plan.epochs == 3 and plan.run.total_steps == 25
    assert len(plan.cumulative_epsilon) == 3


def test_compare_schedules_covers_all(fast_rdp):
    plans = compare_schedules(2.0, 1e-5, accountant=fast_rdp, sample_rate=0.01, epochs=5)
    assert [p.schedule.name for p in plans] == list(SCHEDULES)
    assert all(1.999 <= p.epsilon <= 2.0 for p in plans)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"target_epsilon": 0.0}, "epsilon"),
        ({"target_epsilon": -1.0}, "epsilon"),
        ({"target_epsilon": math.inf}, "epsilon"),
        ({"delta": 1.5}, "delta"),
        ({"delta": 0.0}, "delta"),
        ({"batching": "random"}, "batching"),
        ({"schedule": "nosuch"}, "schedule"),
        ({"accountant": "yu2019"}, "heuristic"),
        ({"accountant": "nosuch"}, "accountant"),
        ({"batch_size": 70000}, "batch size"),
        ({"epochs": 0}, "epochs"),
        ({"tol": 0.0}, "tolerance"),
        ({"target_epsilon": 1e-7}, "too small"),
    ],
)
def test_bad_input_is_a_clear_error(kwargs, match):
    base = {"target_epsilon": 2.0, "delta": 1e-5, "dataset_size": 60000, "batch_size": 256,
            "epochs": 3, "accountant": "rdp"}
    if "rdp" not in ACCS and kwargs.get("accountant") is None:
        pytest.skip("rdp accountant not present")
    with pytest.raises(InvalidParameterError, match=match):
        solve_plan(**{**base, **kwargs})


def test_per_step_releases_are_charged_and_leave_less_for_gradients():
    from dpaudit.accounting import get_accountant
    from dpaudit.allocation import solve_plan

    kw = dict(dataset_size=10000, batch_size=200, epochs=5, accountant="rdp")
    plain = solve_plan(2.0, 1e-5, **kw)
    screened = solve_plan(2.0, 1e-5, per_step_releases=((0.02, 4.0),), **kw)
    assert 2.0 - 1e-3 <= screened.epsilon <= 2.0
    assert min(screened.noise_multipliers) > max(plain.noise_multipliers)
    seg = screened.run.extra_segments
    assert len(seg) == 1 and seg[0].count == screened.run.total_steps
    # the plan's own figure is the accountant's figure for the run with its releases
    assert get_accountant("rdp").epsilon(screened.run, 1e-5).epsilon == screened.epsilon
    assert screened.cumulative_epsilon[-1] == pytest.approx(screened.epsilon, rel=1e-9)
    assert list(screened.cumulative_epsilon) == sorted(screened.cumulative_epsilon)


@pytest.mark.parametrize("target, n, b, epochs", [(0.5, 60, 16, 20), (2.0, 1437, 128, 30), (1.0, 60000, 256, 5)])
def test_pld_curve_never_above_the_plans_epsilon(target, n, b, epochs):
    # The curve is computed on a coarser grid than the search; the plan's own (sound) epsilon
    # of the whole run bounds every prefix, so a trainer following the plan never stops early.
    plan = solve_plan(target, 1e-5, dataset_size=n, batch_size=b, epochs=epochs, accountant="pld")
    c = plan.cumulative_epsilon
    assert len(c) == epochs and max(c) <= plan.epsilon <= target
    assert list(c) == sorted(c)
