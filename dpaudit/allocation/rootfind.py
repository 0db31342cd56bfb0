"""One-dimensional search for the noise scale that spends a target epsilon.

Problem: epsilon(s) is non-increasing in the scale s > 0 (more noise never costs more
privacy). Find s with ``target - tol <= epsilon(s) <= target``, with as few evaluations of
epsilon as possible (a tight accountant evaluation costs milliseconds to a second).

Method: work on y = log epsilon against x = log s, where the curve is close to a straight
line (epsilon ~ c / sigma for moderate noise; Abadi et al. 2016, Thm 1). Until the target
is bracketed, extrapolate with the latest slope (steps limited to a factor 4 in s). Once one
point above and one below the window are known, interpolate through the latest points
(inverse quadratic, else secant) and keep the step only if it lies strictly inside the
bracket and the bracket has at least halved over the last two steps -- otherwise bisect in
x. This is the safeguarding of Brent's method (Brent 1973, "Algorithms for Minimization
without Derivatives", Ch. 4), so the search never does worse than bisection.

Soundness does not rest on the search: a point is accepted only by its own evaluation, and
the caller re-uses that exact evaluation as the plan's epsilon.

Written with ``math`` only (scipy.optimize costs ~1 s to import, see docs/architecture.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dpaudit.errors import InvalidParameterError, OutOfValidityError

#: Largest expansion of s per unbracketed step (factor, as log).
_MAX_STEP = math.log(4.0)
#: Slope of log eps vs log s assumed before two points are known (eps ~ 1/sigma).
DEFAULT_SLOPE = -1.0


@dataclass(frozen=True)
class Evaluation:
    """One evaluation: scale ``s``, epsilon (``inf`` if the accountant refused), payload."""

    s: float
    epsilon: float
    payload: Any = None


@dataclass(frozen=True)
class SearchResult:
    """The accepted evaluation (or the best feasible one) and the search trace."""

    best: Evaluation
    hit_window: bool
    evaluations: tuple[Evaluation, ...]


def _interpolate(pts: list[tuple[float, float]], aim: float) -> float:
    """x where the curve through ``pts`` (x, y) reaches y = aim: inverse quadratic
    interpolation on three points (Brent 1973, Ch. 4), else the secant on two; nan if
    degenerate."""
    if len(pts) >= 3:
        (x0, y0), (x1, y1), (x2, y2) = pts[-3:]
        if y0 != y1 and y1 != y2 and y0 != y2:
            return (
                x0 * (aim - y1) * (aim - y2) / ((y0 - y1) * (y0 - y2))
                + x1 * (aim - y0) * (aim - y2) / ((y1 - y0) * (y1 - y2))
                + x2 * (aim - y0) * (aim - y1) / ((y2 - y0) * (y2 - y1))
            )
    if len(pts) >= 2:
        (x0, y0), (x1, y1) = pts[-2:]
        if y0 != y1 and x0 != x1:
            return x1 + (aim - y1) * (x1 - x0) / (y1 - y0)
    return math.nan


class _Search:
    """State of one :func:`find_scale` search (evaluations in log s, bracket, refusals)."""

    def __init__(self, evaluate: Callable[[float], tuple[float, Any]], target: float, tol: float,
                 slope: float, s_min: float, s_max: float) -> None:
        self.evaluate = evaluate
        self.target = target
        self.lo_win = target - tol
        self.slope = slope
        self.s_min, self.s_max = s_min, s_max
        self.x_min, self.x_max = math.log(s_min), math.log(s_max)
        self.aim = math.log(target - 0.2 * tol)
        self.trace: list[Evaluation] = []
        self.cache: dict[float, Evaluation] = {}
        self.refusals: dict[float, OutOfValidityError] = {}
        self.hi: Evaluation | None = None  # smallest-s point known to spend too little
        self.lo: Evaluation | None = None  # largest-s point known to spend too much
        self.widths: list[float] = []  # bracket width (in log s) after each bracketed step

    def ev(self, x: float) -> Evaluation:
        s = math.exp(x)
        if s in self.cache:
            return self.cache[s]
        try:
            eps, payload = self.evaluate(s)
        except OutOfValidityError as exc:
            eps, payload = math.inf, None
            self.refusals[s] = exc
        eps = float(eps)
        if math.isnan(eps):
            eps = math.inf
        e = Evaluation(s, eps, payload)
        self.cache[s] = e
        self.trace.append(e)
        return e

    def accepted(self, e: Evaluation) -> bool:
        return self.lo_win <= e.epsilon <= self.target

    def record(self, e: Evaluation) -> None:
        """Update the bracket with ``e``."""
        if e.epsilon > self.target:
            if self.lo is None or e.s > self.lo.s:
                self.lo = e
        elif self.hi is None or e.s < self.hi.s:
            self.hi = e

    def recent_points(self) -> list[tuple[float, float]]:
        pts = [(math.log(t.s), _logeps(t)) for t in self.trace[-3:]]
        return [p for p in pts if math.isfinite(p[1])]

    def bracketed_step(self, lo: Evaluation, hi: Evaluation) -> float | None:
        """Next x inside the bracket (Brent-style safeguard), or ``None`` once it has
        shrunk to relative width 1e-12."""
        xa, xb = math.log(lo.s), math.log(hi.s)
        width = xb - xa
        self.widths.append(width)
        if width <= 1e-12 * max(1.0, abs(xa)):
            return None
        xn = _interpolate(self.recent_points(), self.aim)
        # Interpolate only inside the bracket, and only while the bracket halves at least
        # every two steps; otherwise bisect (in log s).
        stalled = len(self.widths) >= 3 and width > 0.5 * self.widths[-3]
        if stalled or not (xa < xn < xb):
            xn = 0.5 * (xa + xb)
        margin = 1e-6 * width
        return min(max(xn, xa + margin), xb - margin)

    def extrapolate_step(self, e: Evaluation) -> float:
        """Not bracketed yet: extrapolate (last two points' slope, else ``slope``), with
        bounded steps, toward the side that must hold the root; raise when the range
        [s_min, s_max] cannot hold it."""
        pts = self.recent_points()
        xc, yc = math.log(e.s), _logeps(e)
        xn = _interpolate(pts[-2:], self.aim) if len(pts) >= 2 else math.nan
        if not math.isfinite(xn):
            if math.isfinite(yc):
                xn = xc + (self.aim - yc) / self.slope
            else:
                xn = xc + (_MAX_STEP if e.epsilon > 0 else -_MAX_STEP)
        up = e.epsilon > self.target  # need more noise
        step = xn - xc
        if (step <= 0) if up else (step >= 0):
            step = _MAX_STEP if up else -_MAX_STEP
        step = max(-_MAX_STEP, min(_MAX_STEP, step))
        xn = min(max(xc + step, self.x_min), self.x_max)
        if xn == xc:
            self.infeasible(e, up)
        return xn

    def infeasible(self, e: Evaluation, up: bool) -> None:
        if e.s in self.refusals:
            raise OutOfValidityError(
                f"cannot plan: the accountant refuses even at noise scale {e.s:g}: "
                f"{self.refusals[e.s]}"
            )
        if up:
            raise InvalidParameterError(
                f"target epsilon {self.target:g} is too small: even noise scale {self.s_max:g} "
                f"spends {e.epsilon:.4g}"
            )
        raise InvalidParameterError(
            f"target epsilon {self.target:g} is too large: even noise scale {self.s_min:g} "
            f"spends only {e.epsilon:.4g}"
        )


def _logeps(e: Evaluation) -> float:
    return math.log(e.epsilon) if 0 < e.epsilon < math.inf else math.nan


def find_scale(
    evaluate: Callable[[float], tuple[float, Any]],
    target: float,
    tol: float,
    guess: float,
    *,
    slope: float = DEFAULT_SLOPE,
    s_min: float = 1e-2,
    s_max: float = 1e4,
    max_evals: int = 60,
) -> SearchResult:
    """Find s in [s_min, s_max] with ``target - tol <= eps(s) <= target``.

    Args:
        evaluate: s -> (epsilon, payload); epsilon must be non-increasing in s. An
            :class:`OutOfValidityError` is read as "epsilon unknown, treat as infinite"
            (the point is never accepted).
        target: epsilon to spend (> 0). tol: width of the acceptance window (> 0).
        guess: first s to try. slope: guess for d log eps / d log s (< 0).

    Returns the accepted evaluation; if the window cannot be hit (epsilon jumps over it, e.g.
    a discretised accountant), the feasible evaluation with the largest epsilon after the
    bracket has shrunk to relative width 1e-12, with ``hit_window=False``.

    Raises:
        OutOfValidityError: the accountant refuses (out of its validity) at the largest
            noise scale, so no sound plan can be made with it.
        InvalidParameterError: the target is infeasible within [s_min, s_max] (too small:
            even s_max spends more; too large: even s_min spends less than target - tol).
    """
    st = _Search(evaluate, target, tol, slope, s_min, s_max)
    e = st.ev(min(max(math.log(guess), st.x_min), st.x_max))
    for _ in range(4 * max_evals):  # each pass evaluates a new point; bound is insurance
        if st.accepted(e):
            return SearchResult(e, True, tuple(st.trace))
        st.record(e)
        if len(st.trace) >= max_evals:
            break
        if st.lo is not None and st.hi is not None:
            xn = st.bracketed_step(st.lo, st.hi)
            if xn is None:
                break
        else:
            xn = st.extrapolate_step(e)
        e = st.ev(xn)
    if st.accepted(e):
        return SearchResult(e, True, tuple(st.trace))
    feasible = [t for t in st.trace if t.epsilon <= target]
    if not feasible:
        raise InvalidParameterError(
            f"could not find a noise scale spending at most epsilon={target:g}"
        )
    best = max(feasible, key=lambda t: (t.epsilon, -t.s))
    return SearchResult(best, False, tuple(st.trace))
