"""Result values and the accountant interface shared by every accountant."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from dpaudit.accounting.events import DpSgdRun


@dataclass(frozen=True)
class EpsilonReport:
    """What an accountant says about a run at one delta.

    Attributes:
        accountant: accountant name (``rdp``, ``ma``, ``cdp``, ``yu2019``, ``pld``).
        batching: the run's batching (``poisson`` or ``shuffle``).
        relation: neighbouring relation the figure holds under.
        epsilon: an upper bound on the run's epsilon at ``delta`` (``sound`` says whether it
            is a proven bound; ``inf`` when no finite bound exists).
        delta: the delta the epsilon holds for.
        steps: number of noisy releases of the training run.
        parameter: the optimal order (RDP/MA: alpha or lambda; CDP: the order used),
            ``None`` when not applicable.
        sound: ``False`` only for heuristics kept for comparison (``yu2019`` when it
            under-reports).
        method: short description of the bound (e.g. ``"RDP, Balle et al. 2020 Thm 21"``).
        notes: human-readable caveats (fallbacks taken, validity limits hit).
        extra: further figures, e.g. ``epsilon_lower`` and ``epsilon_if_poisson`` for
            shuffled batching.
    """

    accountant: str
    batching: str
    relation: str
    epsilon: float
    delta: float
    steps: int
    parameter: float | None = None
    sound: bool = True
    method: str = ""
    notes: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def for_run(cls, run: DpSgdRun, accountant: str, epsilon: float, delta: float,
                **fields: Any) -> EpsilonReport:
        """A report on ``run``: batching, relation and steps are taken from the run; the
        other fields (``parameter``, ``sound``, ``method``, ``notes``, ``extra``) as given."""
        return cls(accountant=accountant, batching=run.batching, relation=run.relation,
                   epsilon=epsilon, delta=delta, steps=run.total_steps, **fields)

    def with_extra(self, extra: dict[str, Any], notes: tuple[str, ...] = ()) -> EpsilonReport:
        """The same report with further ``extra`` figures and ``notes`` appended."""
        return dataclasses.replace(self, extra={**self.extra, **extra}, notes=self.notes + notes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["notes"] = list(self.notes)
        extra = d.pop("extra")
        d.update(extra)
        return d


#: Progress callback of long computations: ``progress(stage, done, total)``, ``total`` is
#: ``None`` when unknown (e.g. a search). Stages are short phrases ("noise search", ...).
ProgressFn = Callable[[str, int, "int | None"], None]


class Accountant(Protocol):
    """An accountant interprets a :class:`DpSgdRun` under its own batching.

    Implementations are stateless; ``epsilon`` returns an upper bound at ``delta`` and
    ``delta`` the smallest delta it can certify for ``epsilon``.
    """

    name: str

    def epsilon(self, run: DpSgdRun, delta: float) -> EpsilonReport: ...

    def delta(self, run: DpSgdRun, epsilon: float) -> float: ...


class RegisteredAccountant(Accountant, Protocol):
    """What every accountant in :data:`dpaudit.accounting.ACCOUNTANTS` also offers:
    ``extras=False`` skips the run-level figures of shuffled runs (callers that account one
    run several times attach them once, :mod:`dpaudit.accounting.extras`), and
    ``epsilon_curve`` gives the cumulative epsilon after the given epochs (1-based; default
    every epoch), telling ``progress(done, total)`` about each point when it is costly."""

    def epsilon(self, run: DpSgdRun, delta: float, *, extras: bool = True) -> EpsilonReport: ...

    def epsilon_curve(
        self,
        run: DpSgdRun,
        delta: float,
        epochs: Sequence[int] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[float]: ...
