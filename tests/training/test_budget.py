"""PrivacyBudget: sigma per epoch, the stop rule, what was spent (torch-free)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpaudit.errors import InvalidParameterError
from dpaudit.training.budget import PrivacyBudget, account, check_plan_fits
from dpaudit.training.config import TrainConfig, resolve_config


def _run_epochs(budget: PrivacyBudget, epochs: int) -> int:
    """Drive ``budget`` like the trainer does; returns the epochs it allowed."""
    done = 0
    for e in range(epochs):
        sigma = budget.sigma_for_epoch(e, [0.5] * e)
        if not budget.may_run_epoch(e, sigma):
            break
        for _ in range(budget.steps_per_epoch):
            budget.record_step(sigma)
        budget.end_epoch()
        done += 1
    return done


@settings(max_examples=10)
@given(target=st.floats(0.3, 3.0), sigma=st.floats(0.6, 3.0))
def test_constant_sigma_stops_before_exceeding_the_target(target, sigma):
    b = PrivacyBudget.constant(sigma, dataset_size=1000, batch_size=50, batching="poisson",
                               delta=1e-5, accountant="rdp", clip=1.0, target=target)
    done = _run_epochs(b, 20)
    final = b.final_report()
    if done == 0:
        assert final is None and b.stop_reason.startswith("stopped before epoch 1")
        return
    assert final is not None and final.epsilon <= target
    assert b.spent is not None and b.spent.epsilon == pytest.approx(final.epsilon, rel=1e-9)
    if done < 20:  # one more epoch would have exceeded the target
        b.ledger.record_epoch(sigma, 1.0)
        assert account(b.ledger.to_run(), 1e-5, "rdp").epsilon > target


def test_target_budget_follows_its_plan_and_spends_at_most_the_target():
    cfg = resolve_config(TrainConfig(epsilon=1.0, epochs=4, batch_size=50, accountant="rdp",
                                     schedule="exp"))
    b = PrivacyBudget.from_config(cfg, dataset_size=1000)
    assert b.plan is not None and b.target == 1.0
    assert [b.sigma_for_epoch(e) for e in range(4)] == list(b.plan.noise_multipliers)
    assert _run_epochs(b, 4) == 4
    assert b.ledger.to_run() == b.plan.run
    final = b.final_report()
    assert final is not None and final.epsilon <= 1.0
    assert b.spent is not None and b.spent.method == "plan curve"  # read off, not re-accounted


def test_validation_queries_are_charged():
    plain = PrivacyBudget.constant(2.0, dataset_size=1000, batch_size=50, batching="poisson",
                                   delta=1e-5, accountant="rdp", clip=1.0)
    screened = PrivacyBudget.constant(2.0, dataset_size=1000, batch_size=50, batching="poisson",
                                      delta=1e-5, accountant="rdp", clip=1.0,
                                      validation_query=(0.05, 3.0))
    for b in (plain, screened):
        assert b.may_run_epoch(0, 2.0)
        for _ in range(b.steps_per_epoch):
            b.record_step(2.0)
        b.end_epoch(b.steps_per_epoch if b is screened else 0)
    assert screened.ledger.extra[0]["count"] == screened.steps_per_epoch
    assert screened.spent.epsilon > plain.spent.epsilon  # type: ignore[union-attr]
    assert screened.final_report().epsilon == pytest.approx(screened.spent.epsilon, rel=1e-9)  # type: ignore[union-attr]


def test_plan_must_fit_the_run():
    from dpaudit.allocation import solve_plan

    plan = solve_plan(1.0, 1e-5, dataset_size=1000, batch_size=50, epochs=2, accountant="rdp")
    check_plan_fits(plan, 1000, 50, "poisson")
    with pytest.raises(InvalidParameterError, match="re-plan for dataset size 900") as exc:
        check_plan_fits(plan, 900, 50, "poisson")
    assert "--" not in str(exc.value)
    with pytest.raises(InvalidParameterError):
        PrivacyBudget(PrivacyBudget.constant(1.0, dataset_size=10, batch_size=2, batching="poisson",
                                             delta=1e-5, accountant="rdp", clip=1.0).ledger,
                      clip=1.0, delta=1e-5, accountant="rdp")  # neither plan nor sigma
