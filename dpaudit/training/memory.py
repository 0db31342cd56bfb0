"""Process memory policy for training: glibc's mmap threshold.

A DP step allocates and frees large temporaries (activations, per-example gradient blocks,
noise). glibc serves an allocation of at least ``M_MMAP_THRESHOLD`` bytes with its own
``mmap`` and returns it to the system on ``free``; smaller ones come from the heap. By default
the threshold is *dynamic*: each time a mmapped block is freed, glibc raises the threshold to
that block's size (up to 32 MiB on 64-bit systems), so after the first steps the large
temporaries come from the heap, which then fragments and holds freed memory (mallopt(3),
"M_MMAP_THRESHOLD"; glibc malloc/malloc.c, ``mp_.no_dyn_threshold``). With the previous
clipping engine a ``dpaudit train --dataset mnist`` run peaked at 2.26 GB RSS, the heap growing
from 0.84 to 1.25 GB over the first 58 steps (issue 12); with the micro-batched engine the first
3 epochs peak at 0.79-0.81 GB with glibc's default and 0.73 GB with the 8 MiB threshold
(docs/benchmarks.md).

Setting the threshold explicitly (``mallopt(M_MMAP_THRESHOLD, n)``) fixes it at ``n`` and turns
the dynamic adjustment off: blocks of ``n`` bytes or more are mapped on allocation and unmapped
on free, so they never fragment the heap. The cost is one ``mmap``/``munmap`` pair and fresh
(zeroed) pages per large temporary; docs/benchmarks.md has the measured effect on RSS and step
time. Only glibc has ``mallopt``; elsewhere (macOS, musl, Windows) this is a no-op.

The value comes from ``$DPAUDIT_MMAP_THRESHOLD`` (bytes; ``0`` leaves the allocator alone),
default :data:`DEFAULT_MMAP_THRESHOLD`. It is a process-wide setting: it affects every later
allocation of the process, which is why it is made once, when a process starts training.
"""

from __future__ import annotations

import ctypes
import os
import platform

from dpaudit.errors import InvalidParameterError

#: mallopt's parameter number for M_MMAP_THRESHOLD (glibc malloc.h).
M_MMAP_THRESHOLD = -3
#: glibc's largest accepted threshold on 64-bit systems (HEAP_MAX_SIZE / 2 = 32 MiB).
MAX_MMAP_THRESHOLD = 32 * 1024 * 1024
#: Default fixed threshold (bytes): 8 MiB. Measured on the first 3 epochs of the default MNIST
#: run (docs/benchmarks.md, "Memory of a training run"): 8 MiB lowered peak RSS at no CPU cost;
#: 1 MiB lowered it further but cost ~40 % more CPU time (fresh zeroed pages for every
#: mid-sized temporary). Small tensors and Python objects keep using the heap.
DEFAULT_MMAP_THRESHOLD = 8 * 1024 * 1024
ENV_VAR = "DPAUDIT_MMAP_THRESHOLD"


def mmap_threshold_from_env() -> int:
    """The threshold in bytes from ``$DPAUDIT_MMAP_THRESHOLD`` (default
    :data:`DEFAULT_MMAP_THRESHOLD`; ``0`` = leave glibc's dynamic threshold alone)."""
    raw = os.environ.get(ENV_VAR, "").strip()
    if not raw:
        return DEFAULT_MMAP_THRESHOLD
    try:
        value = int(raw)
    except ValueError:
        raise InvalidParameterError(f"{ENV_VAR} must be a whole number of bytes, got {raw!r}") from None
    if not 0 <= value <= MAX_MMAP_THRESHOLD:
        raise InvalidParameterError(f"{ENV_VAR} must be between 0 and {MAX_MMAP_THRESHOLD} bytes, got {value}")
    return value


def set_mmap_threshold(nbytes: int | None = None) -> bool:
    """Fix glibc's mmap threshold at ``nbytes`` (default: :func:`mmap_threshold_from_env`).

    Returns True when the threshold was set; False on a C library without ``mallopt`` (not
    glibc), for ``nbytes == 0``, or when glibc refused the value."""
    value = mmap_threshold_from_env() if nbytes is None else int(nbytes)
    if not 0 <= value <= MAX_MMAP_THRESHOLD:
        raise InvalidParameterError(f"mmap threshold must be between 0 and {MAX_MMAP_THRESHOLD} bytes, got {value}")
    if value == 0 or platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, value))


__all__ = ["DEFAULT_MMAP_THRESHOLD", "MAX_MMAP_THRESHOLD", "mmap_threshold_from_env", "set_mmap_threshold"]
