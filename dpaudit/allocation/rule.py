"""The runtime rule of the validation-based schedule (Yu et al. 2019, S&P, Sec. V-B).

The trainer cannot know in advance when validation accuracy will stall, so the plan fixes a
*rule* and accounts for its worst case. :class:`ValidationRule` is that rule as a value: given
the validation accuracies observed after epochs 0..t-1 it returns sigma_t. The rule only ever
lowers sigma by ``factor`` after ``patience`` epochs without improvement, never below
``min_sigma``, and every sigma it returns is clamped to at least the planned worst case
``worst_case[t]``; since epsilon is non-increasing in each sigma_t, any run following the rule
spends at most the plan's (worst-case) epsilon. This holds under adaptive choice: each
epoch's mechanism is dominated by the fixed worst-case one, and adaptive composition of
dominated mechanisms is dominated by the composition of the dominating ones (RDP: Mironov
2017, Prop. 1; PLD/dominating pairs: Zhu, Dong, Wang 2022, AISTATS, Thm 10).

Assumption: validation accuracy is measured on data *outside* the private training set (a
public or held-out split). Validation queries on private data would be further releases and
must be accounted separately (e.g. as ``DpSgdRun.extra_segments``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dpaudit.errors import InvalidParameterError


@dataclass(frozen=True)
class ValidationRule:
    """Decay-on-plateau rule with absolute noise levels, as solved by the planner.

    Attributes:
        initial_sigma: sigma_0 (noise multiplier of epoch 0).
        factor: multiplier (0 < factor <= 1) applied when validation accuracy stalls.
        patience: number of consecutive epochs without improvement that triggers a decay.
        min_sigma: floor for sigma.
        min_improvement: an accuracy counts as an improvement only if it beats the best so
            far by more than this (accuracy units, e.g. 0.001 = 0.1 percentage point).
        worst_case: the planned per-epoch sigma (decay at every opportunity); the rule never
            returns less than ``worst_case[t]``.
    """

    initial_sigma: float
    factor: float
    patience: int
    min_sigma: float
    worst_case: tuple[float, ...]
    min_improvement: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "worst_case", tuple(float(s) for s in self.worst_case))
        if not (self.initial_sigma > 0 and math.isfinite(self.initial_sigma)):
            raise InvalidParameterError("runtime rule: initial_sigma must be positive and finite")
        if not 0.0 < self.factor <= 1.0:
            raise InvalidParameterError("runtime rule: factor must be in (0, 1]")
        if int(self.patience) != self.patience or self.patience < 1:
            raise InvalidParameterError("runtime rule: patience must be an integer >= 1")
        if not self.min_sigma > 0 or not self.worst_case or min(self.worst_case) <= 0:
            raise InvalidParameterError("runtime rule: noise levels must be positive")

    @property
    def epochs(self) -> int:
        return len(self.worst_case)

    def sigmas(self, accuracies: Sequence[float]) -> tuple[float, ...]:
        """Noise multipliers for epochs 0..len(accuracies) given validation accuracies
        ``accuracies[i]`` measured after epoch i (so one more sigma than accuracies, capped
        at the planned number of epochs)."""
        if len(accuracies) >= self.epochs:
            raise InvalidParameterError(
                f"the plan has {self.epochs} epochs; got {len(accuracies)} validation results"
            )
        sigma = self.initial_sigma
        out = [max(sigma, self.worst_case[0])]
        best = -math.inf
        stalled = 0
        for t, acc in enumerate(accuracies):
            a = float(acc)
            if math.isnan(a):
                raise InvalidParameterError("validation accuracy must be a number, got nan")
            if a > best + self.min_improvement:
                best, stalled = a, 0
            else:
                stalled += 1
            if stalled >= self.patience:
                sigma = max(sigma * self.factor, self.min_sigma)
                stalled = 0
            out.append(max(sigma, self.worst_case[t + 1]))
        return tuple(out)

    def next_sigma(self, accuracies: Sequence[float]) -> float:
        """sigma for the next epoch (index ``len(accuracies)``)."""
        return self.sigmas(accuracies)[-1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "validation_decay",
            "initial_sigma": self.initial_sigma,
            "factor": self.factor,
            "patience": self.patience,
            "min_sigma": self.min_sigma,
            "min_improvement": self.min_improvement,
            "worst_case": list(self.worst_case),
        }

    @classmethod
    def from_dict(cls, d: Any) -> ValidationRule:
        if not isinstance(d, dict):
            raise InvalidParameterError("runtime_rule must be an object")
        try:
            return cls(
                initial_sigma=float(d["initial_sigma"]),
                factor=float(d["factor"]),
                patience=int(d["patience"]),
                min_sigma=float(d["min_sigma"]),
                min_improvement=float(d.get("min_improvement", 0.0)),
                worst_case=tuple(float(s) for s in d["worst_case"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, InvalidParameterError):
                raise
            raise InvalidParameterError(f"not a valid runtime rule: {exc}") from None
