"""The attacked model and its data: loading untrusted model files safely.

A model file is untrusted input.  Only two code-free formats are accepted:

* ``torch.save`` files read with ``torch.load(weights_only=True)`` — a dpaudit model file
  (``{"format": "dpaudit-model/1", "state_dict", "metadata"}``, rebuilt by
  :func:`dpaudit.training.checkpoint.load_model`) or a bare ``state_dict`` plus ``--arch``;
* TorchScript archives (``torch.jit.load``: a serialized graph, no Python unpickling).

A file whose unpickling would need an arbitrary Python object is refused before anything in
it runs (the weights-only unpickler stops at the first unknown global).
"""

from __future__ import annotations

import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dpaudit.errors import InvalidParameterError, UntrustedFileError


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


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


def read_model_object(path: str | os.PathLike[str], device: str = "cpu"):
    """Load ``path`` without running code from it.

    Returns ``("torchscript", module)`` or ``("pickle", obj)`` where ``obj`` came from
    ``torch.load(weights_only=True)``.  Raises :class:`UntrustedFileError` for files that need
    arbitrary unpickling or are not model files, ``FileNotFoundError`` for missing ones.
    """
    import torch

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(2, "no such file", str(p))
    if _is_torchscript(p):
        try:
            return "torchscript", torch.jit.load(str(p), map_location=device)
        except Exception as exc:  # noqa: BLE001 - any failure: not a usable archive
            raise UntrustedFileError(f"{p}: not a loadable TorchScript archive ({exc})") from None
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "unsupported global" in text.lower():
            raise UntrustedFileError(
                f"refusing to load {p}: it needs arbitrary unpickling "
                "(not a dpaudit/state_dict file)"
            ) from None
        raise UntrustedFileError(f"{p}: corrupt or not a PyTorch model file") from None
    except (EOFError, RuntimeError, ValueError, OSError, zipfile.BadZipFile) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UntrustedFileError(f"{p}: corrupt or not a PyTorch model file ({first})") from None
    return "pickle", obj


def build_from_state_dict(state: dict, arch: str, input_shape, num_classes: int, arch_kwargs=None):
    """Rebuild ``arch`` of the reference trainer and load ``state`` into it; a mismatch is an
    :class:`InvalidParameterError` naming the architecture."""
    from dpaudit.training import build_model

    if not isinstance(state, dict) or not all(hasattr(v, "shape") for v in state.values()):
        raise UntrustedFileError("model file is neither a dpaudit model nor a state_dict of tensors")
    model = build_model(arch, tuple(input_shape), int(num_classes), **(arch_kwargs or {}))
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise InvalidParameterError(
            f"weights do not fit --arch {arch} for inputs {tuple(input_shape)} and "
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


def target_from_model_file(
    path: str | os.PathLike[str], *, data_dir: str | None = None, device: str = "cpu"
) -> Target:
    """A dpaudit model file: dataset, member split and claim come from its metadata."""
    from dpaudit.training import load_dataset
    from dpaudit.training.checkpoint import MODEL_FORMAT, load_model

    kind, obj = read_model_object(path, device)
    if kind != "pickle" or not isinstance(obj, dict) or obj.get("format") != MODEL_FORMAT:
        raise InvalidParameterError(
            f"{path} is not a dpaudit model file; for other models pass --members X.npz "
            "--non-members Y.npz (and --arch for a state_dict)"
        )
    model, meta = load_model(path, device=device)
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
    if tuple(meta.get("input_shape") or ds.input_shape) != tuple(ds.input_shape):
        raise InvalidParameterError(
            f"{path}: model input shape {meta.get('input_shape')} != data {ds.input_shape}"
        )
    notes = []
    test = (ds.x_test, ds.y_test)
    if non.size == 0:
        nonmembers = test
        heldout = test
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
        input_shape=tuple(ds.input_shape),
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
    xm, ym = load_npz_split(members_npz)
    xn, yn = load_npz_split(nonmembers_npz)
    if xm.shape[1:] != xn.shape[1:]:
        raise InvalidParameterError(
            f"members {xm.shape[1:]} and non-members {xn.shape[1:]} differ in image shape"
        )
    k = int(num_classes) if num_classes is not None else int(max(ym.max(), yn.max()) + 1)
    if min(ym.min(), yn.min()) < 0 or max(ym.max(), yn.max()) >= k:
        raise InvalidParameterError(f"labels must be in [0, {k})")
    shape = tuple(int(s) for s in xm.shape[1:])
    kind, obj = read_model_object(model_path, device)
    if kind == "torchscript":
        model = obj
    else:
        if isinstance(obj, dict) and obj.get("format") == "dpaudit-model/1":
            obj = obj.get("state_dict")
        if arch is None:
            raise InvalidParameterError(
                f"{model_path} holds weights only: say which architecture with --arch"
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
