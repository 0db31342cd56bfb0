"""Reference DP-SGD trainer (torch layer): data, models, per-example clipping engine, noise,
samplers, privacy ledger, training loop and model files. See docs/training.md.

Importing this package imports torch; the accounting layer never imports it.
"""

from __future__ import annotations

from dpaudit.training.checkpoint import load_model, save_model
from dpaudit.training.clipping import clip_and_sum, clipped_grad_sum, per_sample_grads
from dpaudit.training.data import Dataset, load_dataset
from dpaudit.training.ledger import PrivacyLedger
from dpaudit.training.levers import ParamEMA
from dpaudit.training.models import build_model
from dpaudit.training.privatize import noisy_gradient
from dpaudit.training.sampling import PoissonSampler, ShuffleSampler
from dpaudit.training.screening import ScreeningConfig
from dpaudit.training.trainer import Callback, TrainConfig, TrainResult, TrainState, train

__all__ = [
    "Callback",
    "Dataset",
    "ParamEMA",
    "PoissonSampler",
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
    "save_model",
    "train",
]
