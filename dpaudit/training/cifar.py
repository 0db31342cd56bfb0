"""CIFAR-10, python version (Krizhevsky 2009, "Learning Multiple Layers of Features from Tiny
Images"), read without unpickling arbitrary objects.

The official ``cifar-10-batches-py/`` folder holds ``data_batch_1`` .. ``data_batch_5`` (the
50,000 training images, in order) and ``test_batch`` (10,000): each a Python-2 pickle
(protocol 2) of a dict with ``batch_label`` (str), ``labels`` (10,000 ints 0..9), ``data``
(a numpy uint8 array (10000, 3072): per row the 1024 red values, then green, then blue, each
32x32 plane row-major) and ``filenames``.

A pickle is a program: ``pickle.load`` runs whatever callables the file names. The official
batches name exactly three globals -- ``numpy.core.multiarray._reconstruct``, ``numpy.ndarray``
and ``numpy.dtype`` -- to rebuild the ``data`` array. :class:`_BatchUnpickler` maps those three
names (and their ``numpy._core`` spelling, which numpy 2 writes) to inert stand-ins that only
*record* their arguments, and refuses every other global before anything is called. The
recorded array (dtype, shape, bytes) is then checked -- uint8, (n, 3072), as many bytes as the
shape needs -- and built with :func:`numpy.frombuffer`. So no numpy code runs on the file's
arguments, and a file that asks for ``os.system`` (or anything else) is refused with one line.

Layouts accepted under ``data_dir`` / ``$DPAUDIT_DATA`` (torchvision's and the shared copy's):
``D/`` itself, ``D/cifar-10-batches-py/``, ``D/cifar-10/cifar-10-batches-py/``,
``D/cifar10/cifar-10-batches-py/``.
"""

from __future__ import annotations

import io
import math
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from dpaudit.errors import InvalidParameterError

#: File names of the official python version (training batches in order, then the test batch).
TRAIN_FILES: tuple[str, ...] = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
FOLDER = "cifar-10-batches-py"
#: Pixels per image (3 x 32 x 32) and the image shape (C, H, W).
ROW = 3072
SHAPE = (3, 32, 32)
#: Largest batch file read (the official ones are 31 MB).
MAX_FILE_BYTES = 512 * 2**20


class _NdarrayMarker:
    """Stands for ``numpy.ndarray`` (never instantiated)."""


class _DType:
    """Stands for ``numpy.dtype(name, align, copy)``: records the type name only."""

    def __init__(self, name: Any = None, *_: Any) -> None:
        self.name = name

    def __setstate__(self, state: Any) -> None:  # byte order etc.; a uint8 has none
        self.state = state


class _ArrayRecord:
    """Stands for ``numpy.core.multiarray._reconstruct(ndarray, (0,), b'b')`` followed by
    ``ndarray.__setstate__((version, shape, dtype, is_fortran, raw))``: records them."""

    def __init__(self, cls: Any = None, *_: Any) -> None:
        if cls is not _NdarrayMarker:
            raise pickle.UnpicklingError("array reconstruction of a type other than numpy.ndarray")
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def to_array(self) -> np.ndarray:
        """The recorded array, if it is a C-ordered uint8 array whose bytes match its shape."""
        st = self.state
        if not (isinstance(st, tuple) and len(st) == 5):
            raise ValueError("array state is not (version, shape, dtype, fortran, data)")
        _, shape, dtype, fortran, raw = st
        if not isinstance(dtype, _DType) or dtype.name not in ("u1", "uint8"):
            name = getattr(dtype, "name", dtype)
            raise ValueError(f"the image array has type {name!r}, expected uint8")
        if fortran or not isinstance(shape, tuple) or not all(
                isinstance(s, int) and s >= 0 for s in shape):
            raise ValueError(f"the image array has shape {shape!r} (or Fortran order)")
        if isinstance(raw, str):  # a Python-2 str read with encoding latin1
            raw = raw.encode("latin1")
        if not isinstance(raw, (bytes, bytearray)) or len(raw) != math.prod(shape):
            raise ValueError(f"the image array holds {len(raw) if isinstance(raw, (bytes, bytearray)) else '?'} "
                             f"bytes, its shape {shape} needs {math.prod(shape)}")
        return np.frombuffer(bytes(raw), dtype=np.uint8).reshape(shape)


