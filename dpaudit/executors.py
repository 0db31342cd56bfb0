"""Where repeated work (audit runs, shadow models) executes: any ``concurrent.futures.Executor``.

``make_executor("process", workers)`` for local parallelism, ``"thread"``, or ``"inline"``
(synchronous, for tests and debugging). Pass your own executor (e.g. a distributed backend
implementing ``submit``) to :func:`dpaudit.audit.audit` or :func:`dpaudit.attacks.lira.lira`
to run elsewhere. Process executors need picklable tasks (module-level functions and classes).
Process pools use the ``spawn`` start method (safe with torch and threads) and give each
worker ``threads_per_worker`` torch threads.
"""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Callable
from typing import Any

from dpaudit.errors import InvalidParameterError

EXECUTORS = ("inline", "thread", "process")


class InlineExecutor(cf.Executor):
    """Runs each submitted call immediately in the caller's thread."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future:
        fut: cf.Future = cf.Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - delivered through the future
            fut.set_exception(exc)
        return fut


def _init_worker(threads: int) -> None:
    """Process-pool initializer: bound torch's intra-op threads (if torch is used at all)."""
    import os

    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    try:
        import torch
    except ImportError:  # pragma: no cover - pure-numpy workloads
        return
    torch.set_num_threads(max(1, int(threads)))


def make_executor(
    kind: str | cf.Executor | None = "inline",
    workers: int | None = None,
    threads_per_worker: int = 1,
) -> cf.Executor:
    """An executor by name (``inline``, ``thread``, ``process``) or the one given.

    ``workers`` defaults to the CPUs this process may use (:func:`dpaudit.runtime.available_cpus`,
    the affinity mask), not ``os.cpu_count()``."""
    if isinstance(kind, cf.Executor):
        return kind
    if kind in (None, "inline"):
        return InlineExecutor()
    if workers is None:
        from dpaudit.runtime import available_cpus

        workers = available_cpus()
    if int(workers) < 1:
        raise InvalidParameterError(f"workers must be >= 1, got {workers!r}")
    if kind == "thread":
        return cf.ThreadPoolExecutor(max_workers=workers)
    if kind == "process":
        import multiprocessing as mp

        return cf.ProcessPoolExecutor(
            max_workers=workers, mp_context=mp.get_context("spawn"),
            initializer=_init_worker, initargs=(threads_per_worker,),
        )
    raise InvalidParameterError(f"executor must be one of {EXECUTORS}, got {kind!r}")


def chunks(n: int, parts: int) -> list[range]:
    """Split ``range(n)`` into at most ``parts`` contiguous chunks."""
    parts = max(1, min(parts, n))
    size = -(-n // parts)
    return [range(s, min(n, s + size)) for s in range(0, n, size)]
