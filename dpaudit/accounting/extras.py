"""Run-level figures reported beside an accountant's epsilon, computed once per run.

For a *shuffled* run every report carries

* ``epsilon_if_poisson``: the same accountant on ``run.with_batching("poisson")`` -- the
  figure often (wrongly) quoted for shuffled training; NOT a valid bound for this run;
* ``epsilon_lower``: a proven lower bound on the run's true epsilon (Chua et al. 2024,
  :mod:`dpaudit.accounting.shuffle`), or ``None`` where no non-trivial bound was obtained
  (a note says why; a numerical 0 is never reported as a finding).

The lower bound does not depend on the accountant, so callers that account one run with
several accountants (:mod:`dpaudit.accounting.report`) compute it once with
:func:`shuffle_lower` and attach it with :func:`with_shuffle_extras`; an accountant asked
for a single report does both through :func:`add_run_extras`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dpaudit.accounting.base import EpsilonReport
from dpaudit.accounting.events import DpSgdRun

SHUFFLE_NOTE = (
    "shuffled batching: epsilon uses the sound per-epoch Gaussian view (no amplification "
    "claimed); epsilon_if_poisson is NOT a valid bound for this run"
)


@dataclass(frozen=True)
class ShuffleLower:
    """The lower bound of a shuffled run at one delta: ``epsilon`` (``None`` when no
    non-trivial bound was obtained) and notes."""

    epsilon: float | None
    notes: tuple[str, ...] = ()


def shuffle_lower(run: DpSgdRun, delta: float) -> ShuffleLower:
    """The Chua et al. lower bound of ``run`` for reports (see the module docstring)."""
    from dpaudit.accounting.shuffle import lower_bound

    lb = lower_bound(run, delta)
    if lb.epsilon > 0.0:
        return ShuffleLower(lb.epsilon, lb.notes)
    why = lb.notes or ("the construction gives only the trivial bound 0 here",)
    return ShuffleLower(None, ("epsilon_lower: no non-trivial lower bound; " + "; ".join(why),))


def with_shuffle_extras(report: EpsilonReport, *, if_poisson: float, lower: ShuffleLower) -> EpsilonReport:
    """``report`` with the shuffled-run figures attached."""
    extra: dict[str, Any] = {"epsilon_if_poisson": float(if_poisson), "epsilon_lower": lower.epsilon}
    return report.with_extra(extra, (SHUFFLE_NOTE, *lower.notes))


def add_run_extras(accountant: Any, run: DpSgdRun, delta: float, report: EpsilonReport) -> EpsilonReport:
    """``report`` (made by ``accountant`` for ``run``) with the run-level figures: for a
    shuffled run, the accountant's own Poisson figure and the lower bound; unchanged for a
    Poisson run. ``accountant.epsilon`` must accept ``extras=False``."""
    if run.batching != "shuffle":
        return report
    if_poisson = accountant.epsilon(run.with_batching("poisson"), delta, extras=False).epsilon
    return with_shuffle_extras(report, if_poisson=if_poisson, lower=shuffle_lower(run, delta))
