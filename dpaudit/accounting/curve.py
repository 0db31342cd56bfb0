"""Cumulative epsilon after each epoch -- the one implementation every caller uses
(``dpaudit plan``'s per-epoch column, the plot of ``dpaudit compare``, the allocator).

A curve over many epochs is evaluated at most at :data:`CURVE_POINTS` checkpoint epochs
(every epoch when there are fewer); an epoch between two checkpoints is given the value of
the next checkpoint. That is an upper bound: the true cumulative epsilon never decreases
with more releases (composition), and the checkpoint's figure bounds it there. It keeps the
cost linear in the number of epochs for the tight accountant (one inverse FFT per point).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from dpaudit.accounting.base import ProgressFn
from dpaudit.accounting.events import DpSgdRun

#: Most points at which a cumulative curve is evaluated.
CURVE_POINTS = 128


def curve_epochs(epochs: int, max_points: int = CURVE_POINTS) -> tuple[int, ...]:
    """Checkpoint epochs (1-based, increasing, ending at ``epochs``): every epoch up to
    ``max_points`` of them, else ``max_points`` evenly spaced ones."""
    if epochs <= max_points:
        return tuple(range(1, epochs + 1))
    return tuple(sorted({math.ceil(i * epochs / max_points) for i in range(1, max_points + 1)}))


def expand_curve(points: Sequence[int], values: Sequence[float], epochs: int) -> tuple[float, ...]:
    """Per-epoch values from checkpoint values: epoch k gets the value of the first
    checkpoint >= k (an upper bound, see the module docstring)."""
    out: list[float] = []
    j = 0
    for k in range(1, epochs + 1):
        while points[j] < k:
            j += 1
        out.append(float(values[j]))
    return tuple(out)


def epsilon_curve(
    accountant: Any,
    run: DpSgdRun,
    delta: float,
    *,
    max_points: int = CURVE_POINTS,
    progress: ProgressFn | None = None,
) -> tuple[float, ...]:
    """Cumulative epsilon after each epoch of ``run`` at ``delta`` (one value per epoch).

    ``accountant`` is a registry name or an accountant object. Built-in accountants compose
    incrementally (their ``epsilon_curve(run, delta, epochs=..., progress=...)``); any other
    object is evaluated once per checkpoint on ``run.truncate(e)``. ``progress(stage, done,
    total)`` is told about each checkpoint of the costly ones.
    """
    if isinstance(accountant, str):
        from dpaudit.accounting import get_accountant

        accountant = get_accountant(accountant)
    points = curve_epochs(run.epochs, max_points)
    stage = "cumulative epsilon"
    fn = getattr(accountant, "epsilon_curve", None)
    if fn is not None:
        def tick(done: int, total: int) -> None:
            if progress is not None:
                progress(stage, done, total)

        values = fn(run, delta, epochs=points, progress=tick)
        tick(len(points), len(points))  # fast accountants report no intermediate points
    else:
        values = []
        for i, e in enumerate(points):
            values.append(accountant.epsilon(run.truncate(e), delta).epsilon)
            if progress is not None:
                progress(stage, i + 1, len(points))
    return expand_curve(points, values, run.epochs)
