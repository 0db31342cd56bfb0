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

from dpaudit.accounting import ACCOUNTANTS, SOUND_ACCOUNTANTS, get_accountant
from dpaudit.accounting.base import EpsilonReport
from dpaudit.accounting.events import BATCHINGS, DpSgdRun, check_delta
from dpaudit.errors import DPAuditError, InvalidParameterError

#: Defaults shown to the user when a flag is omitted (an MNIST-sized run).
DEFAULT_DATASET_SIZE = 60000
DEFAULT_BATCH_SIZE = 256
DEFAULT_EPOCHS = 30


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
) -> DpSgdRun:
    """Build a :class:`DpSgdRun` from CLI-style values, filling documented defaults
    (N=60000, B=256, 30 epochs) for what is omitted."""
    if sample_rate is None:
        dataset_size = DEFAULT_DATASET_SIZE if dataset_size is None else dataset_size
        batch_size = DEFAULT_BATCH_SIZE if batch_size is None else batch_size
    elif dataset_size is not None and batch_size is not None:
        raise InvalidParameterError("give --sample-rate or --dataset-size/--batch-size, not both")
    if epochs is None and steps is None:
        epochs = DEFAULT_EPOCHS
    elif epochs is not None and steps is not None:
        raise InvalidParameterError("give --epochs or --steps, not both")
    if epochs is not None and not (epochs > 0):
        raise InvalidParameterError(f"epochs must be > 0, got {epochs!r}")
    if steps is not None and steps < 1:
        raise InvalidParameterError(f"steps must be >= 1, got {steps!r}")
    return DpSgdRun.create(
        noise_multiplier=parse_noise(noise_multiplier),
        dataset_size=dataset_size,
        batch_size=batch_size,
        sample_rate=sample_rate,
        epochs=epochs,
        steps=steps,
        batching=batching,
        relation=relation,
    )


def _shuffle_lower(run: DpSgdRun, delta: float) -> float | None:
    try:
        from dpaudit.accounting.shuffle import epsilon_lower
    except ImportError:  # pragma: no cover - module always ships
        return None
    return float(epsilon_lower(run, delta))


def _row(report: EpsilonReport) -> dict[str, Any]:
    return report.to_dict()


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


def account_run(run: DpSgdRun, delta: float, accountant: str = "pld") -> dict[str, Any]:
    """Account ``run`` at ``delta`` with one accountant or ``"all"``.

    Returns a JSON-able dict: ``epsilon``, ``delta``, ``accountant``, ``batching``, ``steps``,
    ``relation``, ``results`` (one row per accountant) and, for shuffled runs,
    ``epsilon_lower`` (Chua et al. lower bound) and ``epsilon_if_poisson``. With ``"all"``,
    the headline ``epsilon`` is the smallest *sound* upper bound (the minimum of valid upper
    bounds is a valid upper bound); heuristics (``yu2019``) never set it.
    """
    delta = check_delta(delta)
    names = list(ACCOUNTANTS) if accountant == "all" else [accountant]
    rows: list[dict[str, Any]] = []
    for name in names:
        acc = get_accountant(name)
        if accountant == "all":
            try:
                rows.append(_row(acc.epsilon(run, delta)))
            except DPAuditError as exc:
                rows.append(_error_row(name, run, delta, exc))
        else:
            rows.append(_row(acc.epsilon(run, delta)))
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
    if run.batching == "shuffle":
        lower = head.get("epsilon_lower")
        out["epsilon_lower"] = lower if lower is not None else _shuffle_lower(run, delta)
        if_poisson = head.get("epsilon_if_poisson")
        if if_poisson is None:
            acc = get_accountant(head["accountant"])
            if_poisson = acc.epsilon(run.with_batching("poisson"), delta).epsilon
        out["epsilon_if_poisson"] = if_poisson
    return out


def epsilon_curve(run: DpSgdRun, delta: float, accountant: str) -> list[float]:
    """Cumulative epsilon after each epoch (the accountant's own fast curve when it has one)."""
    acc = get_accountant(accountant)
    fn = getattr(acc, "epsilon_curve", None)
    if fn is not None:
        return [float(x) for x in fn(run, delta)]
    return [acc.epsilon(run.truncate(e), delta).epsilon for e in range(1, run.epochs + 1)]


def compare_run(run: DpSgdRun, delta: float, curves: bool = False) -> dict[str, Any]:
    """Every accountant x both batchings on the same run.

    Returns ``{"rows": [{"accountant", "batching", "epsilon", "sound", ...}], "delta", ...}``;
    with ``curves=True`` also ``"curves"`` (``"accountant/batching"`` -> eps per epoch) and
    ``"lower_curves"`` (``"chua_lower/shuffle"`` -> [(epoch, lower bound)]).
    """
    delta = check_delta(delta)
    rows: list[dict[str, Any]] = []
    curve_map: dict[str, list[float]] = {}
    lower_curves: dict[str, list[tuple[int, float | None]]] = {}
    for batching in BATCHINGS:
        r = run if run.batching == batching else run.with_batching(batching)
        for name in ACCOUNTANTS:
            try:
                rep = get_accountant(name).epsilon(r, delta)
                row = _row(rep)
            except DPAuditError as exc:
                row = _error_row(name, r, delta, exc)
            rows.append(row)
            if curves and row["epsilon"] is not None:
                try:
                    curve_map[f"{name}/{batching}"] = epsilon_curve(r, delta, name)
                except DPAuditError:
                    pass
        if batching == "shuffle":
            low = _shuffle_lower(r, delta)
            if low is not None and curves:
                # The lower bound costs ~0.1 s per evaluation: sample at most 12 epochs.
                k = min(12, r.epochs)
                pts = sorted({max(1, round(i * r.epochs / k)) for i in range(1, k + 1)})
                out_pts = [(e, _shuffle_lower(r.truncate(e), delta)) for e in pts]
                lower_curves[f"chua_lower/{batching}"] = out_pts
            if low is not None:
                rows.append({
                    "accountant": "chua_lower",
                    "batching": "shuffle",
                    "relation": r.relation,
                    "epsilon": low,
                    "delta": delta,
                    "steps": r.total_steps,
                    "sound": True,
                    "notes": ["lower bound on the true epsilon of shuffled DP-SGD (Chua et al. 2024)"],
                })
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
