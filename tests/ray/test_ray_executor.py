"""The Ray executor on a real local Ray runtime (2 CPUs, started for this module and torn
down after it): LiRA and the canary audit give the inline executor's numbers, errors and
worker deaths come back through futures, threads and resources are what was asked, and the
CLI's ``--executor ray`` prints the same membership figures as ``--executor inline``.

Task functions are defined inside the tests: Ray pickles them by value, so its workers need
not import this test module."""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dpaudit.errors import InvalidParameterError
from dpaudit.executors import InlineExecutor, make_executor, share
from dpaudit.ray_executor import RayExecutor, TaskFailedError

ROOT = Path(__file__).resolve().parents[2]


def _lira(target, digits, executor):
    from dpaudit.attacks.lira import lira
    from dpaudit.attacks.shadows import shadow_recipe

    meta = target.metadata
    return lira(target.model, shadow_recipe(meta), np.asarray(meta["split"]["member_indices"]),
                np.asarray(meta["split"]["nonmember_indices"]), n_shadows=4, seed=0,
                executor=executor, dataset=digits)


def test_lira_on_ray_equals_inline(ray_runtime, digits, dp_target, monkeypatch):
    inline = _lira(dp_target, digits, InlineExecutor())
    shared = []
    original = RayExecutor.share

    def counting_share(self, obj):
        shared.append(type(obj).__name__)
        return original(self, obj)

    monkeypatch.setattr(RayExecutor, "share", counting_share)
    with RayExecutor(2) as ex:
        on_ray = _lira(dp_target, digits, ex)
    assert shared == ["Dataset"]  # the data set went to the object store once, for 4 shadows
    for field in ("online_members", "online_nonmembers", "offline_members", "offline_nonmembers"):
        np.testing.assert_array_equal(getattr(on_ray, field), getattr(inline, field))


def test_canary_audit_on_ray_equals_inline(ray_runtime):
    from dpaudit.audit import Claim, audit, builtin_adapter
    from dpaudit.audit.canaries import canary_scores

    claim = Claim(epsilon=4.0, delta=1e-5, sample_rate=0.1, noise_multiplier=1.0, clip=1.0,
                  steps=10, dataset_size=100)
    adapter = builtin_adapter("reference", claim)
    with RayExecutor(2) as ex:
        s_ray = canary_scores(adapter, runs=8, seed=5, executor=ex, workers=2)
        r_ray = audit(adapter, checks="canary_multi_run", runs=8, seed=5, executor=ex, workers=2)
    s_inline = canary_scores(adapter, runs=8, seed=5, executor="inline")
    r_inline = audit(adapter, checks="canary_multi_run", runs=8, seed=5, executor="inline")
    np.testing.assert_array_equal(s_ray[0], s_inline[0])
    np.testing.assert_array_equal(s_ray[1], s_inline[1])
    d_ray, d_inline = r_ray.checks[0].details, r_inline.checks[0].details
    assert d_ray["epsilon_lower_bound"] == d_inline["epsilon_lower_bound"]
    assert d_ray["cp_bonferroni"] == d_inline["cp_bonferroni"]
    assert d_ray["gdp_estimate"] == d_inline["gdp_estimate"]


def test_results_and_own_errors_through_futures(ray_runtime):
    def square(x, arr):
        return x * x + float(arr.sum())

    def refuse(x):
        raise InvalidParameterError(f"bad value {x}")

    with make_executor("ray", 2) as ex:
        handle = share(ex, np.ones(1000))
        futs = {ex.submit(square, i, handle): i for i in range(6)}
        got = {futs[f]: f.result() for f in cf.as_completed(futs)}  # progress bars' pattern
        bad = ex.submit(refuse, 3)
        with pytest.raises(InvalidParameterError, match="^bad value 3$"):
            bad.result(timeout=60)
    assert got == {i: i * i + 1000.0 for i in range(6)}