#: The only globals a batch file may name, mapped to the inert stand-ins above.
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _ArrayRecord,
    ("numpy._core.multiarray", "_reconstruct"): _ArrayRecord,
    ("numpy", "ndarray"): _NdarrayMarker,
    ("numpy", "dtype"): _DType,
}


class RefusedGlobal(pickle.UnpicklingError):
    """A batch file named a global outside :data:`ALLOWED_GLOBALS`."""


class _BatchUnpickler(pickle.Unpickler):
    """Refuses every global but the three the official batches use (see module docstring)."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise RefusedGlobal(f"{module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed")


def read_batch(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> (images uint8 (n, 3, 32, 32), labels int64 (n,)).

    Raises :class:`InvalidParameterError` with one line naming the file for a missing,
    oversized, truncated or corrupt file, one that names any other global, or contents that
    are not a CIFAR-10 batch (wrong keys, types, shapes, labels outside 0..9)."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise InvalidParameterError(f"{p}: {size} bytes is too large for a CIFAR-10 batch")
        raw = p.read_bytes()
    except OSError as exc:
        raise InvalidParameterError(f"cannot read CIFAR-10 batch {p}: {exc.strerror or exc}") from None
    try:
        obj = _BatchUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except RefusedGlobal as exc:
        raise InvalidParameterError(
            f"{p}: refused: the file asks for the Python global {exc} (a CIFAR-10 batch needs only "
            "numpy's array reconstruction); nothing in it was run") from None
    except Exception as exc:  # any malformed pickle: EOFError, UnpicklingError, TypeError, ...
        raise InvalidParameterError(
            f"{p}: corrupt or truncated CIFAR-10 batch ({type(exc).__name__}: {exc})") from None
    try:
        return _batch_arrays(obj)
    except ValueError as exc:
        raise InvalidParameterError(f"{p}: not a CIFAR-10 batch: {exc}") from None


def _batch_arrays(obj: Any) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(obj, dict) or "data" not in obj or "labels" not in obj:
        raise ValueError("expected a dict with 'data' and 'labels'")
    data, labels = obj["data"], obj["labels"]
    if not isinstance(data, _ArrayRecord):
        raise ValueError("'data' is not a numpy array")
    x = data.to_array()
    if x.ndim != 2 or x.shape[1] != ROW:
        raise ValueError(f"'data' has shape {x.shape}, expected (n, {ROW})")
    if not isinstance(labels, list) or not all(isinstance(v, int) and not isinstance(v, bool)
                                                for v in labels):
        raise ValueError("'labels' is not a list of integers")
    y = np.asarray(labels, dtype=np.int64)
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"{x.shape[0]} images but {y.shape[0]} labels")
    if y.size and (y.min() < 0 or y.max() > 9):
        raise ValueError(f"labels must be 0..9, found {int(y.min())}..{int(y.max())}")
    return x.reshape(-1, *SHAPE), y


def find_cifar_dir(data_dir: str | None) -> Path:
    """The folder holding the six batch files (see the module docstring for layouts)."""
    root = data_dir or os.environ.get("DPAUDIT_DATA")
    if not root:
        raise InvalidParameterError(
            "dataset 'cifar10' needs the CIFAR-10 python batches (cifar-10-batches-py/): pass "
            "--data-dir DIR or set $DPAUDIT_DATA")
    base = Path(root).expanduser()
    names = (*TRAIN_FILES, TEST_FILE)
    for c in (base, base / FOLDER, base / "cifar-10" / FOLDER, base / "cifar10" / FOLDER):
        if all((c / f).is_file() for f in names):
            return c
    raise InvalidParameterError(
        f"could not find the CIFAR-10 python batches ({FOLDER}/data_batch_1 .. test_batch) under {base}")


def cifar_files(data_dir: str | None) -> list[Path]:
    """The six batch files, training batches first."""
    folder = find_cifar_dir(data_dir)
    return [folder / f for f in (*TRAIN_FILES, TEST_FILE)]


def load_cifar10(data_dir: str | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train uint8 (50000, 3, 32, 32), y_train, x_test uint8 (10000, 3, 32, 32), y_test)."""
    files = cifar_files(data_dir)
    parts = [read_batch(f) for f in files]
    x_train = np.concatenate([x for x, _ in parts[:-1]])
    y_train = np.concatenate([y for _, y in parts[:-1]])
    x_test, y_test = parts[-1]
    return x_train, y_train, x_test, y_test
