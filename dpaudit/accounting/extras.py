"""Run-level figures reported beside an accountant's epsilon, computed once per run.

For a *shuffled* or *balls-in-bins* run every report carries

* ``epsilon_if_poisson``: the same accountant on ``run.with_batching("poisson")``. For a
  shuffled run it is the figure often (wrongly) quoted for shuffled training and NOT a valid
  bound; for a balls-in-bins run it is shown for comparison (the random-allocation figure is
  as small or smaller in the usual regimes);
* ``epsilon_lower``: a proven lower bound on the run's true epsilon (shuffle: Chua et al.
  2024, :mod:`dpaudit.accounting.shuffle`; balls-in-bins:
  :mod:`dpaudit.accounting.balls_in_bins`), or ``None`` where no non-trivial bound was
  obtained (a note says why; a numerical 0 is never reported as a finding).

The lower bound does not depend on the accountant, so callers that account one run with
several accountants (:mod:`dpaudit.accounting.report`) compute it once with
:func:`run_lower` and attach it with :func:`with_run_extras`; an accountant asked for a
single report does both through :func:`add_run_extras`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dpaudit.accounting.base import EpsilonReport
from dpaudit.accounting.events import DpSgdRun

#: Batchings whose reports carry ``epsilon_if_poisson`` and ``epsilon_lower``.
EXTRA_BATCHINGS: tuple[str, ...] = ("shuffle", "balls_in_bins")

SHUFFLE_NOTE = (
    "shuffled batching: epsilon uses the sound per-epoch Gaussian view (no amplification "
    "claimed); epsilon_if_poisson is NOT a valid bound for this run; balls_in_bins batching "
    "(every example once per epoch, in a uniformly random batch) keeps fixed epochs with "
    "Poisson-level privacy (docs/accounting.md)"
)
BALLS_IN_BINS_NOTE = (
    "balls_in_bins batching: each epoch is one random allocation (one participation among "
    "t = ceil(N/B) steps; batch sizes hidden, t public); epsilon_if_poisson is for comparison"
)
#: Note of the accountants that have no random-allocation analysis (all but ``pld``).
NO_ALLOCATION_NOTE = (
    "this accountant has no random-allocation analysis: the figure is the no-amplification "
    "bound (one Gaussian per epoch); the pld accountant composes the random-allocation PLD"
)
REPLACE_ONE_NOTE = (
    "replace_one: both worlds hold a record in a random batch (a mixture against a mixture); "
    "no amplification is claimed, the figure is one Gaussian per epoch with sensitivity 2C"
)


@dataclass(frozen=True)
class RunLower:
    """The lower bound of a run at one delta: ``epsilon`` (``None`` when no non-trivial
    bound was obtained) and notes."""

    epsilon: float | None
    notes: tuple[str, ...] = ()


#: Former name (shuffled runs only had a lower bound).
ShuffleLower = RunLower

_LOWER_NAME = {"shuffle": "Chua et al. construction", "balls_in_bins": "balls-in-bins construction"}


def run_lower(run: DpSgdRun, delta: float) -> RunLower | None:
    """The proven lower bound of a shuffled or balls-in-bins run for reports (``None`` for a
    Poisson run)."""
    if run.batching == "shuffle":
        from dpaudit.accounting.shuffle import lower_bound
    elif run.batching == "balls_in_bins":
        from dpaudit.accounting.balls_in_bins import lower_bound
    else:
        return None
    lb = lower_bound(run, delta)
    if lb.epsilon > 0.0:
        return RunLower(lb.epsilon, lb.notes)
    why = lb.notes or (f"the {_LOWER_NAME[run.batching]} gives only the trivial bound 0 here",)
    return RunLower(None, ("epsilon_lower: no non-trivial lower bound; " + "; ".join(why),))


def shuffle_lower(run: DpSgdRun, delta: float) -> RunLower:
    """The Chua et al. lower bound of a shuffled ``run`` (:func:`run_lower`)."""
    out = run_lower(run, delta)
    return out if out is not None else RunLower(None, ("epsilon_lower: not a shuffled run",))


def batching_notes(run: DpSgdRun, accountant: str) -> tuple[str, ...]:
    """Notes every report on ``run`` by ``accountant`` carries for its batching."""
    if run.batching == "shuffle":
        return (SHUFFLE_NOTE,)
    if run.batching != "balls_in_bins":
        return ()
    if not run.allocation_applies:
        return (BALLS_IN_BINS_NOTE, REPLACE_ONE_NOTE)
    if accountant != "pld":
        return (BALLS_IN_BINS_NOTE, NO_ALLOCATION_NOTE)
    return (BALLS_IN_BINS_NOTE,)


def with_run_extras(report: EpsilonReport, run: DpSgdRun, *, if_poisson: float,
                    lower: RunLower) -> EpsilonReport:
    """``report`` with the run-level figures of a shuffled or balls-in-bins run attached."""
    extra: dict[str, Any] = {"epsilon_if_poisson": float(if_poisson), "epsilon_lower": lower.epsilon}
    return report.with_extra(extra, (*batching_notes(run, report.accountant), *lower.notes))


def with_shuffle_extras(report: EpsilonReport, *, if_poisson: float, lower: RunLower) -> EpsilonReport:
    """``report`` with the shuffled-run figures attached (former interface)."""
    extra: dict[str, Any] = {"epsilon_if_poisson": float(if_poisson), "epsilon_lower": lower.epsilon}
    return report.with_extra(extra, (SHUFFLE_NOTE, *lower.notes))


def add_run_extras(accountant: Any, run: DpSgdRun, delta: float, report: EpsilonReport) -> EpsilonReport:
    """``report`` (made by ``accountant`` for ``run``) with the run-level figures: for a
    shuffled or balls-in-bins run, the accountant's own Poisson figure and the lower bound;
    unchanged for a Poisson run. ``accountant.epsilon`` must accept ``extras=False``."""
    lower = run_lower(run, delta)
    if lower is None:
        return report
    if_poisson = accountant.epsilon(run.with_batching("poisson"), delta, extras=False).epsilon
    return with_run_extras(report, run, if_poisson=if_poisson, lower=lower)
