"""Data sets for the reference trainer: images as float32 in [0, 1], shape (N, C, H, W).

* ``digits``: scikit-learn's bundled 8x8 handwritten digits (UCI ML "Optical Recognition of
  Handwritten Digits", 1797 images, 16 grey levels). No download. Split once with a fixed
  permutation (seed 0) into 1437 train / 360 test images, so every run sees the same test set.
* ``mnist`` / ``fashion-mnist``: the standard IDX ``.gz`` files (LeCun et al. 1998; Xiao et al.
  2017), 60000 train / 10000 test, read from ``data_dir`` or ``$DPAUDIT_DATA``. Accepted
  layouts: ``D/train-images-idx3-ubyte.gz``, ``D/<name>/...``, ``D/<name>/raw/...`` and the
  torchvision layout ``D/MNIST/raw/...`` / ``D/FashionMNIST/raw/...``. Nothing is downloaded.
* ``cifar10``: the official python batches (Krizhevsky 2009), 50000 train / 10000 test colour
  images (3, 32, 32), read by :mod:`dpaudit.training.cifar` without unpickling arbitrary
  objects, from ``data_dir`` or ``$DPAUDIT_DATA`` (torchvision layout
  ``D/cifar-10-batches-py/``, or that folder itself, or ``D/cifar-10/cifar-10-batches-py/``).

The members / held-out split of the training set is made by the trainer (seeded, recorded in
the model's metadata), not here.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dpaudit.errors import InvalidParameterError

DATASETS: tuple[str, ...] = ("digits", "mnist", "fashion-mnist", "cifar10")

#: The digits test split size and the seed of its fixed permutation.
DIGITS_TEST_SIZE = 360
DIGITS_SPLIT_SEED = 0

_IDX_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}
_TORCHVISION_DIR = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}


@dataclass(frozen=True)
class Dataset:
    """An image classification data set.

    Attributes:
        name: ``digits``, ``mnist``, ``fashion-mnist`` (or a user's name).
        x_train, x_test: float32 arrays in [0, 1], shape (N, C, H, W).
        y_train, y_test: int64 class labels, shape (N,).
        num_classes: number of classes.
        input_shape: (C, H, W).
        features: ``None`` for pixels; for a fixed feature map of the images (e.g.
            :mod:`dpaudit.training.features`), its description (kind and parameters), which
            the model's metadata records.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    input_shape: tuple[int, int, int]
    features: dict | None = None

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.ndim != 4 or x.shape[0] != y.shape[0]:
                raise InvalidParameterError(
                    f"{split} images must be (N, C, H, W) with one label each; "
                    f"got {x.shape} and {y.shape}"
                )
            if tuple(x.shape[1:]) != tuple(self.input_shape):
                raise InvalidParameterError(f"{split} images do not have shape {self.input_shape}")


def _dataset_key(name: str) -> str:
    key = name.lower().replace("_", "-")
    key = {"fashion": "fashion-mnist", "cifar-10": "cifar10"}.get(key, key)
    if key not in DATASETS:
        raise InvalidParameterError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return key


def load_dataset(name: str = "digits", data_dir: str | None = None) -> Dataset:
    """Load ``digits`` (bundled), ``mnist`` or ``fashion-mnist`` (IDX files in ``data_dir``
    or ``$DPAUDIT_DATA``) or ``cifar10`` (python batches, same places)."""
    key = _dataset_key(name)
    if key == "digits":
        return _load_digits()
    if key == "cifar10":
        return _load_cifar10(data_dir)
    return _load_idx_dataset(key, data_dir)


def check_dataset(name: str, data_dir: str | None = None) -> None:
    """Refuse, without reading them, an unknown data set or one whose files are not there."""
    key = _dataset_key(name)
    if key == "cifar10":
        from dpaudit.training.cifar import find_cifar_dir

        find_cifar_dir(data_dir)
    elif key != "digits":
        find_idx_dir(key, data_dir)


def dataset_files(name: str, data_dir: str | None = None) -> list[Path]:
    """The files a data set is read from (empty for the bundled ``digits``), e.g. to key a
    cache on their contents."""
    key = _dataset_key(name)
    if key == "digits":
        return []
    if key == "cifar10":
        from dpaudit.training.cifar import cifar_files

        return cifar_files(data_dir)
    folder = find_idx_dir(key, data_dir)
    return [folder / f for f in _IDX_FILES.values()]


def _load_cifar10(data_dir: str | None) -> Dataset:
    from dpaudit.training.cifar import SHAPE, load_cifar10

    x_train, y_train, x_test, y_test = load_cifar10(data_dir)
    return Dataset(
        name="cifar10",
        x_train=x_train.astype(np.float32) / np.float32(255.0),
        y_train=y_train,
        x_test=x_test.astype(np.float32) / np.float32(255.0),
        y_test=y_test,
        num_classes=10,
        input_shape=SHAPE,
    )


def _load_digits() -> Dataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = d.target.astype(np.int64)
    perm = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(y))
    test, train = perm[:DIGITS_TEST_SIZE], perm[DIGITS_TEST_SIZE:]
    return Dataset(
        name="digits",
        x_train=np.ascontiguousarray(x[train]),
        y_train=y[train],
        x_test=np.ascontiguousarray(x[test]),
        y_test=y[test],
        num_classes=10,
        input_shape=(1, 8, 8),
    )


