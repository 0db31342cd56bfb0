"""Ledger -> DpSgdRun -> accountant, against the plan it followed."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpaudit.accounting import DpSgdRun
from dpaudit.errors import InvalidParameterError
from dpaudit.training.budget import account
from dpaudit.training.ledger import PrivacyLedger


def _ledger_following(sigmas, n=1000, b=50, batching="poisson"):
    led = PrivacyLedger(n, b, batching)
    for s in sigmas:
        for _ in range(led.steps_per_epoch):
            led.record_step(s, 1.0)
    return led


@pytest.mark.parametrize("batching", ["poisson", "shuffle"])
def test_ledger_run_equals_planned_run(batching):
    sig = [2.0, 1.5, 1.2]
    run = DpSgdRun.create(noise_multiplier=sig, dataset_size=1000, batch_size=50, epochs=3,
                          batching=batching)
    assert _ledger_following(sig, batching=batching).to_run() == run


def test_ledger_epsilon_equals_planned_epsilon():
    alloc = pytest.importorskip("dpaudit.allocation")
    try:
        plan = alloc.solve_plan(2.0, 1e-5, dataset_size=1000, batch_size=50, epochs=4,
                                batching="poisson", accountant="rdp", schedule="exp")
    except ImportError:
        pytest.skip("rdp accountant not available")
    led = _ledger_following(plan.noise_multipliers)
    assert led.to_run() == plan.run
    eps = account(led.to_run(), 1e-5, "rdp").epsilon
    assert eps == pytest.approx(plan.epsilon, rel=1e-12)
    assert eps <= 2.0


def test_ledger_to_dict_round_trip():
    led = _ledger_following([3.0, 2.0])
    led.record_step(1.0, 0.5)
    led.record_release(0.1, 5.0, 3, note="validation")
    back = PrivacyLedger.from_dict(led.to_dict())
    assert back.to_dict() == led.to_dict()
    assert back.to_run() == led.to_run()
    assert led.to_run().extra_segments[0].count == 3


def test_ledger_uses_smallest_sigma_within_an_epoch():
    led = PrivacyLedger(100, 10, "poisson")
    led.record_step(2.0, 1.0, count=5)
    led.record_step(1.0, 1.0, count=5)
    led.record_step(3.0, 1.0, count=2)
    assert led.epoch_sigmas() == [1.0, 3.0]
    assert led.to_run().total_steps == 12


@settings(max_examples=15)
@given(sig=st.lists(st.floats(0.8, 5.0), min_size=1, max_size=4), bump=st.floats(0.0, 1.0))
def test_property_more_noise_never_more_epsilon(sig, bump):
    # The stop rule relies on epsilon being monotone in each sigma.
    pytest.importorskip("dpaudit.accounting.rdp")
    low = account(_ledger_following(sig).to_run(), 1e-5, "rdp").epsilon
    high = account(_ledger_following([s + bump for s in sig]).to_run(), 1e-5, "rdp").epsilon
    assert high <= low + 1e-9
    longer = account(_ledger_following([*sig, sig[-1]]).to_run(), 1e-5, "rdp").epsilon
    assert longer >= low - 1e-9


def test_ledger_rejects_bad_steps():
    led = PrivacyLedger(100, 10)
    with pytest.raises(InvalidParameterError):
        led.record_step(0.0, 1.0)
    with pytest.raises(InvalidParameterError):
        led.to_run()
    with pytest.raises(InvalidParameterError):
        PrivacyLedger(10, 20)
    with pytest.raises(InvalidParameterError):
        PrivacyLedger.from_dict({"batching": "poisson"})
    assert math.isclose(led.sample_rate, 0.1)
