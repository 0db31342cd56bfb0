"""The :class:`Plan` value: a solved noise schedule, its accounting, and its JSON form.

A plan is what the trainer consumes: ``plan.noise_multipliers`` (one sigma per epoch),
``plan.run`` (the :class:`~dpaudit.accounting.events.DpSgdRun` it describes), ``plan.epsilon``
(the epsilon that run spends at ``plan.delta`` under ``plan.accountant``, an upper bound) and,
for the validation schedule, ``plan.runtime_rule``. Plans round-trip through JSON exactly
(floats are written with ``repr`` precision), so re-accounting a saved plan with the same
accountant reproduces its epsilon.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dpaudit.accounting.base import EpsilonReport
from dpaudit.accounting.events import DpSgdRun, check_delta
from dpaudit.allocation.rule import ValidationRule
from dpaudit.allocation.schedules import Schedule, schedule_from_dict
from dpaudit.errors import InvalidParameterError

PLAN_FORMAT = "dpaudit-plan/1"


@dataclass(frozen=True)
class Plan:
    """A per-epoch noise schedule solved to spend a target (epsilon, delta).

    Attributes:
        target_epsilon: the budget asked for.
        epsilon: epsilon the planned run spends at ``delta`` under ``accountant``
            (``target - tol <= epsilon <= target``; for the validation schedule, the worst
            case of the runtime rule).
        delta: target delta.
        schedule: the schedule family and its shape parameters.
        scale: sigma_0, the solved free scale (``noise_multipliers = schedule.sigmas(scale)``).
        noise_multipliers: sigma per epoch (noise std / clipping norm).
        cumulative_epsilon: epsilon spent after each epoch (same accountant and delta).
        accountant: accountant name the plan was solved with.
        run: the planned run (batching, q, steps per epoch, total steps, N, B).
        runtime_rule: for the validation schedule, the rule the trainer applies.
        best_case_epsilon: for the validation schedule, epsilon if sigma never decays.
        evaluations: number of accountant evaluations the solver used.
        notes: caveats (accountant fallbacks, solver remarks).
        report: the accountant's report for ``run`` (not serialised beyond its notes).
    """

    target_epsilon: float
    epsilon: float
    delta: float
    schedule: Schedule
    scale: float
    noise_multipliers: tuple[float, ...]
    cumulative_epsilon: tuple[float, ...]
    accountant: str
    run: DpSgdRun
    runtime_rule: ValidationRule | None = None
    best_case_epsilon: float | None = None
    evaluations: int = 0
    notes: tuple[str, ...] = ()
    report: EpsilonReport | None = field(default=None, compare=False, repr=False)

    # ------------------------------------------------------------------ derived
    @property
    def batching(self) -> str:
        return self.run.batching

    @property
    def epochs(self) -> int:
        return self.run.epochs

    @property
    def sample_rate(self) -> float:
        return self.run.sample_rate

    @property
    def dataset_size(self) -> int | None:
        return self.run.dataset_size

    @property
    def batch_size(self) -> int | None:
        return self.run.batch_size

    @property
    def worst_case_epsilon(self) -> float:
        """Alias of :attr:`epsilon` (the plan always accounts the worst case)."""
        return self.epsilon

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        """JSON-able form; :meth:`from_dict` inverts it."""
        d: dict[str, Any] = {
            "format": PLAN_FORMAT,
            "epsilon": self.epsilon,
            "target_epsilon": self.target_epsilon,
            "delta": self.delta,
            "schedule": self.schedule.name,
            "schedule_params": self.schedule.params(),
            "sigma_0": self.scale,
            "noise_multipliers": list(self.noise_multipliers),
            "cumulative_epsilon": list(self.cumulative_epsilon),
            "accountant": self.accountant,
            "batching": self.run.batching,
            "relation": self.run.relation,
            "dataset_size": self.run.dataset_size,
            "batch_size": self.run.batch_size,
            "sample_rate": self.run.sample_rate,
            "epochs": self.run.epochs,
            "steps_per_epoch": self.run.steps_per_epoch,
            "total_steps": self.run.total_steps,
            "best_case_epsilon": self.best_case_epsilon,
            "worst_case_epsilon": self.epsilon if self.runtime_rule is not None else None,
            "runtime_rule": self.runtime_rule.to_dict() if self.runtime_rule else None,
            "evaluations": self.evaluations,
            "notes": list(self.notes),
            "run": self.run.to_dict(),
        }
        return d

    @classmethod
    def from_dict(cls, d: Any) -> Plan:
        """Rebuild a plan from :meth:`to_dict` output, checking it is self-consistent.

        Raises :class:`InvalidParameterError` on a wrong format, missing keys, or per-epoch
        noise that disagrees with the embedded run description.
        """
        if not isinstance(d, dict):
            raise InvalidParameterError("a plan must be a JSON object")
        fmt = d.get("format")
        if fmt != PLAN_FORMAT:
            raise InvalidParameterError(f"not a dpaudit plan (format {fmt!r}, expected {PLAN_FORMAT!r})")
        try:
            run = DpSgdRun.from_dict(d["run"])
            sched = schedule_from_dict({"name": d["schedule"], "params": d.get("schedule_params") or {}})
            sig = tuple(float(s) for s in d["noise_multipliers"])
            cum = tuple(float(e) for e in d.get("cumulative_epsilon") or ())
            eps = float(d["epsilon"])
            target = float(d.get("target_epsilon", eps))
            delta = check_delta(d["delta"])
            scale = float(d.get("sigma_0", sig[0] if sig else math.nan))
            acc = str(d["accountant"])
            rule = ValidationRule.from_dict(d["runtime_rule"]) if d.get("runtime_rule") else None
            best = d.get("best_case_epsilon")
            best = None if best is None else float(best)
            notes = tuple(str(n) for n in d.get("notes") or ())
            evals = int(d.get("evaluations", 0))
        except InvalidParameterError:
            raise
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise InvalidParameterError(f"not a valid plan: missing or invalid {exc}") from None
        if sig != run.noise_multipliers:
            raise InvalidParameterError(
                "not a valid plan: 'noise_multipliers' disagree with the embedded run"
            )
        if cum and len(cum) != len(sig):
            raise InvalidParameterError("not a valid plan: one cumulative epsilon per epoch expected")
        if d.get("batching", run.batching) != run.batching:
            raise InvalidParameterError("not a valid plan: 'batching' disagrees with the embedded run")
        if rule is not None and tuple(rule.worst_case) != sig:
            raise InvalidParameterError(
                "not a valid plan: the runtime rule's worst case disagrees with the planned noise"
            )
        if not (eps >= 0):
            raise InvalidParameterError("not a valid plan: epsilon must be >= 0")
        return cls(
            target_epsilon=target,
            epsilon=eps,
            delta=delta,
            schedule=sched,
            scale=scale,
            noise_multipliers=sig,
            cumulative_epsilon=cum,
            accountant=acc,
            run=run,
            runtime_rule=rule,
            best_case_epsilon=best,
            evaluations=evals,
            notes=notes,
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the plan as JSON, atomically."""
        from dpaudit.io import atomic_write_text

        atomic_write_text(path, self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Plan:
        """Read a plan written by :meth:`save` (plain JSON; nothing is executed)."""
        p = Path(path)
        text = p.read_text(encoding="utf-8")  # FileNotFoundError -> CLI one-liner
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidParameterError(f"{p}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
        return cls.from_dict(d)


def account_plan(plan: Plan, accountant: str | None = None) -> EpsilonReport:
    """Re-account a plan's run at its delta, with its own or another accountant.

    For the validation schedule this accounts the worst case (``plan.run``), which bounds
    every run that follows ``plan.runtime_rule``.
    """
    from dpaudit.accounting import get_accountant

    return get_accountant(accountant or plan.accountant).epsilon(plan.run, plan.delta)
