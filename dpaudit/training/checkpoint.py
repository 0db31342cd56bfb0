"""model.pt: ``{"format": "dpaudit-model/1", "state_dict": ..., "metadata": {...}}``.

Saved with ``torch.save`` to a temporary file then renamed (:func:`dpaudit.io.atomic_path`),
so an interrupted run never leaves a half-written model. Loaded through the one safe loader,
:mod:`dpaudit.modelfile` (``torch.load(weights_only=True)`` only: model files are untrusted, and
the weights-only unpickler accepts tensors and plain containers but never arbitrary objects). ``metadata`` is
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
from dpaudit.modelfile import MODEL_FORMAT, build_dpaudit_model, read_dpaudit_model


def save_model(path: str | os.PathLike[str], model: nn.Module, metadata: dict[str, Any]) -> None:
    """Write ``model``'s weights and ``metadata`` (must be JSON-able) to ``path`` atomically."""
    meta = json.loads(json.dumps(metadata, allow_nan=False))
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    payload = {"format": MODEL_FORMAT, "state_dict": state, "metadata": meta}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def read_model_file(path: str | os.PathLike[str], device: str = "cpu") -> dict[str, Any]:
    """The raw ``{"format", "state_dict", "metadata"}`` dict, read once, weights-only (the one
    safe loader, :func:`dpaudit.modelfile.read_dpaudit_model`); tensors are moved to ``device``."""
    payload = read_dpaudit_model(path)
    if str(device) != "cpu":
        payload = {**payload, "state_dict": {k: v.to(device) for k, v in payload["state_dict"].items()}}
    return payload


def load_model(
    path: str | os.PathLike[str], device: str = "cpu", model: nn.Module | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model from its metadata (``build_model(arch, input_shape, num_classes,
    **arch_kwargs)``), load the weights, return (model in eval mode on ``device``, metadata).

    For ``arch == "custom"`` pass an instance of the user's architecture as ``model``.
    """
    payload = read_dpaudit_model(path)
    meta = payload["metadata"]
    if model is None:
        return build_dpaudit_model(payload, path, device), meta
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UntrustedFileError(f"{path}: weights do not fit the architecture ({first})") from None
    return model.to(device).eval(), meta
