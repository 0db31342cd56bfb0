"""Noise allocation: per-epoch noise schedules that spend exactly a target (epsilon, delta).

Quick use::

    from dpaudit.allocation import solve_plan
    plan = solve_plan(2.0, 1e-5, dataset_size=60000, batch_size=256, epochs=30,
                      accountant="rdp", schedule="exp")
    plan.noise_multipliers, plan.epsilon
    plan.save("plan.json"); Plan.load("plan.json")

Pure math (standard library + the accountants); never imports torch or scipy.optimize.
See docs/allocation.md.
"""

from __future__ import annotations

from dpaudit.allocation.plan import PLAN_FORMAT, Plan, account_plan
from dpaudit.allocation.rule import ValidationRule
from dpaudit.allocation.schedules import (
    SCHEDULES,
    Constant,
    ExpDecay,
    PolyDecay,
    Schedule,
    StepDecay,
    TimeDecay,
    ValidationDecay,
    make_schedule,
    schedule_from_dict,
)
from dpaudit.allocation.solver import TOL, compare_schedules, epsilon_curve, solve_plan

__all__ = [
    "PLAN_FORMAT",
    "SCHEDULES",
    "TOL",
    "Constant",
    "ExpDecay",
    "Plan",
    "PolyDecay",
    "Schedule",
    "StepDecay",
    "TimeDecay",
    "ValidationDecay",
    "ValidationRule",
    "account_plan",
    "compare_schedules",
    "epsilon_curve",
    "make_schedule",
    "schedule_from_dict",
    "solve_plan",
]
