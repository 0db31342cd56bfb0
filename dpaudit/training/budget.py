"""Privacy budget helpers of the trainer: account a ledger, plan the noise.

Thin wrappers over :mod:`dpaudit.accounting` (sound accountants only) and
:func:`dpaudit.allocation.solve_plan` (one noise search for the whole project).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dpaudit.accounting.events import DpSgdRun
from dpaudit.errors import InvalidParameterError


@dataclass(frozen=True)
class Accounted:
    """An epsilon with where it came from."""

    epsilon: float
    accountant: str
    method: str = ""
    notes: tuple[str, ...] = ()


def account(run: DpSgdRun, delta: float, accountant: str = "pld") -> Accounted:
    """Upper bound on the run's epsilon at ``delta`` under its own batching."""
    from dpaudit import accounting

    rep = accounting.get_accountant(accountant).epsilon(run, accounting.check_delta(delta))
    if not rep.sound:
        raise InvalidParameterError(f"accountant {accountant!r} is not a sound upper bound")
    return Accounted(float(rep.epsilon), rep.accountant, rep.method, tuple(rep.notes))


@dataclass(frozen=True)
class NoisePlan:
    """Per-epoch noise for a run, from the allocator."""

    noise_multipliers: tuple[float, ...]
    epsilon: float
    cumulative_epsilon: tuple[float, ...]
    accountant: str
    run: DpSgdRun
    runtime_rule: Any = None
    plan_dict: dict | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)


def from_plan(plan: Any) -> NoisePlan:
    """Wrap a :class:`dpaudit.allocation.Plan`."""
    return NoisePlan(
        noise_multipliers=tuple(plan.noise_multipliers),
        epsilon=float(plan.epsilon),
        cumulative_epsilon=tuple(plan.cumulative_epsilon),
        accountant=str(plan.accountant),
        run=plan.run,
        runtime_rule=plan.runtime_rule,
        plan_dict=plan.to_dict(),
        notes=tuple(plan.notes),
    )


def load_plan(path: str) -> NoisePlan:
    from dpaudit.allocation import Plan

    return from_plan(Plan.load(path))


def plan_noise(
    target_epsilon: float,
    delta: float,
    *,
    dataset_size: int,
    batch_size: int,
    epochs: int,
    batching: str,
    accountant: str,
    schedule: str = "constant",
    per_step_releases: tuple[tuple[float, float], ...] = (),
) -> NoisePlan:
    """Noise per epoch so the run spends at most ``target_epsilon`` (allocator's solve_plan).

    ``per_step_releases``: one Poisson-subsampled Gaussian (q_v, sigma_v) per step each, e.g.
    the validation query of update screening; they are composed into every evaluation and into
    the per-epoch curve, so the trainer's budget check sees what the ledger will hold."""
    from dpaudit.allocation import solve_plan

    try:
        plan = solve_plan(
            target_epsilon, delta, dataset_size=dataset_size, batch_size=batch_size,
            epochs=epochs, batching=batching, accountant=accountant, schedule=schedule,
            per_step_releases=per_step_releases,
        )
    except InvalidParameterError as exc:
        if per_step_releases and "too small" in str(exc):
            raise InvalidParameterError(
                f"target epsilon {target_epsilon} is too small: the per-step validation releases "
                "alone spend (nearly) all of it; raise their noise multiplier or lower their "
                "sample rate") from None
        raise
    return from_plan(plan)