def test_dead_worker_is_retried_then_reported_naming_the_task(ray_runtime, tmp_path):
    marker = str(tmp_path / "died-once")

    def die_once(path):
        if not os.path.exists(path):
            open(path, "w").close()
            os._exit(1)  # the worker process dies, as when killed or out of memory
        return "ok"

    def always_die():
        os._exit(1)

    with RayExecutor(2, max_retries=1) as ex:
        assert ex.submit(die_once, marker).result(timeout=120) == "ok"
        fut = ex.submit(always_die)
        with pytest.raises(TaskFailedError) as err:
            fut.result(timeout=120)
    msg = str(err.value)
    assert "task always_die #1 failed after 1 retries" in msg and "\n" not in msg


def test_threads_per_worker_and_feasibility(ray_runtime):
    def settings():
        import torch

        return os.environ.get("OMP_NUM_THREADS"), torch.get_num_threads()

    for threads in (1, 2):
        with RayExecutor(1, threads_per_worker=threads) as ex:
            assert ex.submit(settings).result(timeout=120) == (str(threads), threads)
    with RayExecutor(threads_per_worker=3) as ex, pytest.raises(InvalidParameterError, match="no Ray node offers 3 CPUs"):
        ex.submit(settings)
    with RayExecutor(device="cuda") as ex, pytest.raises(InvalidParameterError, match="no GPUs"):
        ex.submit(settings)


def test_workers_cap_tasks_in_flight(ray_runtime):
    def stamp():
        t0 = time.monotonic()
        time.sleep(0.5)
        return t0, time.monotonic()

    with RayExecutor(1) as ex:
        spans = sorted(f.result(timeout=120) for f in [ex.submit(stamp) for _ in range(3)])
    assert all(b[0] >= a[1] - 0.05 for a, b in zip(spans, spans[1:]))  # one at a time


def test_exception_in_with_block_cancels_outstanding_tasks(ray_runtime):
    def sleepy():
        time.sleep(60)

    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        with RayExecutor(2) as ex:
            futs = [ex.submit(sleepy) for _ in range(4)]
            time.sleep(1)
            raise KeyboardInterrupt
    assert time.monotonic() - t0 < 30
    assert all(f.done() for f in futs)
    with pytest.raises(cf.CancelledError):
        futs[0].result()
    assert ray_runtime.is_initialized()  # joined, not started, by the executor: left running
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(sleepy)


def test_cli_attack_on_ray_prints_inline_membership(ray_runtime, dp_target, tmp_path, capsys):
    from cli.main import main
    from dpaudit.training import save_model

    path = tmp_path / "model.pt"
    save_model(path, dp_target.model, dp_target.metadata)

    def run(executor):
        with pytest.raises(SystemExit) as exc:
            main(["attack", str(path), "--attack", "lira", "-k", "2", "--executor", executor,
                  "--seed", "0", "--json"])
            raise SystemExit(0)
        out = capsys.readouterr().out
        assert exc.value.code == 0
        return json.loads(out)["membership"]

    assert run("ray") == run("inline")


def test_own_local_runtime_started_once_and_shut_down(ray_runtime):
    """In a fresh process (this one already runs Ray): the executor starts a runtime at the
    first task, keeps it for all tasks, stops it at shutdown; stdout holds only the output."""
    script = (
        "import json, ray\n"
        "from dpaudit.executors import make_executor\n"
        "import dpaudit.ray_executor as rx\n"
        "starts = []\n"
        "init = ray.init\n"
        "ray.init = lambda **kw: (starts.append(kw), init(**kw))[1]\n"
        "ex = make_executor('ray', 2)\n"
        "before = ray.is_initialized()\n"
        "out = [f.result() for f in [ex.submit(abs, -i) for i in range(4)]]\n"
        "ex.shutdown()\n"
        "print(json.dumps([before, len(starts), starts[0]['num_cpus'], out, ray.is_initialized()]))\n"
    )
    env = {**os.environ, "DPAUDIT_RAY_ADDRESS": ""}
    res = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, env=env, preexec_fn=lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}))
    assert res.returncode == 0, res.stderr[-3000:]
    before, n_starts, cpus, out, after = json.loads(res.stdout)
    assert (before, n_starts, out, after) == (False, 1, [0, 1, 2, 3], False)
    assert cpus == 1  # one CPU in the affinity mask, whatever os.cpu_count() says
