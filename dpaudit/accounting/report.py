"""Side-by-side accounting of one run: what ``dpaudit account`` and ``dpaudit compare`` print.

Library users get the same figures as the CLI::

    from dpaudit.accounting.report import account_run, compare_run
    account_run(run, 1e-5, "all")["results"]

Pure Python/numpy; never imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from dpaudit.accounting import ACCOUNTANTS, SOUND_ACCOUNTANTS, TIGHTEST, get_accountant
from dpaudit.accounting.curve import epsilon_curve
from dpaudit.accounting.events import (
    BATCHINGS,
    DEFAULT_EPOCHS,
    DpSgdRun,
    check_delta,
    fill_shape_defaults,
)
from dpaudit.accounting.extras import RunLower, run_lower, with_run_extras
from dpaudit.errors import DPAuditError, InvalidParameterError

#: Epochs at which ``compare_run(curves=True)`` evaluates the lower bounds (each
#: evaluation composes the prefix's epochs).
LOWER_CURVE_POINTS = 12
#: Name of the lower-bound row of each batching in ``compare_run``.
LOWER_ROWS: dict[str, str] = {"shuffle": "chua_lower", "balls_in_bins": "allocation_lower"}
_LOWER_ROW_NOTES: dict[str, str] = {
    "shuffle": "lower bound on the true epsilon of shuffled DP-SGD (Chua et al. 2024)",
    "balls_in_bins": "lower bound on the true epsilon of balls-in-bins DP-SGD (achieved pair, "
                     "dpaudit.accounting.balls_in_bins)",
}


def parse_noise(value: str | float | Sequence[float]) -> float | tuple[float, ...]:
    """Parse ``"1.1"`` or ``"2,1.5,1"`` (one sigma per epoch) into floats."""
    if isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, str):
        return tuple(float(v) for v in value)
    parts = [p.strip() for p in value.split(",") if p.strip()]
    if not parts:
        raise InvalidParameterError("noise multiplier is empty")
    try:
        vals = tuple(float(p) for p in parts)
    except ValueError:
        raise InvalidParameterError(f"noise multiplier must be numbers, got {value!r}") from None
    for v in vals:
        if not math.isfinite(v) or v <= 0:
            raise InvalidParameterError(f"noise multiplier must be a finite number > 0, got {v!r}")
    return vals[0] if len(vals) == 1 else vals


def run_from_values(
    *,
    noise_multiplier: str | float | Sequence[float],
    dataset_size: int | None = None,
    batch_size: int | None = None,
    sample_rate: float | None = None,
    epochs: float | None = None,
    steps: int | None = None,
    batching: str = "poisson",
    relation: str | None = None,
    steps_rule: str = "whole_epochs",
) -> DpSgdRun:
    """Build a :class:`DpSgdRun` from CLI-style values (``batching`` in any accepted
    spelling, e.g. ``balls-in-bins``), filling the documented defaults
    (N = 60000, B = 256, 30 epochs; :mod:`dpaudit.accounting.events`) for what is omitted.
    ``steps_rule`` says how epochs become steps (:data:`~dpaudit.accounting.events.STEPS_RULES`)."""
    n, b, q = fill_shape_defaults(dataset_size, batch_size, sample_rate)
    if epochs is None and steps is None:
        epochs = DEFAULT_EPOCHS
    elif epochs is not None and steps is not None:
        raise InvalidParameterError("give a number of epochs or of steps, not both")
    return DpSgdRun.create(
        noise_multiplier=parse_noise(noise_multiplier),
        dataset_size=n,
        batch_size=b,
        sample_rate=q,
        epochs=epochs,
        steps=steps,
        batching=batching,
        relation=relation,
        steps_rule=steps_rule,
    )


def _error_row(name: str, run: DpSgdRun, delta: float, exc: Exception) -> dict[str, Any]:
    return {
        "accountant": name,
        "batching": run.batching,
        "relation": run.relation,
        "epsilon": None,
        "delta": delta,
        "steps": run.total_steps,
        "sound": True,
        "notes": [f"refused: {exc}"],
    }


def _row(
    name: str,
    run: DpSgdRun,
    delta: float,
    lower: RunLower | None,
    *,
    catch: bool,
    if_poisson: float | None = None,
) -> dict[str, Any]:
    """One accountant's row on ``run``; a shuffled or balls-in-bins run's row carries the
    run-level figures (``lower`` computed once by the caller; ``if_poisson`` when already
    known)."""
    acc = get_accountant(name)
    try:
        rep = acc.epsilon(run, delta, extras=False)
        if lower is not None:
            if if_poisson is None:
                if_poisson = acc.epsilon(run.with_batching("poisson"), delta, extras=False).epsilon
            rep = with_run_extras(rep, run, if_poisson=if_poisson, lower=lower)
    except DPAuditError as exc:
        if not catch:
            raise
        return _error_row(name, run, delta, exc)
    return rep.to_dict()


def account_run(run: DpSgdRun, delta: float, accountant: str = TIGHTEST) -> dict[str, Any]:
    """Account ``run`` at ``delta`` with one accountant or ``"all"``.

    Returns a JSON-able dict: ``epsilon``, ``delta``, ``accountant``, ``batching``, ``steps``,
    ``relation``, ``results`` (one row per accountant) and, for shuffled and balls-in-bins
    runs, ``epsilon_lower`` (a proven lower bound, ``None`` where no non-trivial bound was
    obtained) and ``epsilon_if_poisson``. With ``"all"``, the headline ``epsilon`` is the
    smallest *sound* upper bound (the minimum of valid upper bounds is a valid upper bound);
    heuristics (``yu2019``) never set it. The lower bound is computed once for the run.
    """
    delta = check_delta(delta)
    names = list(ACCOUNTANTS) if accountant == "all" else [accountant]
    lower = run_lower(run, delta)
    rows = [_row(name, run, delta, lower, catch=accountant == "all") for name in names]
    candidates = [
        r for r in rows
        if r["epsilon"] is not None and r.get("sound", True) and r["accountant"] in SOUND_ACCOUNTANTS
    ]
    head = min(candidates, key=lambda r: r["epsilon"]) if candidates else rows[0]
    out: dict[str, Any] = {
        "epsilon": head["epsilon"],
        "delta": delta,
        "accountant": head["accountant"] if accountant == "all" else accountant,
        "batching": run.batching,
        "relation": run.relation,
        "steps": run.total_steps,
        "epochs": run.epochs,
        "sample_rate": run.sample_rate,
        "noise_multipliers": list(run.noise_multipliers),
        "sound": head.get("sound", True),
        "results": rows,
    }
    if accountant == "all":
        out["best_accountant"] = head["accountant"]
    if lower is not None:
        out["epsilon_lower"] = lower.epsilon
        out["epsilon_if_poisson"] = head.get("epsilon_if_poisson")
    return out


def _lower_row(run: DpSgdRun, delta: float, lower: RunLower) -> dict[str, Any]:
    return {
        "accountant": LOWER_ROWS[run.batching],
        "batching": run.batching,
        "relation": run.relation,
        "epsilon": lower.epsilon,
        "delta": delta,
        "steps": run.total_steps,
        "sound": True,
        "notes": [_LOWER_ROW_NOTES[run.batching], *lower.notes],
    }


def compare_run(run: DpSgdRun, delta: float, curves: bool = False) -> dict[str, Any]:
    """Every accountant x every batching (Poisson, shuffle, balls-in-bins) on the same run.

    Returns ``{"rows": [{"accountant", "batching", "epsilon", "sound", ...}], "delta", ...}``
    with a lower-bound row per shuffled / balls-in-bins run (``chua_lower``,
    ``allocation_lower``); with ``curves=True`` also ``"curves"`` (``"accountant/batching"``
    -> eps per epoch) and ``"lower_curves"`` (``"<lower row>/<batching>"`` -> [(epoch, lower
    bound)]). Each lower bound is computed once, and each row's ``epsilon_if_poisson`` is the
    same accountant's Poisson row whenever that row describes the same run.
    """
    delta = check_delta(delta)
    rows: list[dict[str, Any]] = []
    curve_map: dict[str, list[float]] = {}
    lower_curves: dict[str, list[tuple[int, float | None]]] = {}
    runs = {b: run if run.batching == b else run.with_batching(b) for b in BATCHINGS}
    poisson_eps: dict[str, float] = {}
    for batching in BATCHINGS:
        r = runs[batching]
        lower = run_lower(r, delta)
        reuse = lower is not None and r.with_batching("poisson") == runs["poisson"]
        for name in ACCOUNTANTS:
            row = _row(name, r, delta, lower, catch=True,
                       if_poisson=poisson_eps.get(name) if reuse else None)
            if batching == "poisson" and row["epsilon"] is not None:
                poisson_eps[name] = row["epsilon"]
            rows.append(row)
            if curves and row["epsilon"] is not None:
                try:
                    curve_map[f"{name}/{batching}"] = list(epsilon_curve(name, r, delta))
                except DPAuditError:
                    pass
        if lower is not None:
            rows.append(_lower_row(r, delta, lower))
            if curves:
                k = min(LOWER_CURVE_POINTS, r.epochs)
                pts = sorted({max(1, round(i * r.epochs / k)) for i in range(1, k + 1)})
                lower_curves[f"{LOWER_ROWS[batching]}/{batching}"] = [
                    (e, lw.epsilon if (lw := run_lower(r.truncate(e), delta)) is not None else None)
                    for e in pts
                ]
    out: dict[str, Any] = {
        "delta": delta,
        "steps": run.total_steps,
        "epochs": run.epochs,
        "sample_rate": run.sample_rate,
        "noise_multipliers": list(run.noise_multipliers),
        "rows": rows,
    }
    if curves:
        out["curves"] = curve_map
        out["lower_curves"] = lower_curves
    return out
