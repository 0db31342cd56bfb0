"""Repository hygiene that CI enforces through the test suite: the linter (with the
complexity cap of 15, ruff C901), the type checker, and test collection that does not depend
on how pytest is started."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    exe = shutil.which(name, path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    if exe is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]'")
    return exe


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_clean_with_complexity_cap():
    res = _run([_tool("ruff"), "check", "--no-cache", "."])
    assert res.returncode == 0, res.stdout + res.stderr


def test_type_checker_clean():
    res = _run([_tool("mypy"), "--no-incremental", "--cache-dir", os.devnull])
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr


def _collected(cmd: list[str]) -> list[str]:
    res = _run([*cmd, "--collect-only", "-q", "-p", "no:randomly"])
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr
    return sorted(line for line in res.stdout.splitlines() if "::" in line)


def test_plain_pytest_collects_what_python_m_pytest_does():
    plain = _collected([_tool("pytest")])
    module = _collected([sys.executable, "-m", "pytest"])
    assert plain == module
    assert len(plain) > 100
