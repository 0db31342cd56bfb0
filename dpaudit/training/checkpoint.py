"""model.pt: ``{"format": "dpaudit-model/1", "state_dict": ..., "metadata": {...}}``.

Saved with ``torch.save`` to a temporary file then renamed (:func:`dpaudit.io.atomic_path`),
so an interrupted run never leaves a half-written model. Loaded with
``torch.load(weights_only=True)`` only: model files are untrusted, and the weights-only
unpickler accepts tensors and plain containers but never arbitrary objects. ``metadata`` is
JSON-able (see :func:`dpaudit.training.trainer.train`).
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch
from torch import nn

from dpaudit.errors import UntrustedFileError
from dpaudit.io import atomic_path
from dpaudit.training.models import build_model

MODEL_FORMAT = "dpaudit-model/1"


def save_model(path: str | os.PathLike[str], model: nn.Module, metadata: dict[str, Any]) -> None:
    """Write ``model``'s weights and ``metadata`` (must be JSON-able) to ``path`` atomically."""
    meta = json.loads(json.dumps(metadata, allow_nan=False))
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    payload = {"format": MODEL_FORMAT, "state_dict": state, "metadata": meta}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def read_model_file(path: str | os.PathLike[str], device: str = "cpu") -> dict[str, Any]:
    """The raw ``{"format", "state_dict", "metadata"}`` dict, loaded weights-only."""
    try:
        obj = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means "not trusted"
        raise UntrustedFileError(
            f"{path}: not a loadable dpaudit model file ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None
    if not isinstance(obj, dict) or obj.get("format") != MODEL_FORMAT:
        raise UntrustedFileError(f"{path}: not a {MODEL_FORMAT} file")
    if not isinstance(obj.get("state_dict"), dict) or not isinstance(obj.get("metadata"), dict):
        raise UntrustedFileError(f"{path}: missing state_dict or metadata")
    return obj


def load_model(
    path: str | os.PathLike[str], device: str = "cpu", model: nn.Module | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model from its metadata (``build_model(arch, input_shape, num_classes,
    **arch_kwargs)``), load the weights, return (model in eval mode on ``device``, metadata).

    For ``arch == "custom"`` pass an instance of the user's architecture as ``model``.
    """
    obj = read_model_file(path, device)
    meta = obj["metadata"]
    if model is None:
        if meta.get("arch") == "custom":
            raise UntrustedFileError(
                f"{path}: trained with a custom nn.Module; pass an instance as load_model(..., model=)"
            )
        try:
            model = build_model(
                meta["arch"], tuple(meta["input_shape"]), int(meta["num_classes"]),
                **(meta.get("arch_kwargs") or {}),
            )
        except (KeyError, TypeError) as exc:
            raise UntrustedFileError(f"{path}: metadata cannot rebuild the model ({exc})") from None
    try:
        model.load_state_dict(obj["state_dict"])
    except RuntimeError as exc:
        raise UntrustedFileError(f"{path}: weights do not fit the architecture ({str(exc).splitlines()[0]})") from None
    return model.to(device).eval(), meta
