"""Fixed (non-learned) features of the images: the ScatterNet of Tramer & Boneh 2021.

Tramer & Boneh 2021 ("Differentially Private Learning Needs Better Features (or Much More
Data)", ICLR, Sec. 3) train linear models and small CNNs with DP-SGD on the scattering
transform of Oyallon & Mallat 2015: a cascade of Morlet wavelet convolutions, moduli and a
low-pass average, with scale J = 2 and L = 8 orientations up to order 2. An image with C
channels of H x W pixels becomes C * K channels of (H / 2^J) x (W / 2^J) coefficients, with
K = 1 + J L + L^2 J (J - 1) / 2 = 81 for J = 2, L = 8: 81 x 7 x 7 for MNIST, 243 x 8 x 8 for
CIFAR-10. The transform uses no data, so computing it costs no privacy; how the features are
normalised (GroupNorm, or private data statistics) is the model's ``input_norm`` option
(:mod:`dpaudit.training.archs`, :mod:`dpaudit.training.datanorm`).

The transform is ``kymatio``'s ``Scattering2D`` (Andreux et al. 2020; optional dependency:
``pip install 'dpaudit[features]'``). Features are computed once per data set and cached in
``cache_dir`` (default ``$DPAUDIT_CACHE/features`` or ``~/.cache/dpaudit/features``): one
folder per key, the key being the SHA-256 of the data's digests (of the data files when the
data set is exactly what was read from them, else of its arrays) and the transform's
parameters (kind, J, L, order, kymatio version, format). A folder is written under
a temporary name and renamed into place, so a cache entry is complete or absent; arrays are
``.npy`` files read with ``allow_pickle=False`` and memory-mapped copy-on-write.

This module imports torch and kymatio only inside the functions that compute features.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dpaudit.errors import InvalidParameterError
from dpaudit.training.data import Dataset, dataset_files

if TYPE_CHECKING:
    from torch import nn

#: Feature maps the trainer knows (``none``: the pixels).
FEATURES: tuple[str, ...] = ("none", "scatternet")
#: Version of the cache layout (part of the key).
CACHE_FORMAT = 1
_ARRAYS = ("x_train", "y_train", "x_test", "y_test")


@dataclass(frozen=True)
class ScatterNet:
    """Parameters of the scattering transform (Tramer & Boneh 2021 use J = 2, L = 8, order 2)."""

    J: int = 2
    L: int = 8
    max_order: int = 2

    @property
    def channels_per_input(self) -> int:
        """K, output channels per input channel (81 for J = 2, L = 8, order 2)."""
        k = 1 + self.J * self.L
        if self.max_order >= 2:
            k += self.L**2 * self.J * (self.J - 1) // 2
        return k

    def output_shape(self, image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        c, h, w = image_shape
        s = 2**self.J
        return c * self.channels_per_input, -(-h // s), -(-w // s)

    def describe(self, image_shape: tuple[int, int, int]) -> dict[str, Any]:
        return {"kind": "scatternet", **asdict(self), "image_shape": list(image_shape)}


def check_features(kind: str) -> None:
    """Refuse an unknown feature map, or ``scatternet`` without kymatio installed (before
    torch is imported)."""
    if kind not in FEATURES:
        raise InvalidParameterError(f"features must be one of {', '.join(FEATURES)}, got {kind!r}")
    if kind == "scatternet" and importlib.util.find_spec("kymatio") is None:
        raise InvalidParameterError(
            "ScatterNet features need the kymatio package: pip install 'dpaudit[features]'")


def default_cache_dir() -> Path:
    """``$DPAUDIT_CACHE/features`` if set, else ``~/.cache/dpaudit/features``."""
    root = os.environ.get("DPAUDIT_CACHE")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "dpaudit") / "features"


_DIGESTS: dict[tuple[str, int, int], str] = {}


def _file_digest(path: Path) -> str:
    """SHA-256 of a file (remembered per process for the same path, size and mtime)."""
    st = path.stat()
    memo = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if memo in _DIGESTS:
        return _DIGESTS[memo]
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    _DIGESTS[memo] = h.hexdigest()
    return _DIGESTS[memo]


def cache_key(dataset: str, data_dir: str | None, spec: ScatterNet, data: Dataset | None = None) -> str:
    """SHA-256 (hex, 24 characters) of the data's digests and the transform's parameters.

    With ``data`` the digests are of its decoded arrays (a data set built or modified in
    memory, e.g. with canaries, never reads another's features); without, of the data set's
    files in ``data_dir`` (the bundled digits: the scikit-learn release that ships them)."""
    if data is not None:
        digests = [hashlib.sha256(np.ascontiguousarray(getattr(data, k)).data).hexdigest() for k in _ARRAYS]
        source = "arrays"
    else:
        files = dataset_files(dataset, data_dir)
        if files:
            digests = [_file_digest(f) for f in files]
        else:
            import sklearn

            digests = [f"sklearn-{sklearn.__version__}"]
        source = "files"
    payload = {"dataset": dataset, "files": digests, "transform": asdict(spec), "kind": "scatternet",
               "kymatio": _kymatio_version(), "format": CACHE_FORMAT}
    if source == "arrays":
        payload["source"] = source
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def _kymatio_version() -> str:
    try:
        from importlib.metadata import version

        return version("kymatio")
    except Exception:  # not installed: the key is never used to compute then
        return "absent"


def scatternet_module(image_shape: tuple[int, int, int], spec: ScatterNet = ScatterNet()) -> nn.Module:
    """A torch module mapping images (N, C, H, W) to features (N, C*K, H/4, W/4)."""
    import torch
    from torch import nn

    scattering = _kymatio_scattering2d()(J=spec.J, shape=tuple(image_shape[1:]), L=spec.L,
                                         max_order=spec.max_order)

    class _Scatter(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scattering = scattering

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.scattering(x.contiguous())
            return y.reshape(y.shape[0], -1, *y.shape[-2:])

    return _Scatter()


def _kymatio_scattering2d() -> Any:
    """kymatio's torch ``Scattering2D``. kymatio 0.3's package import reaches its 3-D module,
    which imports ``scipy.special.sph_harm`` (removed in SciPy 1.17, replaced by
    ``sph_harm_y`` with the angles swapped and (n, m) reordered); the 2-D transform never
    calls it. When SciPy lacks it, an equivalent is provided for the duration of the import
    only."""
    try:
        import scipy.special as sp
    except ImportError:  # pragma: no cover - scipy is a dependency
        sp = None
    shim = sp is not None and not hasattr(sp, "sph_harm") and hasattr(sp, "sph_harm_y")
    if shim:
        sp.sph_harm = lambda m, n, azimuth, polar: sp.sph_harm_y(n, m, polar, azimuth)
    try:
        from kymatio.torch import Scattering2D
    except ImportError as exc:
        raise InvalidParameterError(
            f"ScatterNet features need the kymatio package ({exc}): pip install 'dpaudit[features]'"
        ) from None
    finally:
        if shim:
            del sp.sph_harm
    return Scattering2D


def compute_features(x: np.ndarray, module: Callable[[Any], Any], batch: int = 1000,
                     device: str = "cpu") -> np.ndarray:
    """``module`` applied to the images ``x`` (float32, (N, C, H, W)) in batches, float32."""
    import torch

    out: np.ndarray | None = None
    with torch.no_grad():
        for i in range(0, len(x), batch):
            y = module(torch.from_numpy(np.ascontiguousarray(x[i:i + batch])).to(device)).cpu().numpy()
            if out is None:
                out = np.empty((len(x), *y.shape[1:]), dtype=np.float32)
            out[i:i + len(y)] = y
    if out is None:
        raise InvalidParameterError("no images to transform")
    return out


def scatternet_dataset(data: Dataset, data_dir: str | None = None, *, cache_dir: str | None = None,
                       spec: ScatterNet = ScatterNet(), device: str = "cpu",
                       from_files: bool = False) -> Dataset:
    """``data`` with its images replaced by their ScatterNet features (from the cache when
    present, else computed and cached). The returned :class:`Dataset` records the transform
    in ``features``.

    ``from_files``: ``data`` is exactly what :func:`~dpaudit.training.data.load_dataset` read
    from ``data_dir``, so the cache is keyed on the files' digests (cheap to recheck);
    otherwise on the arrays themselves (:func:`cache_key`)."""
    folder = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    key = cache_key(data.name, data_dir, spec, data=None if from_files else data)
    entry = folder / f"{data.name}-scatternet-J{spec.J}-L{spec.L}-{key}"
    desc = {**spec.describe(data.input_shape), "cache_key": key}
    shape = spec.output_shape(data.input_shape)
    arrays = _read_entry(entry, shape)
    if arrays is not None and not (np.array_equal(arrays["y_train"], data.y_train)
                                   and np.array_equal(arrays["y_test"], data.y_test)):
        arrays = None  # not this data set's features (never expected: the key covers the data)
    if arrays is None:
        module = scatternet_module(data.input_shape, spec).to(device)
        arrays = {"x_train": compute_features(data.x_train, module, device=device), "y_train": data.y_train,
                  "x_test": compute_features(data.x_test, module, device=device), "y_test": data.y_test}
        _write_entry(entry, arrays, desc)
        arrays = _read_entry(entry, shape) or arrays
    return Dataset(name=data.name, x_train=arrays["x_train"], y_train=np.asarray(arrays["y_train"]),
                   x_test=arrays["x_test"], y_test=np.asarray(arrays["y_test"]),
                   num_classes=data.num_classes, input_shape=shape, features=desc)


def _read_entry(entry: Path, shape: tuple[int, int, int]) -> dict[str, np.ndarray] | None:
    """The cached arrays (images memory-mapped copy-on-write), or ``None`` if the entry is
    absent or does not hold what it should (then it is recomputed)."""
    if not entry.is_dir():
        return None
    try:
        out = {k: np.load(entry / f"{k}.npy", mmap_mode="c" if k.startswith("x") else None,
                          allow_pickle=False) for k in _ARRAYS}
    except (OSError, ValueError):
        return None
    ok = all(out[f"x_{s}"].ndim == 4 and tuple(out[f"x_{s}"].shape[1:]) == shape
             and out[f"x_{s}"].dtype == np.float32 and len(out[f"y_{s}"]) == len(out[f"x_{s}"])
             for s in ("train", "test"))
    return out if ok else None


def _write_entry(entry: Path, arrays: dict[str, np.ndarray], desc: dict[str, Any]) -> None:
    """Write a cache entry atomically: a temporary sibling folder renamed into place (if
    another process got there first, its entry is kept)."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    try:
        for k in _ARRAYS:
            np.save(tmp / f"{k}.npy", np.asarray(arrays[k]), allow_pickle=False)
        (tmp / "features.json").write_text(json.dumps(desc, indent=1))
        try:
            os.rename(tmp, entry)
        except OSError:
            if not entry.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def image_model(model: nn.Module, metadata: dict[str, Any]) -> nn.Module:
    """A model trained on features, as a model of images: the recorded feature map
    (``metadata["features"]``) followed by ``model``. Models trained on pixels are returned
    unchanged."""
    feats = metadata.get("features")
    if not feats:
        return model
    from torch import nn

    if feats.get("kind") != "scatternet":
        raise InvalidParameterError(f"unknown feature map {feats.get('kind')!r} in the metadata")
    spec = ScatterNet(J=int(feats["J"]), L=int(feats["L"]), max_order=int(feats["max_order"]))
    device = next(model.parameters()).device
    front = scatternet_module(tuple(feats["image_shape"]), spec).to(device)
    return nn.Sequential(front, model).eval()
