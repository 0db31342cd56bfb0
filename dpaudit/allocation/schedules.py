"""Per-epoch noise schedules: the *shape* of sigma_t over epochs t = 0..E-1.

Every schedule is scale-free: ``sigmas(scale, E)`` returns ``scale * shape_t`` with
``shape_0 = 1``, so ``scale`` is sigma_0 and the solver (:mod:`dpaudit.allocation.solver`)
has exactly one free parameter to tune. Because every sound accountant's epsilon is
non-increasing in each sigma_t (a Gaussian release with more noise is a post-processing of
one with less), epsilon is non-increasing in ``scale`` for every schedule here, which is what
makes a one-dimensional root search sound.

The decaying families are those of Yu, Liu, Pu, Gursoy, Truex, "Differentially Private Model
Publishing for Deep Learning", IEEE S&P 2019, Sec. V-B ("dynamic privacy budget
allocation"), written here for the noise multiplier sigma (their schedules decay the noise
scale as training progresses so that later, finer updates are less noisy):

* constant:     sigma_t = sigma_0
* time:         sigma_t = sigma_0 / (1 + k t)                              (time-based decay)
* exp:          sigma_t = sigma_0 * exp(-k t)                               (exponential decay)
* step:         sigma_t = sigma_0 * k ** floor(t / period)                  (step decay)
* poly:         sigma_t = (sigma_0 - sigma_end) (1 - min(t, p)/p) ** power + sigma_end,
                with sigma_end = end_ratio * sigma_0                        (polynomial decay)
* validation:   start at sigma_0, multiply by ``factor`` when validation accuracy has not
                improved for ``patience`` epochs, never below ``min_ratio * sigma_0``
                (Yu et al. Sec. V-B, "validation-based decay"). The planned (worst-case)
                schedule decays at every opportunity: sigma_t = max(sigma_0 * factor **
                floor(t / patience), min_ratio * sigma_0); see :mod:`dpaudit.allocation.rule`.

Units: sigma is the noise multiplier (noise std / clipping norm C), dimensionless; t counts
epochs from 0. This module imports only the standard library.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

from dpaudit.errors import InvalidParameterError


def _num(name: str, value: Any, *, lo: float | None = None, hi: float | None = None,
         lo_open: bool = False, hi_open: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidParameterError(f"schedule parameter {name} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise InvalidParameterError(f"schedule parameter {name} must be finite, got {value!r}")
    if lo is not None and (v < lo or (lo_open and v == lo)):
        op = ">" if lo_open else ">="
        raise InvalidParameterError(f"schedule parameter {name} must be {op} {lo:g}, got {v:g}")
    if hi is not None and (v > hi or (hi_open and v == hi)):
        op = "<" if hi_open else "<="
        raise InvalidParameterError(f"schedule parameter {name} must be {op} {hi:g}, got {v:g}")
    return v


def _int(name: str, value: Any, *, lo: int = 1) -> int:
    v = _num(name, value)
    if int(v) != v or v < lo:
        raise InvalidParameterError(f"schedule parameter {name} must be an integer >= {lo}, got {value!r}")
    return int(v)


@dataclass(frozen=True)
class Schedule:
    """Base class: a named, scale-free noise schedule (subclasses add parameters)."""

    name: ClassVar[str] = ""

    def shape(self, epochs: int) -> tuple[float, ...]:
        """Relative noise sigma_t / sigma_0 for t = 0..epochs-1 (first entry 1, all > 0)."""
        raise NotImplementedError

    def sigmas(self, scale: float, epochs: int) -> tuple[float, ...]:
        """Per-epoch noise multipliers ``scale * shape_t``."""
        return tuple(scale * s for s in self.shape(epochs))

    def params(self) -> dict[str, Any]:
        """The schedule's parameters (JSON-able); ``from_dict`` inverts ``to_dict``."""
        return asdict(self)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "params": self.params()}

    def describe(self) -> str:
        """One-line formula with parameters, for tables."""
        raise NotImplementedError


@dataclass(frozen=True)
class Constant(Schedule):
    """sigma_t = sigma_0 (the usual DP-SGD setting, Abadi et al. 2016)."""

    name: ClassVar[str] = "constant"

    def shape(self, epochs: int) -> tuple[float, ...]:
        return (1.0,) * epochs

    def describe(self) -> str:
        return "sigma_t = sigma_0"


@dataclass(frozen=True)
class TimeDecay(Schedule):
    """Time-based decay sigma_t = sigma_0 / (1 + k t), k >= 0 (Yu et al. 2019, Sec. V-B)."""

    name: ClassVar[str] = "time"
    k: float = 0.05

    def __post_init__(self) -> None:
        object.__setattr__(self, "k", _num("k", self.k, lo=0.0))

    def shape(self, epochs: int) -> tuple[float, ...]:
        return tuple(1.0 / (1.0 + self.k * t) for t in range(epochs))

    def describe(self) -> str:
        return f"sigma_0/(1+{self.k:g}t)"


@dataclass(frozen=True)
class ExpDecay(Schedule):
    """Exponential decay sigma_t = sigma_0 exp(-k t), 0 <= k <= 10 (Yu et al. 2019, Sec. V-B)."""

    name: ClassVar[str] = "exp"
    k: float = 0.03

    def __post_init__(self) -> None:
        object.__setattr__(self, "k", _num("k", self.k, lo=0.0, hi=10.0))

    def shape(self, epochs: int) -> tuple[float, ...]:
        return tuple(math.exp(-self.k * t) for t in range(epochs))

    def describe(self) -> str:
        return f"sigma_0*exp(-{self.k:g}t)"


