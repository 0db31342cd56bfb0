"""The privacy budget of a training run: one owner for the noise per epoch, the stop rule and
the epsilon spent.

A :class:`PrivacyBudget` is made from a noise plan (a saved one, or one solved from a target
epsilon by :func:`plan_noise`, i.e. :func:`dpaudit.allocation.solve_plan`) or from a constant
noise multiplier with an optional target. It owns the run's :class:`PrivacyLedger` and answers
the trainer's questions:

* :meth:`~PrivacyBudget.sigma_for_epoch` -- the plan's sigma for the epoch, the validation
  rule's (Yu et al. 2019, Sec. V-B; from held-out accuracy so far), or the constant;
* :meth:`~PrivacyBudget.may_run_epoch` -- whether the ledger *with that epoch added* (its
  steps and any per-step validation queries) stays within the target. Accountants here are
  sound upper bounds, so stopping before an epoch that would exceed the target keeps the spent
  epsilon within the budget;
* :attr:`~PrivacyBudget.spent` and :meth:`~PrivacyBudget.final_report` -- the epsilon after the
  last epoch run, and the whole ledger re-accounted at the end.

Torch-free: budgets can be built and queried without the trainer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from dpaudit.accounting.base import EpsilonReport
from dpaudit.accounting.events import DpSgdRun, steps_per_epoch
from dpaudit.errors import InvalidParameterError
from dpaudit.training.ledger import PrivacyLedger

if TYPE_CHECKING:
    from dpaudit.allocation import Plan
    from dpaudit.training.config import TrainConfig

#: One extra Poisson-subsampled Gaussian release per step: (sample rate q_v, sigma_v).
Release = tuple[float, float]
#: Releases made once before training: (sample rate, noise multiplier, count, note), e.g.
#: privately computed normalisation statistics (:mod:`dpaudit.training.datanorm`).
InitialRelease = tuple[float, float, int, str]


def account(run: DpSgdRun, delta: float, accountant: str = "pld") -> EpsilonReport:
    """Upper bound on the run's epsilon at ``delta`` under its own batching (sound
    accountants only)."""
    from dpaudit import accounting

    rep = accounting.get_accountant(accountant).epsilon(run, accounting.check_delta(delta))
    if not rep.sound:
        raise InvalidParameterError(f"accountant {accountant!r} is not a sound upper bound")
    return rep


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
    per_step_releases: tuple[Release, ...] = (),
    initial_releases: tuple[InitialRelease, ...] = (),
) -> Plan:
    """Noise per epoch so the run spends at most ``target_epsilon`` (the allocator's
    :func:`~dpaudit.allocation.solve_plan`).

    ``per_step_releases``: one Poisson-subsampled Gaussian (q_v, sigma_v) per step each, e.g.
    the validation query of update screening; they are composed into every evaluation and into
    the per-epoch curve, so the trainer's budget check sees what the ledger will hold.
    ``initial_releases``: releases made once before training (composed the same way)."""
    from dpaudit.allocation import solve_plan

    try:
        return solve_plan(
            target_epsilon, delta, dataset_size=dataset_size, batch_size=batch_size,
            epochs=epochs, batching=batching, accountant=accountant, schedule=schedule,
            per_step_releases=per_step_releases,
            initial_releases=tuple((q, s, n) for q, s, n, _ in initial_releases),
        )
    except InvalidParameterError as exc:
        if (per_step_releases or initial_releases) and "too small" in str(exc):
            what = " and ".join(w for w, on in (("the per-step validation releases", per_step_releases),
                                                ("the releases before training", initial_releases)) if on)
            raise InvalidParameterError(
                f"target epsilon {target_epsilon} is too small: {what} alone spend (nearly) all "
                "of it; raise their noise multiplier or lower their sample rate") from None
        raise


def check_plan_fits(plan: Plan, dataset_size: int, batch_size: int, batching: str) -> None:
    """Refuse a plan made for another run (N, B, batching) or with a partial last epoch."""
    r = plan.run
    if (r.dataset_size, r.batch_size, r.batching) != (dataset_size, batch_size, batching):
        raise InvalidParameterError(
            f"the plan is for N={r.dataset_size}, B={r.batch_size}, {r.batching} batching; "
            f"this run has N={dataset_size}, B={batch_size}, {batching} batching: re-plan for "
            f"dataset size {dataset_size}, batch size {batch_size} and {batching} batching"
        )
    if r.total_steps != r.epochs * r.steps_per_epoch:
        raise InvalidParameterError("plans with a partial last epoch are not supported")
    spe = steps_per_epoch(batching, dataset_size=dataset_size, batch_size=batch_size)
    if r.steps_per_epoch != spe:
        raise InvalidParameterError(
            f"the plan counts {r.steps_per_epoch} steps per epoch, the trainer's {batching} "
            f"sampler takes {spe}: re-plan with the trainer's convention"
        )


class PrivacyBudget:
    """A private run's budget: the ledger, where sigma comes from, and the target.

    Build with :meth:`from_plan`, :meth:`for_target`, :meth:`constant` or :meth:`from_config`.

    Args:
        ledger: the (empty) ledger of the run; the budget records into it.
        clip: the clipping norm C recorded with every step.
        delta: the delta every epsilon is accounted at.
        accountant: a sound accountant name.
        target: stop before an epoch that would spend more (``None``: never stop).
        plan: the noise plan to follow (exclusive with ``noise_multiplier``).
        noise_multiplier: a constant sigma per step.
        validation_query: one extra release (q_v, sigma_v) per step (update screening).
        initial_releases: releases made before the first step (e.g. private normalisation
            statistics); recorded in the ledger at once, so every epsilon includes them.
    """

    def __init__(
        self,
        ledger: PrivacyLedger,
        *,
        clip: float,
        delta: float,
        accountant: str,
        target: float | None = None,
        plan: Plan | None = None,
        noise_multiplier: float | None = None,
        validation_query: Release | None = None,
        initial_releases: tuple[InitialRelease, ...] = (),
    ) -> None:
        if (plan is None) == (noise_multiplier is None):
            raise InvalidParameterError("a privacy budget follows a noise plan or a noise multiplier")
        self.ledger = ledger
        self.clip = float(clip)
        self.delta = float(delta)
        self.accountant = accountant
        self.target = None if target is None else float(target)
        self.plan = plan
        self.noise_multiplier = None if noise_multiplier is None else float(noise_multiplier)
        self.validation_query = validation_query
        self.initial_releases = tuple(initial_releases)
        for q, sig, n, note in self.initial_releases:
            ledger.record_release(q, sig, n, note)
        #: whether the plan's cumulative curve includes the initial releases (plans solved
        #: here do; a saved plan does not, so every epoch is then accounted from the ledger).
        self.plan_has_initial = not self.initial_releases
        self.notes: list[str] = list(plan.notes) if plan is not None else []
        self.spent: EpsilonReport | None = None
        self.stop_reason = ""
        self._next: EpsilonReport | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_plan(cls, plan: Plan, *, clip: float, validation_query: Release | None = None,
                  initial_releases: tuple[InitialRelease, ...] = ()) -> PrivacyBudget:
        """Follow ``plan`` (target: the plan's epsilon, at its delta, with its accountant).
        With ``initial_releases`` a saved plan (which does not include them) is followed with
        every epoch accounted from the ledger, stopping before the target is exceeded."""
        r = plan.run
        if r.dataset_size is None or r.batch_size is None:
            raise InvalidParameterError("the plan names no dataset size and batch size; re-plan with both")
        ledger = PrivacyLedger(r.dataset_size, r.batch_size, r.batching)
        return cls(ledger, clip=clip, delta=plan.delta, accountant=plan.accountant,
                   target=plan.epsilon, plan=plan, validation_query=validation_query,
                   initial_releases=initial_releases)

    @classmethod
    def for_target(
        cls, epsilon: float, delta: float, *, dataset_size: int, batch_size: int, epochs: int,
        batching: str, accountant: str, clip: float, schedule: str = "constant",
        validation_query: Release | None = None, initial_releases: tuple[InitialRelease, ...] = (),
    ) -> PrivacyBudget:
        """Solve a plan that spends at most ``epsilon`` (with the validation queries and the
        initial releases, if any) and follow it; the target is ``epsilon`` itself."""
        releases = () if validation_query is None else (validation_query,)
        plan = plan_noise(epsilon, delta, dataset_size=dataset_size, batch_size=batch_size,
                          epochs=epochs, batching=batching, accountant=accountant,
                          schedule="constant" if releases else schedule, per_step_releases=releases,
                          initial_releases=initial_releases)
        budget = cls.from_plan(plan, clip=clip, validation_query=validation_query,
                               initial_releases=initial_releases)
        budget.plan_has_initial = True
        budget.target = float(epsilon)
        return budget

    @classmethod
    def constant(
        cls, noise_multiplier: float, *, dataset_size: int, batch_size: int, batching: str,
        delta: float, accountant: str, clip: float, target: float | None = None,
        validation_query: Release | None = None, initial_releases: tuple[InitialRelease, ...] = (),
    ) -> PrivacyBudget:
        """A constant sigma per step, stopping at ``target`` if given."""
        ledger = PrivacyLedger(dataset_size, batch_size, batching)
        return cls(ledger, clip=clip, delta=delta, accountant=accountant, target=target,
                   noise_multiplier=noise_multiplier, validation_query=validation_query,
                   initial_releases=initial_releases)

    @classmethod
    def from_config(
        cls, cfg: TrainConfig, *, dataset_size: int, plan: Plan | None = None,
        validation_query: Release | None = None, initial_releases: tuple[InitialRelease, ...] = (),
    ) -> PrivacyBudget:
        """The budget a resolved :class:`~dpaudit.training.config.TrainConfig` asks for, for
        ``dataset_size`` training members: ``plan`` (loaded from ``cfg.plan_path``), a plan
        solved for ``cfg.epsilon``, or ``cfg.noise_multiplier``."""
        clip, b = float(cfg.clip or 0.0), int(cfg.batch_size or 0)
        if plan is not None:
            check_plan_fits(plan, dataset_size, b, cfg.batching)
            return cls.from_plan(plan, clip=clip, validation_query=validation_query,
                                 initial_releases=initial_releases)
        delta = float(cfg.delta or 0.0)
        if cfg.noise_multiplier is None:
            if cfg.epsilon is None:
                raise InvalidParameterError("give a target epsilon, a plan or a noise multiplier")
            return cls.for_target(float(cfg.epsilon), delta, dataset_size=dataset_size, batch_size=b,
                                  epochs=int(cfg.epochs or 0), batching=cfg.batching,
                                  accountant=cfg.accountant, clip=clip, schedule=cfg.schedule,
                                  validation_query=validation_query, initial_releases=initial_releases)
        return cls.constant(float(cfg.noise_multiplier), dataset_size=dataset_size, batch_size=b,
                            batching=cfg.batching, delta=delta, accountant=cfg.accountant, clip=clip,
                            target=cfg.epsilon, validation_query=validation_query,
                            initial_releases=initial_releases)

    # ------------------------------------------------------------------ questions
    @property
    def needs_validation(self) -> bool:
        """Whether sigma depends on held-out accuracy (a plan with a runtime rule)."""
        return self.plan is not None and self.plan.runtime_rule is not None

    @property
    def steps_per_epoch(self) -> int:
        return self.ledger.steps_per_epoch

    def sigma_for_epoch(self, epoch: int, val_accuracies: Sequence[float] = ()) -> float:
        """Noise multiplier of epoch ``epoch`` (0-based); ``val_accuracies``: held-out
        accuracy after each earlier epoch (used by the validation rule only)."""
        if self.noise_multiplier is not None:
            return self.noise_multiplier
        assert self.plan is not None  # one of the two, see __init__
        if self.plan.runtime_rule is not None:
            return float(self.plan.runtime_rule.next_sigma(list(val_accuracies)[:epoch]))
        return float(self.plan.noise_multipliers[epoch])

    def may_run_epoch(self, epoch: int, sigma: float) -> bool:
        """Account the ledger with epoch ``epoch`` (noise ``sigma``) added; ``False`` (and
        :attr:`stop_reason` set) if that would exceed the target."""
        projected = self.ledger.copy()
        projected.record_epoch(sigma, self.clip)
        if self.validation_query is not None:
            q_v, s_v = self.validation_query
            projected.record_release(q_v, s_v, self.steps_per_epoch, "screening validation queries")
        nxt = self._plan_curve(projected, epoch) or account(projected.to_run(), self.delta, self.accountant)
        if self.target is not None and nxt.epsilon > self.target:
            self.stop_reason = (f"stopped before epoch {epoch + 1}: it would spend epsilon = "
                                f"{nxt.epsilon:.4g} > budget {self.target:.4g}")
            self.notes.append(self.stop_reason)
            return False
        self._next = nxt
        return True

    def _plan_curve(self, projected: PrivacyLedger, epoch: int) -> EpsilonReport | None:
        """The plan's cumulative epsilon after ``epoch`` when the projected ledger follows the
        plan exactly (same noise so far; saves an accountant call)."""
        plan = self.plan
        if plan is None or not plan.cumulative_epsilon or not self.plan_has_initial:
            return None
        if tuple(projected.epoch_sigmas()) != tuple(plan.noise_multipliers[: epoch + 1]):
            return None
        return EpsilonReport.for_run(projected.to_run(), self.accountant, plan.cumulative_epsilon[epoch],
                                     self.delta, method="plan curve")

    def record_step(self, sigma: float) -> None:
        """One noisy gradient step with noise multiplier ``sigma`` (clip norm :attr:`clip`)."""
        self.ledger.record_step(sigma, self.clip)

    def end_epoch(self, validation_queries: int = 0) -> None:
        """Close the epoch begun by :meth:`may_run_epoch`: record its ``validation_queries``
        and take its projected epsilon as :attr:`spent`."""
        if validation_queries and self.validation_query is not None:
            q_v, s_v = self.validation_query
            self.ledger.record_release(q_v, s_v, validation_queries, "screening validation queries")
        self.spent = self._next

    def final_report(self) -> EpsilonReport | None:
        """The whole ledger re-accounted (``None`` when no step was taken); a figure above the
        target (accountant discretisation) is reported as is and noted."""
        if not self.ledger.steps:
            return None
        final = account(self.ledger.to_run(), self.delta, self.accountant)
        self.notes.extend(n for n in final.notes if n not in self.notes)
        if self.target is not None and final.epsilon > self.target:
            self.notes.append(f"re-accounting the ledger gives epsilon = {final.epsilon:.6g}, above "
                              f"the budget {self.target:.6g} (accountant discretisation); reported as is")
        return final

    def __repr__(self) -> str:
        source = "plan" if self.plan is not None else f"sigma={self.noise_multiplier:g}"
        target = "none" if self.target is None else f"{self.target:g}"
        spent = "-" if self.spent is None else f"{self.spent.epsilon:.4g}"
        return f"PrivacyBudget({source}, target={target}, spent={spent}, {self.ledger!r})"
