"""The metadata stored with a trained model (``model.pt``, :mod:`dpaudit.training.checkpoint`).

JSON-able (non-finite floats become null). Keys: ``private``, ``epsilon`` (the ledger
re-accounted; 0 when the budget stopped the run before its first epoch; null without privacy),
``target_epsilon``, ``delta``, ``accountant``, ``accountant_method``, ``test_accuracy``,
``val_accuracy`` (last epoch, on the scored held-out subset), ``validation_examples``,
``ledger``, ``noise_multipliers``, ``clip``, ``batching``, ``epochs_trained``,
``stopped_early``, ``arch``, ``arch_kwargs``, ``input_shape``, ``num_classes``, ``dataset``,
``data_dir``, ``split``, ``config`` (the resolved configuration: re-running it repeats the
run), ``plan``, ``history``, ``screening``, ``levers``, ``test_accuracy_raw``, ``notes``,
``device``, ``threads``, ``train_seconds``, ``library_version``, ``torch_version``,
``features`` (the fixed feature map the model's inputs are, e.g. ScatterNet; null for pixels)
and ``input_statistics`` (privately computed normalisation statistics: noise multiplier,
bounds, releases; null without).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from dpaudit.accounting.base import EpsilonReport
from dpaudit.io import to_jsonable
from dpaudit.modelfile import MODEL_FORMAT
from dpaudit.training.budget import PrivacyBudget
from dpaudit.training.config import TrainConfig
from dpaudit.training.data import Dataset
from dpaudit.training.split import Split


@dataclass
class RunRecord:
    """What a finished run knows about itself, for :func:`build_metadata`."""

    config: TrainConfig
    dataset: Dataset
    split: Split
    arch: str
    arch_kwargs: dict[str, Any]
    history: list[dict]
    budget: PrivacyBudget | None = None
    final: EpsilonReport | None = None
    test_accuracy: float | None = None
    test_accuracy_raw: float | None = None
    validation_examples: int | None = None
    screening: dict[str, Any] | None = None
    ema_used: bool = False
    features: dict[str, Any] | None = None
    input_statistics: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    device: str = "cpu"
    threads: int = 1
    seconds: float = 0.0


def _privacy_fields(r: RunRecord) -> dict[str, Any]:
    b, final = r.budget, r.final
    if b is None:
        return {"private": False, "epsilon": None, "target_epsilon": None, "delta": None,
                "accountant": None, "accountant_method": None, "ledger": None,
                "noise_multipliers": [], "plan": None}
    return {
        "private": True,
        "epsilon": final.epsilon if final is not None else 0.0,
        "target_epsilon": b.target,
        "delta": b.delta,
        "accountant": final.accountant if final is not None else b.accountant,
        "accountant_method": final.method if final is not None else None,
        "ledger": b.ledger.to_dict(),
        "noise_multipliers": b.ledger.epoch_sigmas(),
        "plan": b.plan.to_dict() if b.plan is not None else None,
    }


def _levers(r: RunRecord) -> dict[str, Any]:
    c = r.config
    return {
        "accountant": r.budget.accountant if r.budget is not None else c.accountant,
        "ema_decay": c.ema_decay if r.ema_used else None,
        "batch_size": c.batch_size,
        "lr": c.lr,
        "lr_schedule": c.lr_schedule,
        "momentum": c.momentum,
        "arch": r.arch,
        "activation": r.arch_kwargs.get("activation"),
        "augment": c.augmentation(),
        "augment_multiplicity": c.augment_multiplicity,
        "features": (r.features or {}).get("kind"),
        "input_norm": r.arch_kwargs.get("input_norm"),
        "groupnorm": r.arch_kwargs.get("groupnorm"),
        "weight_std": r.arch_kwargs.get("weight_std"),
    }


def build_metadata(r: RunRecord) -> dict[str, Any]:
    """The model file's metadata for the run ``r`` (JSON-able, checked)."""
    import torch

    from dpaudit import __version__

    c, ds = r.config, r.dataset
    val = [h["val_accuracy"] for h in r.history if "val_accuracy" in h]
    meta = {
        "format": MODEL_FORMAT,
        **_privacy_fields(r),
        "test_accuracy": r.test_accuracy,
        "val_accuracy": val[-1] if val else None,
        "validation_examples": r.validation_examples,
        "clip": c.clip,
        "batching": c.batching,
        "epochs_trained": len(r.history),
        "stopped_early": bool(r.budget is not None and r.budget.stop_reason),
        "arch": r.arch,
        "arch_kwargs": r.arch_kwargs,
        "input_shape": list(ds.input_shape),
        "num_classes": ds.num_classes,
        "dataset": ds.name,
        "data_dir": c.data_dir if ds.name != "digits" else None,
        "split": r.split.to_dict(),
        "config": c.to_dict(),
        "history": r.history,
        "screening": r.screening,
        "levers": _levers(r),
        "test_accuracy_raw": r.test_accuracy_raw,
        "notes": list(dict.fromkeys(r.notes)),
        "device": r.device,
        "threads": r.threads,
        "train_seconds": r.seconds,
        "library_version": __version__,
        "torch_version": torch.__version__,
        "features": r.features,
        "input_statistics": ({k: v for k, v in r.input_statistics.items() if k != "notes"}
                             if r.input_statistics else None),
    }
    out = to_jsonable(meta)
    json.dumps(out, allow_nan=False)  # must be JSON-able
    return out
