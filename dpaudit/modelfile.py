"""Reading untrusted model files: the one weights-only loader of ``attack`` and ``audit``.

A model file is untrusted input. Only two code-free formats are accepted:

* ``torch.save`` files read with ``torch.load(weights_only=True)``: the weights-only
  unpickler builds tensors and plain containers and stops at the first other global, so a
  file that would need arbitrary unpickling is refused before anything in it runs;
* TorchScript archives (``torch.jit.load``: a serialized graph, no Python unpickling).

Every failure is one :class:`~dpaudit.errors.UntrustedFileError` line that says what the file
is not. torch's own advice to load such a file with ``weights_only=False`` is never repeated:
that would run whatever the file holds.

A dpaudit model file is ``{"format": "dpaudit-model/1", "state_dict", "metadata"}``
(written by :func:`dpaudit.training.checkpoint.save_model`); :func:`read_dpaudit_model`
checks that shape and :func:`build_dpaudit_model` rebuilds the network from it, so a file is
read once. Importing this module does not import torch.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

from dpaudit.errors import UntrustedFileError

#: The format tag of a dpaudit model file (written by ``dpaudit.training.checkpoint.save_model``).
MODEL_FORMAT = "dpaudit-model/1"

#: The first line of a weights-only refusal names an unknown global with this text.
_UNKNOWN_GLOBAL = "unsupported global"


class NotADpauditModelError(UntrustedFileError):
    """A readable model file that is not a dpaudit model file (a bare state_dict,
    TorchScript, or another container): it carries no metadata, member split or claim."""


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


def _first_line(exc: BaseException) -> str:
    """The first line of ``exc`` without torch's ``weights_only`` advice (never repeated)."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return type(exc).__name__ if "weights_only" in first else first


def read_model_object(path: str | os.PathLike[str], device: str = "cpu") -> tuple[str, Any]:
    """Load ``path`` without running code from it.

    Returns ``("torchscript", module)`` (on ``device``) or ``("pickle", obj)`` where ``obj``
    came from ``torch.load(weights_only=True)`` on the CPU. Raises ``FileNotFoundError`` for
    a missing file and :class:`UntrustedFileError` for one that needs arbitrary unpickling or
    is not a model file.
    """
    import torch

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(2, "no such file", str(p))
    if _is_torchscript(p):
        try:
            return "torchscript", torch.jit.load(str(p), map_location=device)
        except Exception as exc:  # noqa: BLE001 - any failure: not a usable archive
            raise UntrustedFileError(f"{p}: not a loadable TorchScript archive ({_first_line(exc)})") from None
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if _UNKNOWN_GLOBAL in str(exc).lower():
            raise UntrustedFileError(
                f"refusing to load {p}: not a plain tensor/weights file (it needs arbitrary "
                "unpickling); it was refused unread"
            ) from None
        raise UntrustedFileError(f"{p}: corrupt or not a PyTorch model file") from None
    except (EOFError, RuntimeError, ValueError, OSError, zipfile.BadZipFile) as exc:
        raise UntrustedFileError(f"{p}: corrupt or not a PyTorch model file ({_first_line(exc)})") from None
    return "pickle", obj


def check_dpaudit_payload(obj: Any, path: str | os.PathLike[str]) -> dict[str, Any]:
    """``obj`` (from :func:`read_model_object`) as a dpaudit model payload, or
    :class:`NotADpauditModelError` / :class:`UntrustedFileError` saying what it lacks."""
    if not isinstance(obj, dict) or obj.get("format") != MODEL_FORMAT:
        raise NotADpauditModelError(f"{path} is not a dpaudit model file ({MODEL_FORMAT})")
    if not isinstance(obj.get("state_dict"), dict) or not isinstance(obj.get("metadata"), dict):
        raise UntrustedFileError(f"{path}: a {MODEL_FORMAT} file without state_dict or metadata")
    return obj


def read_dpaudit_model(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``{"format", "state_dict", "metadata"}`` payload of a dpaudit model file, read
    once, weights-only (see :func:`read_model_object` for the refusals)."""
    kind, obj = read_model_object(path)
    if kind != "pickle":
        raise NotADpauditModelError(f"{path} is not a dpaudit model file (it is a TorchScript archive)")
    return check_dpaudit_payload(obj, path)


def build_dpaudit_model(payload: dict[str, Any], path: str | os.PathLike[str], device: str = "cpu") -> Any:
    """Rebuild the reference architecture recorded in ``payload["metadata"]`` and load its
    weights; the model is returned in eval mode on ``device``. A file trained with a custom
    ``nn.Module`` cannot be rebuilt from metadata (use
    :func:`dpaudit.training.checkpoint.load_model` with ``model=``)."""
    from dpaudit.training.models import build_model

    meta = payload["metadata"]
    if meta.get("arch") == "custom":
        raise UntrustedFileError(f"{path}: trained with a custom nn.Module; its architecture is not in the file")
    try:
        model = build_model(
            meta["arch"], tuple(meta["input_shape"]), int(meta["num_classes"]), **(meta.get("arch_kwargs") or {})
        )
    except (KeyError, TypeError) as exc:
        raise UntrustedFileError(f"{path}: metadata cannot rebuild the model ({exc})") from None
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise UntrustedFileError(f"{path}: weights do not fit the architecture ({_first_line(exc)})") from None
    return model.to(device).eval()
