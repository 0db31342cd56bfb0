"""Reference DP-SGD trainer (torch layer): data, models, per-example clipping engine, noise,
samplers, privacy budget and ledger, training loop and model files. See docs/training.md.

Names are imported lazily: ``import dpaudit.training`` and the torch-free modules
(:mod:`~dpaudit.training.config`, :mod:`~dpaudit.training.budget`,
:mod:`~dpaudit.training.ledger`, :mod:`~dpaudit.training.data`,
:mod:`~dpaudit.training.archs`) do not import torch; the first use of a torch name does.
The accounting layer never imports torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: public name -> module that defines it.
_EXPORTS: dict[str, str] = {
    "Callback": "loop",
    "Dataset": "data",
    "ParamEMA": "levers",
    "PoissonSampler": "sampling",
    "PrivacyBudget": "budget",
    "PrivacyLedger": "ledger",
    "ScreeningConfig": "config",
    "ShuffleSampler": "sampling",
    "TrainConfig": "config",
    "TrainResult": "trainer",
    "TrainState": "loop",
    "build_model": "models",
    "clip_and_sum": "clipping",
    "clipped_grad_sum": "clipping",
    "load_dataset": "data",
    "load_model": "checkpoint",
    "noisy_gradient": "privatize",
    "per_sample_grads": "clipping",
    "resolve_config": "config",
    "save_model": "checkpoint",
    "train": "trainer",
}

__all__ = [
    "Callback",
    "Dataset",
    "ParamEMA",
    "PoissonSampler",
    "PrivacyBudget",
    "PrivacyLedger",
    "ScreeningConfig",
    "ShuffleSampler",
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "build_model",
    "clip_and_sum",
    "clipped_grad_sum",
    "load_dataset",
    "load_model",
    "noisy_gradient",
    "per_sample_grads",
    "resolve_config",
    "save_model",
    "train",
]

if TYPE_CHECKING:
    from dpaudit.training.budget import PrivacyBudget
    from dpaudit.training.checkpoint import load_model, save_model
    from dpaudit.training.clipping import clip_and_sum, clipped_grad_sum, per_sample_grads
    from dpaudit.training.config import ScreeningConfig, TrainConfig, resolve_config
    from dpaudit.training.data import Dataset, load_dataset
    from dpaudit.training.ledger import PrivacyLedger
    from dpaudit.training.levers import ParamEMA
    from dpaudit.training.loop import Callback, TrainState
    from dpaudit.training.models import build_model
    from dpaudit.training.privatize import noisy_gradient
    from dpaudit.training.sampling import PoissonSampler, ShuffleSampler
    from dpaudit.training.trainer import TrainResult, train


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dpaudit.training' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"dpaudit.training.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