@dataclass(frozen=True)
class StepDecay(Schedule):
    """Step decay sigma_t = sigma_0 k^floor(t/period), 0 < k <= 1 (Yu et al. 2019, Sec. V-B)."""

    name: ClassVar[str] = "step"
    k: float = 0.7
    period: int = 10

    def __post_init__(self) -> None:
        object.__setattr__(self, "k", _num("k", self.k, lo=0.0, hi=1.0, lo_open=True))
        object.__setattr__(self, "period", _int("period", self.period))

    def shape(self, epochs: int) -> tuple[float, ...]:
        return tuple(self.k ** (t // self.period) for t in range(epochs))

    def describe(self) -> str:
        return f"sigma_0*{self.k:g}^floor(t/{self.period})"


@dataclass(frozen=True)
class PolyDecay(Schedule):
    """Polynomial decay (Yu et al. 2019, Sec. V-B):
    sigma_t = (sigma_0 - sigma_end) (1 - min(t, p)/p)^power + sigma_end, sigma_end =
    end_ratio * sigma_0 with 0 < end_ratio <= 1. ``period`` p defaults to E - 1, so the last
    epoch runs at sigma_end; after p epochs the noise stays at sigma_end.
    """

    name: ClassVar[str] = "poly"
    end_ratio: float = 0.5
    power: float = 1.0
    period: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "end_ratio", _num("end_ratio", self.end_ratio, lo=0.0, hi=1.0, lo_open=True))
        object.__setattr__(self, "power", _num("power", self.power, lo=0.0, lo_open=True, hi=100.0))
        if self.period is not None:
            object.__setattr__(self, "period", _int("period", self.period))

    def shape(self, epochs: int) -> tuple[float, ...]:
        p = self.period if self.period is not None else max(1, epochs - 1)
        r = self.end_ratio
        return tuple((1.0 - r) * (1.0 - min(t, p) / p) ** self.power + r for t in range(epochs))

    def describe(self) -> str:
        p = "(E-1)" if self.period is None else str(self.period)
        r = self.end_ratio
        return f"sigma_0*({1 - r:g}(1-t/{p})^{self.power:g}+{r:g})"


@dataclass(frozen=True)
class ValidationDecay(Schedule):
    """Validation-based decay (Yu et al. 2019, Sec. V-B), planned at its worst case.

    At run time sigma starts at sigma_0 and is multiplied by ``factor`` (0 < factor <= 1)
    whenever validation accuracy has not improved for ``patience`` consecutive epochs, never
    going below ``min_ratio * sigma_0``. A decay needs ``patience`` epochs since the last one,
    so at most floor(t/patience) decays precede epoch t: the worst case
    sigma_t = max(sigma_0 factor^floor(t/patience), min_ratio sigma_0) is elementwise <= every
    runtime trajectory, and (epsilon being non-increasing in each sigma_t) spends at least as
    much as any of them. ``shape`` is that worst case; the best case is the constant sigma_0.
    """

    name: ClassVar[str] = "validation"
    factor: float = 0.9
    patience: int = 3
    min_ratio: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "factor", _num("factor", self.factor, lo=0.0, hi=1.0, lo_open=True))
        object.__setattr__(self, "patience", _int("patience", self.patience))
        object.__setattr__(self, "min_ratio", _num("min_ratio", self.min_ratio, lo=0.0, hi=1.0, lo_open=True))

    def shape(self, epochs: int) -> tuple[float, ...]:
        return tuple(max(self.factor ** (t // self.patience), self.min_ratio) for t in range(epochs))

    def best_shape(self, epochs: int) -> tuple[float, ...]:
        """Best case (validation accuracy never stalls): no decay."""
        return (1.0,) * epochs

    def describe(self) -> str:
        return f"x{self.factor:g} after {self.patience} stalled epochs, >= {self.min_ratio:g} sigma_0"


#: schedule name -> class, in display order.
SCHEDULES: dict[str, type[Schedule]] = {
    cls.name: cls for cls in (Constant, TimeDecay, ExpDecay, StepDecay, PolyDecay, ValidationDecay)
}


def make_schedule(name: str, **params: Any) -> Schedule:
    """Build the schedule ``name`` from keyword parameters (``None`` values take defaults)."""
    try:
        cls = SCHEDULES[name]
    except KeyError:
        raise InvalidParameterError(
            f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}"
        ) from None
    names = [f.name for f in fields(cls)]
    unknown = [k for k, v in params.items() if v is not None and k not in names]
    if unknown:
        raise InvalidParameterError(
            f"schedule {name!r} takes no parameter {', '.join(sorted(unknown))}"
            f" (it takes: {', '.join(names) or 'none'})"
        )
    return cls(**{k: v for k, v in params.items() if v is not None})


def schedule_from_dict(d: Any) -> Schedule:
    """Inverse of :meth:`Schedule.to_dict`."""
    if not isinstance(d, dict) or "name" not in d:
        raise InvalidParameterError("schedule must be an object with a 'name'")
    params = d.get("params") or {}
    if not isinstance(params, dict):
        raise InvalidParameterError("schedule 'params' must be an object")
    return make_schedule(str(d["name"]), **params)
