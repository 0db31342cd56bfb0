"""CLI behaviour of `dpaudit account` / `dpaudit compare`: JSON keys, bad input, no torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from cli.main import cli, main


def _invoke(args):
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def test_account_json_keys_poisson():
    res = _invoke(["account", "-n", "60000", "-b", "256", "-s", "1.1", "-e", "60", "--json",
                   "--accountant", "rdp"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    for key in ("epsilon", "delta", "accountant", "batching", "steps"):
        assert key in out
    assert out["batching"] == "poisson" and out["accountant"] == "rdp"
    assert 2.0 < out["epsilon"] < 4.0


def test_account_json_shuffle_has_lower_and_poisson_figures():
    res = _invoke(["account", "-n", "60000", "-b", "256", "-s", "1.1", "-e", "10", "--json",
                   "--batching", "shuffle", "--accountant", "rdp"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["epsilon_lower"] <= out["epsilon"]
    assert out["epsilon_if_poisson"] < out["epsilon"]


def test_account_all_headline_is_min_sound():
    res = _invoke(["account", "-s", "1.1", "-e", "5", "--json", "--accountant", "all"])
    out = json.loads(res.output)
    sound = [r["epsilon"] for r in out["results"] if r["sound"] and r["accountant"] != "yu2019"
             and r["epsilon"] is not None]
    assert out["epsilon"] == pytest.approx(min(sound))


def test_compare_json_rows_cover_both_batchings():
    res = _invoke(["compare", "-s", "1.0", "-e", "3", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)["rows"]
    seen = {(r["accountant"], r["batching"]) for r in rows}
    for acc in ("rdp", "ma", "cdp", "pld"):
        assert (acc, "poisson") in seen and (acc, "shuffle") in seen
    assert all({"accountant", "batching", "epsilon"} <= set(r) for r in rows)


@pytest.mark.parametrize(
    "args",
    [
        ["account", "-s", "1.0", "-d", "1.5"],
        ["account", "-s", "1.0", "-d", "0"],
        ["account", "-s", "-1"],
        ["account", "-s", "1.0", "-n", "100", "-b", "200"],
        ["account", "-s", "1.0", "-q", "1.5"],
        ["account", "-s", "1.0", "-e", "0"],
        ["account", "-s", "nan"],
        ["account", "-s", "1.0", "-d", "nan"],
        ["compare", "-s", "abc"],
        ["account", "--plan", "/nonexistent/plan.json"],
    ],
)
def test_bad_input_one_line_nonzero(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code != 0
    err = capsys.readouterr().err.strip()
    assert err and len(err.splitlines()) == 1, err
    assert "Traceback" not in err


def test_accounting_commands_never_import_torch():
    code = (
        "import sys; from cli.main import main\n"
        "try:\n main(['account','-s','1.1','-e','2','--accountant','all','--json'])\n"
        "except SystemExit: pass\n"
        "try:\n main(['compare','-s','1.1','-e','2','--json'])\n"
        "except SystemExit: pass\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["account", "--no-such-flag"],
        ["account", "--batching", "random", "-s", "1"],
        ["account", "-s"],
        ["no-such-command"],
        ["compare", "--epochs", "ten", "-s", "1"],
    ],
)
def test_click_usage_errors_are_one_line(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("dpaudit: error:"), err
