"""A ``concurrent.futures.Executor`` that runs each submitted call as a Ray Core task.

Ray (https://docs.ray.io, optional extra ``dpaudit[ray]``) schedules the tasks on a local
runtime or on a cluster; results and errors come back through ordinary
:class:`concurrent.futures.Future` objects, so ``as_completed`` (progress bars) and
``future.result()`` work exactly as with the local executors of :mod:`dpaudit.executors`.

* **Where.** ``address=None``: ``$DPAUDIT_RAY_ADDRESS`` if set, else a local runtime started
  for this executor with one CPU resource per CPU of this process's affinity mask
  (:func:`dpaudit.runtime.available_cpus`, never ``os.cpu_count()``) and shut down by
  :meth:`RayExecutor.shutdown`; ``"local"`` forces a local runtime; ``"auto"`` (the cluster
  started on this machine by ``ray start --head``), ``"HOST:PORT"`` or ``"ray://HOST:PORT"``
  (Ray Client) join an existing cluster, which is left running. A process that already called
  ``ray.init`` keeps its runtime (the executor joins it and does not shut it down). The runtime
  starts at the first :meth:`~RayExecutor.submit` or :meth:`~RayExecutor.share`, once per
  executor: a command that never submits work never starts Ray, and Ray is imported only then.
* **Resources.** Each task asks for ``threads_per_worker`` CPUs and, when ``device`` is CUDA,
  ``gpus_per_task`` GPUs (default: the cluster's GPUs divided by ``workers``, at most 1 --
  several tasks share a GPU the way a process pool's workers do); Ray sets
  ``CUDA_VISIBLE_DEVICES`` for the task, so tasks name their device ``cuda``. A task runs
  with ``threads_per_worker`` compute threads (:func:`dpaudit.runtime.configure_worker`).
  ``workers`` caps the tasks in flight (default: the local runtime's CPUs divided by
  ``threads_per_worker``; no cap on a cluster, where Ray's resource scheduling limits them).
* **Large inputs.** :meth:`RayExecutor.share` stores an object once in Ray's object store and
  returns its ``ObjectRef``; passed as a direct argument of ``submit``, each task receives the
  object (Ray resolves top-level references), so a data set travels to each node once rather
  than once per task.
* **Failures.** A task whose worker dies (killed, out of memory, node lost) is rerun by Ray up
  to ``max_retries`` times (``$RAY_task_oom_retries`` is set to the same bound when unset, so
  retries after the memory monitor's kills are bounded too); after that its future raises one
  :class:`TaskFailedError` naming the task. An exception raised by the task's own code is not
  retried (it would fail again) and is delivered as that exception, as by the local executors.
* **Cancellation.** ``shutdown(cancel_futures=True)`` -- also what leaving a ``with`` block on
  an exception (e.g. Ctrl-C, ``KeyboardInterrupt``) does -- cancels queued and running tasks
  and shuts the runtime down if the executor started it.

Determinism is the caller's: dpaudit seeds every task from its index, never from the worker
that runs it, so Ray, process pools and inline execution give the same numbers.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import contextlib
import importlib.util
import itertools
import logging
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

from dpaudit.errors import DPAuditError, InvalidParameterError

#: Environment variable holding the default cluster address.
ADDRESS_ENV = "DPAUDIT_RAY_ADDRESS"
#: Reruns of a task whose worker died before its failure is reported (Ray's own default).
DEFAULT_MAX_RETRIES = 3


class TaskFailedError(DPAuditError, RuntimeError):
    """A task failed for a reason outside its own code (its worker died, ran out of memory,
    lost its node) and still failed after its retries."""


def require_ray() -> None:
    """Refuse with one line when Ray is not installed (does not import it)."""
    if importlib.util.find_spec("ray") is None:
        raise InvalidParameterError("the ray executor needs Ray: pip install 'dpaudit[ray]'")


def resolve_address(address: str | None) -> str | None:
    """The cluster to join, or ``None`` for a local runtime: ``address`` if given, else
    ``$DPAUDIT_RAY_ADDRESS``; ``""`` and ``"local"`` mean a local runtime."""
    if address is None:
        address = os.environ.get(ADDRESS_ENV) or None
    if address is None:
        return None
    address = address.strip()
    if address in ("", "local"):
        return None
    if any(c.isspace() for c in address):
        raise InvalidParameterError(f"Ray address {address!r} contains spaces")
    return address


def local_runtime_options() -> dict[str, Any]:
    """``ray.init`` keywords of the local runtime: as many CPU resources as this process may
    use (its affinity mask), no dashboard, workers' output kept out of the caller's."""
    from dpaudit.runtime import available_cpus

    return {
        "address": "local", "num_cpus": available_cpus(), "include_dashboard": False,
        "log_to_driver": False, "logging_level": logging.ERROR,
    }


def _cluster_messages_to_stderr() -> None:
    """Ray's driver prints the messages the cluster publishes (a worker died, a task will be
    retried) on stdout; send them to stderr, so that stdout holds only the command's output
    (e.g. a JSON report). Wraps ``ray._private.worker.print_to_stdstream`` where this Ray has
    it (the function its message thread calls); otherwise leaves Ray as it is."""
    from ray._private import worker as ray_worker

    original = getattr(ray_worker, "print_to_stdstream", None)
    if original is None or getattr(original, "dpaudit_stderr", False):
        return

    def to_stderr(data: dict, *args: Any, **kwargs: Any) -> Any:
        return original({**data, "is_err": True}, *args, **kwargs)

    setattr(to_stderr, "dpaudit_stderr", True)  # noqa: B010 - marks the wrapper
    ray_worker.print_to_stdstream = to_stderr


@contextlib.contextmanager
def _runtime_shielded_from_ctrl_c() -> Iterator[None]:
    """Block SIGINT while the local runtime's processes start: they inherit the blocked
    mask, so Ctrl-C at a terminal (which signals the whole foreground process group) reaches
    only the driver, which cancels the tasks and shuts the runtime down -- a runtime killed
    under its driver makes the driver crash at exit. A Ctrl-C during the start is delivered
    when the block ends. Without ``pthread_sigmask`` (not POSIX) nothing changes."""
    import signal

    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _call(fn: Callable[..., Any], threads: int, *args: Any, **kwargs: Any) -> Any:
    """Body of every task: ``threads`` compute threads, then ``fn(*args, **kwargs)``.
    The arguments stay top-level so that Ray resolves shared ``ObjectRef`` handles."""
    from dpaudit.runtime import configure_worker

    configure_worker(threads)
    return fn(*args, **kwargs)


def _task_error(exc: BaseException, name: str, retries: int) -> BaseException:
    """What a task's future raises for Ray's ``exc``: the task's own exception as it was
    raised; a cancellation as ``CancelledError``; any other failure as one
    :class:`TaskFailedError` line naming the task."""
    from ray import exceptions as rex

    if isinstance(exc, rex.RayTaskError):
        cause = getattr(exc, "cause", None)
        return cause if isinstance(cause, Exception) else exc
    if isinstance(exc, rex.TaskCancelledError):
        return cf.CancelledError(f"task {name} was cancelled")
    lines = str(exc).strip().splitlines()
    what = lines[0] if lines else type(exc).__name__
    return TaskFailedError(f"task {name} failed after {retries} retries ({type(exc).__name__}): {what}")


class RayExecutor(cf.Executor):
    """Runs each submitted call as a Ray task (see the module docstring).

    Args:
        workers: tasks in flight at most (``None``: see the module docstring).
        threads_per_worker: CPUs each task asks for and compute threads it runs with.
        address: ``None``/``"local"``/``"auto"``/``"HOST:PORT"``/``"ray://HOST:PORT"``.
        device: ``cpu`` or ``cuda`` (tasks then ask for GPUs; an index such as ``cuda:1`` is
            refused: Ray chooses the GPU of each task).
        gpus_per_task: GPUs each task asks for when ``device`` is CUDA (fractions share).
        max_retries: reruns of a task whose worker died, before its failure is reported.
    """

    def __init__(self, workers: int | None = None, threads_per_worker: int = 1, *,
                 address: str | None = None, device: str = "cpu", gpus_per_task: float | None = None,
                 max_retries: int = DEFAULT_MAX_RETRIES) -> None:
        require_ray()
        self._address = resolve_address(address)
        self._threads = int(threads_per_worker)
        if self._threads < 1:
            raise InvalidParameterError(f"threads per worker must be >= 1, got {threads_per_worker!r}")
        if workers is not None and int(workers) < 1:
            raise InvalidParameterError(f"workers must be >= 1, got {workers!r}")
        dev = str(device).strip().lower()
        if dev.startswith("cuda:"):
            raise InvalidParameterError(
                f"device {device!r}: with the ray executor name the device 'cuda' (Ray assigns each task its GPU)")
        if dev not in ("cpu", "cuda"):
            raise InvalidParameterError(f"the ray executor runs tasks on cpu or cuda, not {device!r}")
        if gpus_per_task is not None and not 0 < float(gpus_per_task):
            raise InvalidParameterError(f"GPUs per task must be > 0, got {gpus_per_task!r}")
        if int(max_retries) < 0:
            raise InvalidParameterError(f"retries must be >= 0, got {max_retries!r}")
        self._workers = None if workers is None else int(workers)
        self._cuda = dev == "cuda"
        self._gpus = gpus_per_task
        self._retries = int(max_retries)
        self._lock = threading.RLock()
        self._queue: collections.deque[tuple[cf.Future, Callable[..., Any], tuple, dict, str]] = collections.deque()
        self._running: dict[cf.Future, Any] = {}
        self._count = itertools.count()
        self._remote: Any = None
        self._options: dict[str, Any] = {}
        self._limit: int | None = None
        self._owns_runtime = False
        self._closed = False
        self._cancelling = False

    # ------------------------------------------------------------------ runtime
    @property
    def address(self) -> str | None:
        """The cluster joined (``None``: a local runtime)."""
        return self._address

    def _start(self) -> None:
        """Connect to / start Ray and fix the tasks' resource requests (once; lock held)."""
        if self._remote is not None:
            return
        import ray

        os.environ.setdefault("RAY_task_oom_retries", str(self._retries))
        if not ray.is_initialized():
            try:
                if self._address is None:
                    with _runtime_shielded_from_ctrl_c():
                        ray.init(**local_runtime_options())
                else:
                    ray.init(address=self._address, log_to_driver=False, logging_level=logging.ERROR)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                if self._address is None:
                    raise TaskFailedError(f"could not start a local Ray runtime: {first}") from None
                raise TaskFailedError(
                    f"could not join the Ray cluster at {self._address}: {first} (is it running? with token "
                    "authentication and an explicit address, set RAY_AUTH_MODE=token)") from None
            self._owns_runtime = True
        _cluster_messages_to_stderr()
        resources = ray.cluster_resources()
        self._limit = self._workers
        if self._limit is None and self._address is None and self._owns_runtime:
            self._limit = max(1, int(resources.get("CPU", 1)) // self._threads)
        options: dict[str, Any] = {"num_cpus": self._threads, "max_retries": self._retries}
        if self._cuda:
            options["num_gpus"] = self._gpus_per_task(float(resources.get("GPU", 0)))
        self._check_feasible(ray, options)
        self._options = options
        self._remote = ray.remote(_call)

    def _gpus_per_task(self, total: float) -> float:
        if total <= 0:
            raise InvalidParameterError("device 'cuda' requested but the Ray cluster has no GPUs")
        if self._gpus is not None:
            return float(self._gpus)
        return min(1.0, total / self._limit) if self._limit else 1.0

    def _check_feasible(self, ray: Any, options: dict[str, Any]) -> None:
        """Refuse requests no node can meet (Ray would otherwise wait for one for ever)."""
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive", True)]
        if not any(r.get("CPU", 0) >= options["num_cpus"] and r.get("GPU", 0) >= options.get("num_gpus", 0)
                   for r in nodes):
            need = f"{options['num_cpus']} CPUs" + (f" and {options['num_gpus']:g} GPUs" if "num_gpus" in options else "")
            raise InvalidParameterError(f"no Ray node offers {need} per task (threads per worker too large?)")

    # ------------------------------------------------------------------ executor API
    def share(self, obj: Any) -> Any:
        """Store ``obj`` once in the object store; returns the ``ObjectRef`` to pass as a
        direct argument of :meth:`submit` (the task receives ``obj``)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot share objects after shutdown")
            self._start()
        import ray

        return ray.put(obj)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future:
        """Queue ``fn(*args, **kwargs)`` as a Ray task named ``"<fn> #<n>"`` (n counts this
        executor's submissions from 0); returns its future."""
        fut: cf.Future = cf.Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._start()
            name = f"{getattr(fn, '__name__', 'task')} #{next(self._count)}"
            self._queue.append((fut, fn, args, kwargs, name))
            self._dispatch()
        return fut

    def _dispatch(self) -> None:
        """Start queued tasks while fewer than the cap run (lock held)."""
        while self._queue and (self._limit is None or len(self._running) < self._limit):
            fut, fn, args, kwargs, name = self._queue.popleft()
            if not fut.set_running_or_notify_cancel():
                continue
            ref = self._remote.options(**self._options, name=name).remote(fn, self._threads, *args, **kwargs)
            self._running[fut] = ref
            ref.future().add_done_callback(lambda rf, fut=fut, name=name: self._settle(fut, rf, name))

    def _settle(self, fut: cf.Future, rf: cf.Future, name: str) -> None:
        """Deliver a finished task's result or error to its future; start the next task."""
        with self._lock:
            self._running.pop(fut, None)
            if not self._cancelling:
                self._dispatch()
        if fut.done():  # settled by a cancellation
            return
        try:
            exc = rf.exception()
            if exc is None:
                fut.set_result(rf.result())
            else:
                fut.set_exception(_task_error(exc, name, self._retries))
        except cf.CancelledError:
            fut.set_exception(cf.CancelledError(f"task {name} was cancelled"))
        except cf.InvalidStateError:  # pragma: no cover - raced with a cancellation
            pass

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting work. ``wait`` (and no ``cancel_futures``): run what was submitted
        to completion first; ``cancel_futures``: cancel the queued and the running tasks
        (their futures raise ``CancelledError``). A runtime this executor started is shut
        down, so with neither option its outstanding tasks are cancelled too."""
        with self._lock:
            self._closed = True
            outstanding = [f for f, *_ in self._queue] + list(self._running)
        if wait and not cancel_futures:
            cf.wait(outstanding)
        elif cancel_futures or self._owns_runtime:
            self._cancel_outstanding()
        if self._owns_runtime:
            import ray

            ray.shutdown()
            self._owns_runtime = False

    def _cancel_outstanding(self) -> None:
        with self._lock:
            self._cancelling = True
            queued = [f for f, *_ in self._queue]
            self._queue.clear()
            running = dict(self._running)
        for fut in queued:
            fut.cancel()
        if not running:
            return
        import ray

        for fut, ref in running.items():
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - already finished or its worker gone
                pass
            if not fut.done():
                try:
                    fut.set_exception(cf.CancelledError("cancelled at shutdown"))
                except cf.InvalidStateError:  # pragma: no cover - finished meanwhile
                    pass

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        """On an exception (Ctrl-C included) cancel what is outstanding; else wait for it."""
        self.shutdown(wait=exc_type is None, cancel_futures=exc_type is not None)
