"""The attacked model and its data.

A model file is untrusted input; it is read once, by the one weights-only loader
(:mod:`dpaudit.modelfile`): a dpaudit model file (``{"format": "dpaudit-model/1",
"state_dict", "metadata"}``), or for a third-party model a bare ``state_dict`` of a reference
architecture or a TorchScript archive. A file whose unpickling would need an arbitrary Python
object is refused before anything in it runs.

:func:`check_target_inputs` checks the arguments (files exist, data given in pairs, a claim in
range) without importing torch, so a command line can refuse bad input at once.
"""

from __future__ import annotations

import math
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dpaudit.errors import InvalidParameterError, UntrustedFileError
from dpaudit.modelfile import read_model_object  # noqa: F401  (the one loader; re-exported)


@dataclass(frozen=True)
class Target:
    """A model under attack and the data the attacks need.

    ``members``/``nonmembers``: (x, y) arrays, x float32 (N, C, H, W) in the model's input
    space, y int64.  ``heldout``: images the model never trained on (evaluation classifier of
    the inversion attack); ``test``: where that classifier's accuracy is measured.
    ``claimed_epsilon``/``claimed_delta``: the privacy claim (None: no claim).
    ``config``: the trainer configuration (TrainConfig fields) for LiRA's shadow models, and
    ``member_idx``/``nonmember_idx`` the split as indices into ``dataset.x_train`` — both None
    for third-party models. ``nonmembers_in_test``: the model trained on its whole train
    split, so ``nonmember_idx`` indexes the test split appended to the train split
    (:func:`dpaudit.attacks.lira.pooled`).
    """

    model: object
    name: str
    num_classes: int
    input_shape: tuple[int, int, int]
    members: tuple[np.ndarray, np.ndarray]
    nonmembers: tuple[np.ndarray, np.ndarray]
    heldout: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray] | None
    claimed_epsilon: float | None
    claimed_delta: float | None
    metadata: dict | None = None
    config: dict | None = None
    dataset: object | None = None
    member_idx: np.ndarray | None = None
    nonmember_idx: np.ndarray | None = None
    nonmembers_in_test: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)


def check_target_inputs(
    model_path: str | os.PathLike[str],
    members: str | os.PathLike[str] | None = None,
    nonmembers: str | os.PathLike[str] | None = None,
    *,
    arch: str | None = None,
    num_classes: int | None = None,
    claimed_epsilon: float | None = None,
    claimed_delta: float | None = None,
    data_dir: str | os.PathLike[str] | None = None,
) -> None:
    """Refuse inputs no target can be built from: a missing model or data file, member data
    without non-member data (or the reverse), an architecture, class count or claim for a
    dpaudit model file (it records its own), a claim out of range, a data folder that does
    not exist, an unknown architecture. Imports torch only to read the list of architectures
    when one is named (such a model needs torch anyway); every other check comes first."""
    for p in (model_path, members, nonmembers):
        if p is not None and not Path(p).is_file():
            raise FileNotFoundError(2, "no such file", str(p))
    if (members is None) != (nonmembers is None):
        raise InvalidParameterError("a third-party model needs both its member and its non-member data")
    if members is None and (arch is not None or num_classes is not None or claimed_epsilon is not None
                            or claimed_delta is not None):
        raise InvalidParameterError(
            "an architecture, class count or claimed (epsilon, delta) is given only for a third-party "
            "model (with member and non-member data); a dpaudit model file records its own")
    if members is not None and data_dir is not None:
        raise InvalidParameterError("a data folder is read only for a dpaudit model file")
    if data_dir is not None and not Path(data_dir).is_dir():
        raise InvalidParameterError(f"data folder {data_dir} does not exist")
    if num_classes is not None and int(num_classes) < 2:
        raise InvalidParameterError(f"need at least 2 classes, got {num_classes}")
    if claimed_epsilon is not None and (math.isnan(claimed_epsilon) or claimed_epsilon < 0):
        raise InvalidParameterError(f"claimed epsilon must be >= 0, got {claimed_epsilon!r}")
    if claimed_delta is not None and not 0 <= claimed_delta < 1:
        raise InvalidParameterError(f"claimed delta must be in [0, 1), got {claimed_delta!r}")
    if arch is not None:
        from dpaudit.training.models import ARCHS

        if arch not in ARCHS:
            raise InvalidParameterError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")


