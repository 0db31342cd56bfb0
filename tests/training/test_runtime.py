"""One thread/worker policy (dpaudit.runtime, dpaudit.executors)."""

from __future__ import annotations

import os

import pytest

from dpaudit import runtime
from dpaudit.errors import InvalidParameterError
from dpaudit.executors import InlineExecutor, make_executor


def thread_settings() -> tuple[str | None, str | None, int]:
    """What a worker runs with (module level: process pools pickle it by name)."""
    import torch

    return os.environ.get("OMP_NUM_THREADS"), os.environ.get("MKL_NUM_THREADS"), torch.get_num_threads()


@pytest.mark.parametrize("threads", [1, 2])
def test_process_workers_get_threads_per_worker_whatever_the_parent_has(threads, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the parent's setting must not leak through
    with make_executor("process", 1, threads_per_worker=threads) as ex:
        omp, mkl, torch_threads = ex.submit(thread_settings).result(timeout=120)
    assert (omp, mkl, torch_threads) == (str(threads), str(threads), threads)


def test_configure_worker_sets_torch_when_loaded(monkeypatch):
    import torch

    before = torch.get_num_threads()
    for var in runtime.THREAD_ENV_VARS:
        monkeypatch.setenv(var, os.environ.get(var, ""))  # restored after the test
    try:
        runtime.configure_worker(1)
        assert torch.get_num_threads() == 1 and os.environ["OMP_NUM_THREADS"] == "1"
        # the trainer's policy keeps an explicit $OMP_NUM_THREADS
        assert runtime.configure_threads(None) == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(InvalidParameterError):
        runtime.configure_worker(0)


def test_default_workers_fill_the_affinity_mask():
    cpus = runtime.available_cpus()
    assert runtime.default_workers(1) == cpus
    assert runtime.default_workers(2) == max(1, cpus // 2)
    assert runtime.default_workers(10_000) == 1


def test_executor_choices_and_errors():
    assert isinstance(make_executor("inline"), InlineExecutor)
    ex = InlineExecutor()
    assert make_executor(ex) is ex
    with pytest.raises(InvalidParameterError, match="executor must be one of"):
        make_executor("cluster")
    with pytest.raises(InvalidParameterError, match="threads per worker"):
        make_executor("process", 1, threads_per_worker=0)
    with pytest.raises(InvalidParameterError, match="workers"):
        make_executor("thread", 0)


def test_device_errors_name_no_flags():
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(InvalidParameterError, match="CUDA is not available") as exc:
        runtime.resolve_device("cuda")
    assert "--" not in str(exc.value)
    with pytest.raises(InvalidParameterError, match="unknown device"):
        runtime.resolve_device("quantum")


def test_default_threads_counts_physical_cores():
    n = runtime.physical_cores()
    assert 1 <= n <= (os.cpu_count() or 1)
    assert runtime.default_threads() == max(1, min(4, n))