def find_idx_dir(name: str, data_dir: str | None) -> Path:
    """The folder holding ``name``'s four IDX files (see the module docstring for layouts)."""
    root = data_dir or os.environ.get("DPAUDIT_DATA")
    if not root:
        raise InvalidParameterError(
            f"dataset {name!r} needs its IDX .gz files: pass --data-dir DIR or set $DPAUDIT_DATA"
        )
    base = Path(root).expanduser()
    candidates = [
        base,
        base / name,
        base / name / "raw",
        base / _TORCHVISION_DIR[name] / "raw",
        base / _TORCHVISION_DIR[name],
    ]
    for c in candidates:
        if all((c / f).is_file() for f in _IDX_FILES.values()):
            return c
    raise InvalidParameterError(
        f"could not find {name} IDX files ({_IDX_FILES['x_train']} etc.) under {base}"
    )


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file (optionally gzip-compressed): unsigned bytes only (type 0x08).

    Format (LeCun et al., http://yann.lecun.com/exdb/mnist/): two zero bytes, a type byte, the
    number of dimensions, then one big-endian uint32 per dimension, then the data."""
    p = Path(path)
    try:
        if p.suffix == ".gz":
            with gzip.open(p, "rb") as fh:
                raw = fh.read()
        else:
            raw = p.read_bytes()
    except EOFError:
        raise InvalidParameterError(f"{p}: truncated gzip file (the compressed data end early)") from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise InvalidParameterError(f"{p}: corrupt gzip file ({exc})") from None
    except OSError as exc:
        raise InvalidParameterError(f"cannot read IDX file {p}: {exc.strerror or exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise InvalidParameterError(
            f"{p} is not an unsigned-byte IDX file (its first bytes are {raw[:4].hex()}, expected 000008..)"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise InvalidParameterError(f"{p}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    size = math.prod(dims) if dims else 0
    if len(raw) - header != size:
        raise InvalidParameterError(
            f"{p}: truncated or padded IDX file (header announces {size} data bytes, found {len(raw) - header})"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _load_idx_dataset(name: str, data_dir: str | None) -> Dataset:
    folder = find_idx_dir(name, data_dir)
    arrays = {k: read_idx(folder / f) for k, f in _IDX_FILES.items()}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or y.ndim != 1 or x.shape[0] != y.shape[0]:
            raise InvalidParameterError(f"{name} {split} IDX files have inconsistent shapes")
        if y.size and int(y.max()) >= 10:
            raise InvalidParameterError(f"{name} {split} labels must be 0..9, found {int(y.max())}")
    h, w = arrays["x_train"].shape[1:]
    return Dataset(
        name=name,
        x_train=(arrays["x_train"].astype(np.float32) / 255.0)[:, None],
        y_train=arrays["y_train"].astype(np.int64),
        x_test=(arrays["x_test"].astype(np.float32) / 255.0)[:, None],
        y_test=arrays["y_test"].astype(np.int64),
        num_classes=10,
        input_shape=(1, int(h), int(w)),
    )
