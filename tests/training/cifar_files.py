"""Tiny CIFAR-10 batch files in the official format, for tests (no real data needed).

The official batches are Python-2 pickles (protocol 2): a dict whose ``data`` array is rebuilt
by ``numpy.core.multiarray._reconstruct`` + ``ndarray.__setstate__`` with the pixels as a
Python-2 ``str`` (opcode BINSTRING). Python 3 cannot write that form (it writes bytes through
``_codecs.encode``), so :func:`py2_batch` assembles the opcodes directly, as the official
files have them (same opcodes and globals; see ``pickletools.dis`` of ``test_batch``).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np


def _str(s: bytes) -> bytes:
    """SHORT_BINSTRING / BINSTRING (a Python-2 str)."""
    if len(s) < 256:
        return b"U" + bytes([len(s)]) + s
    return b"T" + struct.pack("<i", len(s)) + s


def _int(v: int) -> bytes:
    if 0 <= v < 256:
        return b"K" + bytes([v])  # BININT1
    if 0 <= v < 65536:
        return b"M" + struct.pack("<H", v)  # BININT2
    return b"J" + struct.pack("<i", v)  # BININT


def _array(data: np.ndarray, dtype: bytes = b"u1", module: bytes = b"numpy.core.multiarray") -> bytes:
    n, d = data.shape
    out = b"c" + module + b"\n_reconstruct\n"  # GLOBAL
    out += b"cnumpy\nndarray\n" + _int(0) + b"\x85" + _str(b"b") + b"\x87R"  # (ndarray, (0,), 'b') REDUCE
    out += b"(" + _int(1) + _int(n) + _int(d) + b"\x86"  # MARK version (n, d)
    out += b"cnumpy\ndtype\n" + _str(dtype) + b"\x89\x88\x87R"  # dtype('u1', False, True)
    out += b"(" + _int(3) + _str(b"|") + b"NNN" + b"J\xff\xff\xff\xffJ\xff\xff\xff\xff" + _int(0) + b"tb"
    out += b"\x89" + _str(data.tobytes()) + b"tb"  # fortran False, raw data; TUPLE BUILD
    return out


def py2_batch(images: np.ndarray, labels: list[int], *, dtype: bytes = b"u1",
              module: bytes = b"numpy.core.multiarray") -> bytes:
    """An official-format batch: ``images`` uint8 (n, 3072), ``labels`` n ints."""
    body = b"\x80\x02}(" + _str(b"batch_label") + _str(b"testing batch 1 of 1")
    body += _str(b"labels") + b"](" + b"".join(_int(v) for v in labels) + b"e"
    body += _str(b"data") + _array(images, dtype, module)
    body += _str(b"filenames") + b"](" + b"".join(_str(f"img_{i}.png".encode()) for i in range(len(labels))) + b"e"
    return body + b"u."


def write_cifar(folder: Path, n_per_batch: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Write data_batch_1..5 and test_batch into ``folder``; returns (x_train, y_train) as
    uint8 (N, 3072) rows and int labels, in file order."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    xs, ys = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        x = rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 10, n_per_batch)]
        (folder / name).write_bytes(py2_batch(x, y))
        if name != "test_batch":
            xs.append(x)
            ys += y
    return np.concatenate(xs), np.asarray(ys)
