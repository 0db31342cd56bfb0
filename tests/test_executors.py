"""Executor API without a Ray runtime: ``share``, the ray executor's argument checks, the
shared CLI options, and that commands which do not use Ray never import it."""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import main
from dpaudit.errors import InvalidParameterError
from dpaudit.executors import EXECUTORS, InlineExecutor, make_executor, share, shares_objects

ROOT = Path(__file__).resolve().parents[1]
CLAIM = ["--noise-multiplier", "1.0", "--sample-rate", "0.1", "--dataset-size", "100", "--steps", "20"]


def _cli(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
        raise SystemExit(0)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_share_is_the_object_for_local_executors():
    obj = {"big": list(range(10))}
    with cf.ThreadPoolExecutor(1) as thread:
        for ex in (InlineExecutor(), thread):
            assert shares_objects(ex) and share(ex, obj) is obj
            assert ex.submit(len, share(ex, obj)).result() == 1
    with cf.ProcessPoolExecutor(1) as proc:  # never started: nothing submitted
        assert not shares_objects(proc) and share(proc, obj) is obj

    class Store(cf.Executor):
        def share(self, o):
            return ("handle", id(o))

    assert shares_objects(Store()) and share(Store(), obj) == ("handle", id(obj))


def test_ray_executor_arguments_checked_without_importing_ray():
    script = (
        "import sys, json\n"
        "from dpaudit.executors import make_executor\n"
        "from dpaudit.errors import InvalidParameterError\n"
        "ex = make_executor('ray', 2, address='auto')\n"
        "errs = []\n"
        "for kw in ({'device': 'cuda:1'}, {'device': 'mps'}, {'address': 'a b'}):\n"
        "    try:\n"
        "        make_executor('ray', **kw)\n"
        "    except InvalidParameterError as e:\n"
        "        errs.append(str(e))\n"
        "ex.shutdown()\n"
        "print(json.dumps([ex.address, errs, 'ray' in sys.modules]))\n"
    )
    res = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    address, errs, imported = json.loads(res.stdout)
    assert address == "auto" and not imported  # nothing ran: Ray neither imported nor started
    assert len(errs) == 3 and "'cuda'" in errs[0] and "--" not in " ".join(errs)


def test_ray_address_from_environment(monkeypatch):
    from dpaudit.ray_executor import ADDRESS_ENV, resolve_address

    monkeypatch.setenv(ADDRESS_ENV, "ray://head:10001")
    assert resolve_address(None) == "ray://head:10001"
    assert resolve_address("local") is None and resolve_address("auto") == "auto"
    monkeypatch.setenv(ADDRESS_ENV, "")
    assert resolve_address(None) is None


def test_local_runtime_sized_by_the_affinity_mask():
    one_cpu = min(os.sched_getaffinity(0))
    res = subprocess.run(
        [sys.executable, "-c", "from dpaudit.ray_executor import local_runtime_options as o; print(o()['num_cpus'])"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        preexec_fn=lambda: os.sched_setaffinity(0, {one_cpu}))
    assert res.returncode == 0, res.stderr
    assert int(res.stdout) == 1


def test_missing_ray_is_one_line(monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(InvalidParameterError, match=r"pip install 'dpaudit\[ray\]'"):
        make_executor("ray")
    code, out, err = _cli(["audit", *CLAIM, "--checks", "accounting", "--executor", "ray"], capsys)
    assert code == 2 and out == "" and err.count("\n") == 1 and "dpaudit[ray]" in err


def test_cli_executor_options(capsys):
    assert "ray" in EXECUTORS
    code, _, err = _cli(["audit", *CLAIM, "--checks", "accounting", "--ray-address", "auto"], capsys)
    assert code == 2 and "--ray-address is for --executor ray" in err and err.count("\n") == 1
    for command in ("audit", "attack"):
        code, out, _ = _cli([command, "--help"], capsys)
        assert code == 0 and "--executor [inline|thread|process|ray]" in out
        assert "DPAUDIT_RAY_ADDRESS" in out and "--workers" in out


def test_commands_without_ray_never_import_it(tmp_path):
    script = (
        "import sys\n"
        "from cli.main import main\n"
        "from dpaudit.executors import make_executor\n"
        f"args = ['audit', *{CLAIM!r}, '--checks', 'canary_multi_run', '--runs', '3',\n"
        "        '--canary-steps', '2', '--executor', 'thread', '--json']\n"
        "try:\n"
        "    main(args)\n"
        "except SystemExit as exc:\n"
        "    assert exc.code in (0, None, 1), exc.code\n"
        "make_executor('process', 1).shutdown()\n"
        "print('RAY', 'ray' in sys.modules, file=sys.stderr)\n"
    )
    res = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(res.stdout)["checks"][0]["name"] == "canary_multi_run"
    assert "RAY False" in res.stderr
