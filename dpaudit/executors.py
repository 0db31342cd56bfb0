"""Where repeated work (audit runs, shadow models) executes: any ``concurrent.futures.Executor``.

``make_executor("process", workers)`` for local parallelism, ``"thread"``, or ``"inline"``
(synchronous, for tests and debugging). Pass your own executor (e.g. a distributed backend
implementing ``submit``) to :func:`dpaudit.audit.audit` or :func:`dpaudit.attacks.lira.lira`
to run elsewhere. Process executors need picklable tasks (module-level functions and classes).

Thread policy (with :mod:`dpaudit.runtime`, the only two places that size workers and
threads): ``process`` pools use the ``spawn`` start method (safe with torch and threads) and
give every worker exactly ``threads_per_worker`` compute threads
(:func:`dpaudit.runtime.configure_worker`: ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``/
``OPENBLAS_NUM_THREADS`` and torch's intra-op threads, overriding what the parent had), so a
pool keeps ``workers x threads_per_worker`` CPUs busy; ``workers`` defaults to
:func:`dpaudit.runtime.default_workers` (the CPUs of the affinity mask divided by
``threads_per_worker``). ``thread`` workers share this process's torch threads (set them with
:func:`dpaudit.runtime.configure_threads`) and default to the CPUs of the affinity mask;
``inline`` runs each call in the caller.
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


def make_executor(
    kind: str | cf.Executor | None = "inline",
    workers: int | None = None,
    threads_per_worker: int = 1,
) -> cf.Executor:
    """An executor by name (``inline``, ``thread``, ``process``) or the one given.

    Workers and threads follow the module's thread policy (see the module docstring)."""
    from dpaudit import runtime

    if isinstance(kind, cf.Executor):
        return kind
    if kind in (None, "inline"):
        return InlineExecutor()
    if kind not in EXECUTORS:
        raise InvalidParameterError(f"executor must be one of {', '.join(EXECUTORS)}, got {kind!r}")
    if int(threads_per_worker) < 1:
        raise InvalidParameterError(f"threads per worker must be >= 1, got {threads_per_worker!r}")
    if workers is None:
        workers = runtime.available_cpus() if kind == "thread" else runtime.default_workers(threads_per_worker)
    if int(workers) < 1:
        raise InvalidParameterError(f"workers must be >= 1, got {workers!r}")
    if kind == "thread":
        return cf.ThreadPoolExecutor(max_workers=int(workers))
    import multiprocessing as mp

    return cf.ProcessPoolExecutor(
        max_workers=int(workers), mp_context=mp.get_context("spawn"),
        initializer=runtime.configure_worker, initargs=(int(threads_per_worker),),
    )


def chunks(n: int, parts: int) -> list[range]:
    """Split ``range(n)`` into at most ``parts`` contiguous chunks."""
    parts = max(1, min(parts, n))
    size = -(-n // parts)
    return [range(s, min(n, s + size)) for s in range(0, n, size)]
