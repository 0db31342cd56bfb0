"""Where repeated work (audit runs, shadow models) executes: any ``concurrent.futures.Executor``.

``make_executor("process", workers)`` for local parallelism, ``"thread"``, ``"inline"``
(synchronous, for tests and debugging), or ``"ray"`` (Ray Core tasks on a local runtime or a
cluster: :mod:`dpaudit.ray_executor`, optional extra ``dpaudit[ray]``; Ray is imported only
when such an executor first runs work). Pass your own executor (any object implementing
``submit``) to :func:`dpaudit.audit.audit` or :func:`dpaudit.attacks.lira.lira` to run
elsewhere. Process executors need picklable tasks (module-level functions and classes).

Large inputs: ``handle = share(executor, obj)``, then pass ``handle`` as a direct argument of
``submit``; the task receives ``obj``. Executors that hold objects once for all their tasks
(:func:`shares_objects`: in-process ones, whose tasks see the object itself, and Ray, which
stores it once in its object store) make this cheap; for the others (process pools) the
object is copied into every task that receives it, so callers that can reload an input in
the worker (a data set from disk) pass it only when :func:`shares_objects` is true.

Thread policy (with :mod:`dpaudit.runtime`, the only two places that size workers and
threads): ``process`` pools use the ``spawn`` start method (safe with torch and threads) and
give every worker exactly ``threads_per_worker`` compute threads
(:func:`dpaudit.runtime.configure_worker`: ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``/
``OPENBLAS_NUM_THREADS`` and torch's intra-op threads, overriding what the parent had), so a
pool keeps ``workers x threads_per_worker`` CPUs busy; ``workers`` defaults to
:func:`dpaudit.runtime.default_workers` (the CPUs of the affinity mask divided by
``threads_per_worker``). ``thread`` workers share this process's torch threads (set them with
:func:`dpaudit.runtime.configure_threads`) and default to the CPUs of the affinity mask;
``inline`` runs each call in the caller. ``ray`` tasks ask Ray for ``threads_per_worker`` CPUs
each and run with that many threads (the same :func:`~dpaudit.runtime.configure_worker`); a
local Ray runtime has one CPU resource per CPU of the affinity mask, and ``workers`` (tasks in
flight) defaults to those CPUs divided by ``threads_per_worker``.
"""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Callable
from typing import Any

from dpaudit.errors import InvalidParameterError

#: Executor names :func:`make_executor` accepts.
EXECUTORS = ("inline", "thread", "process", "ray")


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
    *,
    address: str | None = None,
    device: str = "cpu",
) -> cf.Executor:
    """An executor by name (``inline``, ``thread``, ``process``, ``ray``) or the one given.

    Workers and threads follow the module's thread policy (see the module docstring).
    ``address`` and ``device`` are used by ``ray`` only (see
    :class:`dpaudit.ray_executor.RayExecutor`: ``address=None`` is ``$DPAUDIT_RAY_ADDRESS``
    or a local runtime; ``device`` ``cuda`` makes tasks ask for GPUs)."""
    from dpaudit import runtime

    if isinstance(kind, cf.Executor):
        return kind
    if kind in (None, "inline"):
        return InlineExecutor()
    if kind not in EXECUTORS:
        raise InvalidParameterError(f"executor must be one of {', '.join(EXECUTORS)}, got {kind!r}")
    if int(threads_per_worker) < 1:
        raise InvalidParameterError(f"threads per worker must be >= 1, got {threads_per_worker!r}")
    if kind == "ray":
        from dpaudit.ray_executor import RayExecutor

        return RayExecutor(workers, threads_per_worker, address=address, device=device)
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


def shares_objects(executor: cf.Executor) -> bool:
    """Whether :func:`share` gives ``executor``'s tasks an object without a copy per task:
    in-process executors (inline, thread pools) and executors with a ``share`` method (Ray)."""
    return isinstance(executor, (InlineExecutor, cf.ThreadPoolExecutor)) or callable(
        getattr(executor, "share", None))


def share(executor: cf.Executor, obj: Any) -> Any:
    """A handle to ``obj`` for ``executor``'s tasks: pass it as a direct argument of
    ``submit`` and the task receives ``obj``. ``executor.share(obj)`` where the executor has
    one (Ray: an ``ObjectRef``, the object stored once); else ``obj`` itself."""
    method = getattr(executor, "share", None)
    return method(obj) if callable(method) else obj


def chunks(n: int, parts: int) -> list[range]:
    """Split ``range(n)`` into at most ``parts`` contiguous chunks."""
    parts = max(1, min(parts, n))
    size = -(-n // parts)
    return [range(s, min(n, s + size)) for s in range(0, n, size)]
