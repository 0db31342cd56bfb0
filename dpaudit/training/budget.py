"""Privacy budget helpers of the trainer: account a ledger, plan the noise.

Thin wrappers over :mod:`dpaudit.accounting` and :mod:`dpaudit.allocation`. If the named
accountant module is not installed, :func:`account` falls back to dp_accounting's RDP
accountant (Mironov et al. 2019; a sound upper bound, looser than PLD) and says so in its
notes; :func:`plan_noise` falls back to bisection of a constant sigma on that figure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dpaudit.accounting.events import DpSgdRun
from dpaudit.errors import InvalidParameterError

#: Name recorded when dp_accounting's RDP accountant stood in for a missing one.
FALLBACK = "dp_accounting.rdp"


@dataclass(frozen=True)
class Accounted:
    """An epsilon with where it came from."""

    epsilon: float
    accountant: str
    method: str = ""
    notes: tuple[str, ...] = ()


def _dp_accounting_rdp(run: DpSgdRun, delta: float) -> float:
    import dp_accounting

    orders = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)) + [80, 128, 256, 512]
    acc = dp_accounting.rdp.RdpAccountant(orders)
    acc.compose(run.to_dp_event())
    return float(acc.get_epsilon(delta))


def account(run: DpSgdRun, delta: float, accountant: str = "pld") -> Accounted:
    """Upper bound on the run's epsilon at ``delta`` under its own batching."""
    from dpaudit import accounting

    try:
        if accountant == FALLBACK:
            raise ImportError(FALLBACK)
        acc = accounting.get_accountant(accountant)
    except ImportError:
        eps = _dp_accounting_rdp(run, delta)
        note = () if accountant == FALLBACK else (
            f"accountant {accountant!r} unavailable; used dp_accounting RDP (sound, looser)",)
        return Accounted(eps, FALLBACK, "RDP (dp_accounting)", note)
    rep = acc.epsilon(run, accounting.check_delta(delta))
    if not rep.sound:
        raise InvalidParameterError(f"accountant {accountant!r} is not a sound upper bound")
    return Accounted(float(rep.epsilon), rep.accountant, rep.method, tuple(rep.notes))


@dataclass(frozen=True)
class NoisePlan:
    """Per-epoch noise for a run, from the allocator (or the fallback calibration)."""

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
    schedule: str,
) -> NoisePlan:
    """Noise per epoch so the run spends at most ``target_epsilon`` (allocator's solve_plan)."""
    try:
        from dpaudit.allocation import solve_plan
    except ImportError:
        solve_plan = None
    if solve_plan is not None:
        try:
            return from_plan(solve_plan(
                target_epsilon, delta, dataset_size=dataset_size, batch_size=batch_size,
                epochs=epochs, batching=batching, accountant=accountant, schedule=schedule,
            ))
        except ImportError:
            pass  # the accountant module is missing: calibrate on the fallback below
    if schedule != "constant":
        raise InvalidParameterError(f"schedule {schedule!r} needs dpaudit.allocation")
    base = DpSgdRun.create(noise_multiplier=1.0, dataset_size=dataset_size,
                           batch_size=batch_size, epochs=epochs, batching=batching)

    def eps(s: float) -> Accounted:
        return account(base.with_noise([s] * base.epochs), delta, accountant)

    lo, hi = 0.05, 1.0
    while eps(hi).epsilon > target_epsilon:
        lo, hi = hi, hi * 2
        if hi > 1e4:
            raise InvalidParameterError(f"target epsilon {target_epsilon} is too small to plan")
    if eps(lo).epsilon <= target_epsilon:
        raise InvalidParameterError(f"target epsilon {target_epsilon} is too large to plan")
    for _ in range(40):  # invariant: eps(lo) > target >= eps(hi)
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if eps(mid).epsilon > target_epsilon else (lo, mid)
    rep = eps(hi)
    run = base.with_noise([hi] * base.epochs)
    cum = tuple(account(run.truncate(e + 1), delta, accountant).epsilon for e in range(run.epochs))
    return NoisePlan(tuple(run.noise_multipliers), rep.epsilon, cum, rep.accountant, run,
                     notes=("allocator unavailable: constant sigma by bisection",) + rep.notes)