def build_from_state_dict(state: Any, arch: str, input_shape: tuple[int, int, int], num_classes: int,
                          arch_kwargs: dict | None = None) -> Any:
    """Rebuild ``arch`` of the reference trainer and load ``state`` into it; a mismatch is an
    :class:`InvalidParameterError` naming the architecture."""
    from dpaudit.training import build_model

    if not isinstance(state, dict) or not all(hasattr(v, "shape") for v in state.values()):
        raise UntrustedFileError("model file is neither a dpaudit model nor a state_dict of tensors")
    model = build_model(arch, input_shape, int(num_classes), **(arch_kwargs or {}))
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise InvalidParameterError(
            f"weights do not fit architecture {arch} for inputs {tuple(input_shape)} and "
            f"{num_classes} classes ({str(exc).strip().splitlines()[0]})"
        ) from None
    return model


def load_npz_split(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read ``x`` (N, C, H, W) or (N, H, W) images and ``y`` labels from an ``.npz`` file
    (``allow_pickle=False``: object arrays are refused)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(2, "no such file", str(p))
    try:
        with np.load(p, allow_pickle=False) as z:
            if "x" not in z or "y" not in z:
                raise InvalidParameterError(f"{p}: needs arrays 'x' and 'y'")
            x, y = np.asarray(z["x"]), np.asarray(z["y"])
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        if isinstance(exc, InvalidParameterError):
            raise
        raise UntrustedFileError(f"{p}: not a readable .npz file") from None
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or y.ndim != 1 or len(x) != len(y) or len(x) == 0:
        raise InvalidParameterError(
            f"{p}: need x of shape (N, C, H, W) or (N, H, W) and y of shape (N,), "
            f"got {x.shape} and {y.shape}"
        )
    if not np.issubdtype(y.dtype, np.integer):
        raise InvalidParameterError(f"{p}: labels y must be integers")
    return x.astype(np.float32), y.astype(np.int64)


def _as_image_model(model: Any, meta: dict, path: Any) -> Any:
    """A model trained on fixed features (``metadata["features"]``, e.g. ScatterNet) as a
    model of images: the recorded feature map, then the model -- every attack queries images."""
    if not meta.get("features"):
        return model
    from dpaudit.training.features import image_model

    try:
        return image_model(model, meta)
    except (KeyError, TypeError, ValueError) as exc:
        raise UntrustedFileError(f"{path}: the recorded feature map cannot be rebuilt ({exc})") from None


def target_from_model_file(
    path: str | os.PathLike[str], *, data_dir: str | None = None, device: str = "cpu"
) -> Target:
    """A dpaudit model file: dataset, member split and claim come from its metadata."""
    from dpaudit.modelfile import build_dpaudit_model, read_dpaudit_model
    from dpaudit.training import load_dataset

    payload = read_dpaudit_model(path)  # the file is read once
    model = build_dpaudit_model(payload, path, device)
    meta = payload["metadata"]
    try:
        split = meta["split"]
        mem = np.asarray(split["member_indices"], dtype=np.int64)
        non = np.asarray(split["nonmember_indices"], dtype=np.int64)
        name = str(meta["dataset"])
    except (KeyError, TypeError) as exc:
        raise UntrustedFileError(f"{path}: metadata lacks the dataset or member split ({exc})") from None
    ds = load_dataset(name, data_dir if data_dir is not None else meta.get("data_dir"))
    n = len(ds.y_train)
    for arr, what in ((mem, "member"), (non, "non-member")):
        if arr.size and (arr.min() < 0 or arr.max() >= n):
            raise InvalidParameterError(f"{path}: {what} indices do not fit the {n} {name} train images")
    if mem.size == 0:
        raise InvalidParameterError(f"{path}: the model records no training members")
    model = _as_image_model(model, meta, path)
    feats = meta.get("features") or {}
    in_shape = feats.get("image_shape") if feats else meta.get("input_shape")
    if tuple(in_shape or ds.input_shape) != tuple(ds.input_shape):
        raise InvalidParameterError(
            f"{path}: model input shape {in_shape} != data {ds.input_shape}"
        )
    notes = []
    test: tuple[np.ndarray, np.ndarray] | None = (ds.x_test, ds.y_test)
    if non.size == 0:
        nonmembers = heldout = (ds.x_test, ds.y_test)
        test = None
        notes.append("the model trained on its whole train split: non-members are the test split")
    else:
        nonmembers = (ds.x_train[non], ds.y_train[non])
        heldout = nonmembers
    eps = meta.get("epsilon")
    config = dict(meta.get("config") or {}) or None
    if config is not None and data_dir is not None:
        config["data_dir"] = data_dir  # shadow models read the data where it is now
    return Target(
        model=model,
        name=str(path),
        num_classes=int(ds.num_classes),
        input_shape=_image_shape(ds.input_shape),
        members=(ds.x_train[mem], ds.y_train[mem]),
        nonmembers=nonmembers,
        heldout=heldout,
        test=test,
        claimed_epsilon=None if eps is None or not meta.get("private", True) else float(eps),
        claimed_delta=None if meta.get("delta") is None else float(meta["delta"]),
        metadata=meta,
        config=config,
        dataset=ds,
        member_idx=mem,
        nonmember_idx=non if non.size else n + np.arange(len(ds.y_test)),
        nonmembers_in_test=non.size == 0,
        notes=tuple(notes),
    )


def target_from_third_party(
    model_path: str | os.PathLike[str],
    members_npz: str | os.PathLike[str],
    nonmembers_npz: str | os.PathLike[str],
    *,
    arch: str | None = None,
    num_classes: int | None = None,
    claimed_epsilon: float | None = None,
    claimed_delta: float | None = None,
    device: str = "cpu",
) -> Target:
    """A model from elsewhere: TorchScript, or a state_dict of a reference architecture
    (``arch``), with member / non-member ``.npz`` files (arrays ``x``, ``y``).  The non-members
    double as held-out data for the inversion attack's evaluation classifier."""
    check_target_inputs(model_path, members_npz, nonmembers_npz, arch=arch, num_classes=num_classes,
                        claimed_epsilon=claimed_epsilon, claimed_delta=claimed_delta)
    xm, ym = load_npz_split(members_npz)
    xn, yn = load_npz_split(nonmembers_npz)
    if xm.shape[1:] != xn.shape[1:]:
        raise InvalidParameterError(
            f"members {xm.shape[1:]} and non-members {xn.shape[1:]} differ in image shape"
        )
    k = int(num_classes) if num_classes is not None else int(max(ym.max(), yn.max()) + 1)
    if min(ym.min(), yn.min()) < 0 or max(ym.max(), yn.max()) >= k:
        raise InvalidParameterError(f"labels must be in [0, {k})")
    shape = _image_shape(xm.shape[1:])
    kind, obj = read_model_object(model_path, device)
    if kind == "torchscript":
        model = obj
    else:
        from dpaudit.modelfile import MODEL_FORMAT

        if isinstance(obj, dict) and obj.get("format") == MODEL_FORMAT:
            obj = obj.get("state_dict")
        if arch is None:
            raise InvalidParameterError(
                f"{model_path} holds weights only: the architecture is needed to rebuild the model"
            )
        model = build_from_state_dict(obj, arch, shape, k)
    import torch

    model = model.to(torch.device(device)).eval()
    from dpaudit.attacks.membership import predict_logits

    try:
        out = predict_logits(model, xm[:2], device)
    except (RuntimeError, ValueError) as exc:
        raise InvalidParameterError(
            f"model does not accept inputs of shape {shape} ({str(exc).strip().splitlines()[0]})"
        ) from None
    if out.shape[1] != k:
        raise InvalidParameterError(f"model outputs {out.shape[1]} classes, labels need {k}")
    return Target(
        model=model,
        name=str(model_path),
        num_classes=k,
        input_shape=shape,
        members=(xm, ym),
        nonmembers=(xn, yn),
        heldout=(xn, yn),
        test=None,
        claimed_epsilon=claimed_epsilon,
        claimed_delta=claimed_delta,
    )


def _image_shape(shape: Any) -> tuple[int, int, int]:
    """(C, H, W) as ints."""
    c, h, w = (int(v) for v in shape)
    return c, h, w
