"""Scaling benchmark: LiRA's shadow models on Ray with 1 worker vs ``--workers`` workers.

One process starts one local Ray runtime (sized to this process's affinity mask, as
``--executor ray`` does), warms its workers up with one untimed LiRA, then runs LiRA with
``--shadow-models`` shadows on digits against a DP-SGD target (the model of
``dpaudit train --epsilon 2``) with each worker count in turn, ``--repeats`` rounds
(interleaved, so background load hits both alike), and reports medians of

* wall time of the whole LiRA (shadow training, scoring) and the speed-up over 1 worker;
* CPU time: this process plus every task's own CPU time (measured in the task), the work
  done; on a machine shared with other work, ``CPU / wall`` shows the parallelism reached
  and the load average beside it how busy the machine was;
* the CPU-time speed-up, robust to other load: the 1-worker CPU time divided by the
  2-worker critical path (this process's CPU time plus the busiest worker's task CPU time)
  -- the speed-up the work's split across workers allows when each worker has a core.

Usage::

    python bench/scaling.py [--shadow-models 8] [--workers 2] [--repeats 3] [--executor ray]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any


def _timed(fn: Callable[..., Any], *args: Any) -> tuple[Any, float, int]:
    """Run ``fn`` in the worker; return its result, the CPU seconds it took there and the
    worker's process id."""
    c0 = time.process_time()
    out = fn(*args)
    return out, time.process_time() - c0, os.getpid()


class TimedExecutor(cf.Executor):
    """Wraps an executor: each task also reports its CPU time, summed per worker process
    in ``per_worker``."""

    def __init__(self, inner: cf.Executor) -> None:
        self.inner, self._lock = inner, threading.Lock()
        self.per_worker: dict[int, float] = {}

    @property
    def cpu(self) -> float:
        return sum(self.per_worker.values())

    def share(self, obj: Any) -> Any:
        from dpaudit.executors import share

        return share(self.inner, obj)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future:
        out: cf.Future = cf.Future()

        def done(f: cf.Future) -> None:
            try:
                result, cpu, pid = f.result()
            except BaseException as exc:  # noqa: BLE001 - delivered through the future
                out.set_exception(exc)
                return
            with self._lock:
                self.per_worker[pid] = self.per_worker.get(pid, 0.0) + cpu
            out.set_result(result)

        self.inner.submit(_timed, fn, *args).add_done_callback(done)
        return out

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.inner.shutdown(wait=wait, cancel_futures=cancel_futures)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shadow-models", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--executor", choices=("ray", "process"), default="ray")
    a = ap.parse_args()

    import numpy as np

    from dpaudit.attacks.lira import lira
    from dpaudit.attacks.shadows import shadow_recipe
    from dpaudit.executors import make_executor
    from dpaudit.runtime import available_cpus
    from dpaudit.training import TrainConfig, load_dataset, train

    digits = load_dataset("digits")
    target = train(TrainConfig(dataset="digits", epsilon=2.0, threads=1), dataset=digits, progress=False)
    meta = target.metadata
    mem = np.asarray(meta["split"]["member_indices"])
    non = np.asarray(meta["split"]["nonmember_indices"])
    recipe = shadow_recipe(meta)  # shadows matched to the target (issue 16)
    pool_test = len(non) == 0
    if pool_test:  # trained on the whole train split: the test split holds the non-members
        non = np.arange(len(digits.y_train), len(digits.y_train) + len(digits.y_test))

    def run(ex: cf.Executor) -> tuple[tuple[float, float, float], Any]:
        """(wall, CPU of all processes, CPU critical path) of one LiRA, and its scores."""
        timed = TimedExecutor(ex)
        w0, c0 = time.perf_counter(), time.process_time()
        res = lira(target.model, recipe, mem, non, n_shadows=a.shadow_models, seed=0,
                   executor=timed, dataset=digits, pool_test=pool_test)
        wall, driver = time.perf_counter() - w0, time.process_time() - c0
        return (wall, driver + timed.cpu, driver + max(timed.per_worker.values())), res

    counts = (1, a.workers)
    if a.executor == "ray":
        import ray

        from dpaudit.ray_executor import local_runtime_options

        ray.init(**local_runtime_options())  # one runtime for every round; executors join it
    executors = {w: make_executor(a.executor, w) for w in counts}
    try:
        _, ref = run(executors[a.workers])  # warm-up: workers import torch, load code
        rows: dict[int, list[tuple[float, float, float]]] = {w: [] for w in counts}
        loads = [os.getloadavg()[0]]
        for _ in range(a.repeats):
            for w in counts:
                times, res = run(executors[w])
                assert np.array_equal(res.online_members, ref.online_members)  # same numbers
                rows[w].append(times)
                loads.append(os.getloadavg()[0])
    finally:
        for ex in executors.values():
            ex.shutdown()
    med = {w: [statistics.median(r[i] for r in rows[w]) for i in range(3)] for w in counts}
    print(f"LiRA, {a.shadow_models} shadow models on digits (DP-SGD target, epsilon 2), "
          f"{a.executor} executor, {available_cpus()} CPUs in the affinity mask; median of "
          f"{a.repeats} interleaved rounds; 1-min load average {min(loads):.2f}-{max(loads):.2f}")
    print("\n| workers | wall s | CPU s (all processes) | CPU / wall | CPU critical path s "
          "| speed-up (wall) | speed-up (CPU time) |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for w in counts:
        wall, cpu, path = med[w]
        print(f"| {w} | {wall:.1f} | {cpu:.1f} | {cpu / wall:.2f} | {path:.1f} | "
              f"{med[1][0] / wall:.2f}x | {med[1][1] / path:.2f}x |")


if __name__ == "__main__":
    main()
