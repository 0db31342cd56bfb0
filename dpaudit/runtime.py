"""Where work runs: CPU topology, torch threads and devices -- the one policy every layer uses.

Importing this module does not import torch; the functions that need it import it lazily.
Worker and thread counts come from the CPUs this process may use (its affinity mask), never
from ``os.cpu_count()`` alone.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from dpaudit.errors import InvalidParameterError

if TYPE_CHECKING:
    import torch


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads: ``threads`` if given, else leave an explicit
    ``$OMP_NUM_THREADS`` alone, else :func:`default_threads`.

    Measured on the 2-vCPU reference machine (bench/trainer.py, docs/benchmarks.md): when the
    machine is otherwise idle, 2 threads make a DP step of the MNIST CNN 1.5x faster than 1;
    when another process keeps a core busy, 2 threads are 3-8x *slower* (OpenMP workers
    spin-wait for a descheduled sibling) -- pass ``threads=1`` / ``--threads 1`` on a shared
    machine. Imports torch."""
    import torch

    if threads is not None:
        if int(threads) < 1:
            raise InvalidParameterError(f"threads must be >= 1, got {threads!r}")
        torch.set_num_threads(int(threads))
    elif not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(default_threads())
    return torch.get_num_threads()


def available_cpus() -> int:
    """Logical CPUs this process may run on (its affinity mask, e.g. under ``taskset``);
    ``os.cpu_count()`` where the platform has no affinity mask."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def physical_cores() -> int:
    """Physical cores this process may run on: CPUs in its affinity mask, counting SMT
    siblings once (Linux sysfs topology); the logical count where topology is unknown."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
    cores: set[str] = set()
    for c in cpus:
        try:
            with open(f"/sys/devices/system/cpu/cpu{c}/topology/thread_siblings_list") as f:
                cores.add(f.read().strip())
        except OSError:
            return len(cpus) or 1
    return len(cores) or 1


def default_threads() -> int:
    """min(physical cores, 4): the per-step products of DP-SGD on these models gain little
    beyond 4 threads."""
    return max(1, min(4, physical_cores()))


def default_workers(threads_per_worker: int = 1) -> int:
    """Worker processes that fit this process's CPUs (:func:`available_cpus`, the affinity
    mask) when each runs ``threads_per_worker`` threads: at least 1."""
    return max(1, available_cpus() // max(1, int(threads_per_worker)))


#: Environment variables that size the thread pools of OpenMP / MKL / OpenBLAS.
THREAD_ENV_VARS: tuple[str, ...] = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def configure_worker(threads: int) -> None:
    """Give a worker process ``threads`` compute threads, whatever its parent had: set the
    thread-pool variables of :data:`THREAD_ENV_VARS` (read by OpenMP, MKL and OpenBLAS when
    they load, e.g. when the worker first imports torch) and, if torch is already loaded,
    ``torch.set_num_threads``. :func:`configure_threads` then keeps it (``$OMP_NUM_THREADS``
    is set). Used as the initializer of :func:`dpaudit.executors.make_executor`'s process
    pools; does not import torch."""
    import sys

    n = int(threads)
    if n < 1:
        raise InvalidParameterError(f"threads per worker must be >= 1, got {threads!r}")
    for var in THREAD_ENV_VARS:
        os.environ[var] = str(n)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)


def resolve_device(device: str) -> torch.device:
    """The torch device named ``device`` (cpu, cuda, cuda:N, mps), refused with one line when
    it is unknown or not available here. Imports torch."""
    import torch

    try:
        dev = torch.device(device)
    except RuntimeError:
        raise InvalidParameterError(f"unknown device {device!r} (use cpu, cuda or cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InvalidParameterError(f"device {device!r} requested but CUDA is not available here")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise InvalidParameterError(f"device {device!r} requested but MPS is not available here")
    return dev
