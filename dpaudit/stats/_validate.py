"""Argument checks shared by the statistics modules (one readable error each)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from dpaudit.errors import InvalidParameterError


def check_confidence(confidence: float) -> float:
    c = float(confidence)
    if not (0.0 < c < 1.0) or not math.isfinite(c):
        raise InvalidParameterError(f"confidence must be in (0, 1), got {confidence!r}")
    return c


def check_delta(delta: float) -> float:
    d = float(delta)
    if not (0.0 <= d < 1.0) or not math.isfinite(d):
        raise InvalidParameterError(f"delta must be in [0, 1), got {delta!r}")
    return d


def check_epsilon(epsilon: float) -> float:
    e = float(epsilon)
    if not e >= 0.0 or math.isnan(e):
        raise InvalidParameterError(f"epsilon must be >= 0, got {epsilon!r}")
    return e


def check_scores(scores: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(scores, dtype=np.float64).ravel()
    if arr.size == 0:
        raise InvalidParameterError(f"{name} is empty")
    if not np.all(np.isfinite(arr)):
        raise InvalidParameterError(f"{name} contains NaN or infinite scores")
    return arr

