"""CLI behaviour of `dpaudit account` / `dpaudit compare`: JSON keys, bad input, no torch."""

from __future__ import annotations

import json
import math
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


# ------------------------------------------------------------------ issue 15
def _cli(args, limit_gib=3):
    """Run the CLI in a fresh process with RuntimeWarnings as errors and address space
    bounded (the tiny-sigma case used to try to allocate 93 GiB)."""
    import resource

    def cap():
        lim = limit_gib * 2**30
        resource.setrlimit(resource.RLIMIT_AS, (lim, lim))

    return subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-m", "cli.main", *args],
                          capture_output=True, text=True, timeout=120, preexec_fn=cap)


@pytest.mark.parametrize("sigma", ["1e-4", "1e-3", "1e-2"])
@pytest.mark.parametrize(
    "extra",
    [["account"], ["account", "-a", "all"], ["account", "--json"], ["account", "--batching", "shuffle"],
     ["compare"]],
)
def test_tiny_sigma_sound_answer_no_traceback_no_warning(sigma, extra):
    res = _cli([*extra, "-n", "60000", "-b", "256", "-s", sigma, "-e", "60"])
    assert res.returncode == 0, res.stderr[-2000:]
    assert "Warning" not in res.stderr and "Traceback" not in res.stderr
    if "--json" in extra:
        assert json.loads(res.stdout)["epsilon"] > 1e4
    if "--batching" in extra:
        assert ">= 0 " not in res.stdout


def test_tiny_delta_many_steps_answered():
    for args in (["-d", "1e-8", "--steps", "40000"], ["-d", "1e-12"]):
        res = _invoke(["account", "-s", "1.1", *args, "--json"])
        assert res.exit_code == 0, res.output
        out = json.loads(res.output)
        assert math.isfinite(out["epsilon"]) and out["accountant"] == "pld"


def test_steps_rule_expected_matches_opacus_count():
    whole = json.loads(_invoke(["account", "-s", "1.1", "-e", "60", "--json", "-a", "rdp"]).output)
    exp = json.loads(_invoke(["account", "-s", "1.1", "-e", "60", "--json", "-a", "rdp",
                              "--steps-rule", "expected"]).output)
    steps = json.loads(_invoke(["account", "-s", "1.1", "--steps", "14062", "--json", "-a", "rdp"]).output)
    assert whole["steps"] == 14040 and exp["steps"] == 14062
    assert exp["epsilon"] == pytest.approx(steps["epsilon"], rel=1e-12)


def test_compare_plot_refused_before_the_work(tmp_path, capsys, monkeypatch):
    import dpaudit.accounting.report as report

    def boom(*a, **k):  # the work must not start
        raise AssertionError("compare ran before the output check")

    monkeypatch.setattr(report, "compare_run", boom)
    with pytest.raises(SystemExit) as exc:
        main(["compare", "-s", "1.0", "-e", "2", "--plot", "/proc/p.png"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "/proc" in err
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None if name == "matplotlib" else 1)
    with pytest.raises(SystemExit) as exc:
        main(["compare", "-s", "1.0", "-e", "2", "--plot", str(tmp_path / "c.png")])
    assert exc.value.code == 2 and "matplotlib" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_compare_shuffled_json_rows_carry_run_figures():
    res = _invoke(["compare", "-s", "1.1", "-e", "3", "--batching", "shuffle", "--json"])
    rows = json.loads(res.output)["rows"]
    lower = [r for r in rows if r["accountant"] == "chua_lower"]
    assert len(lower) == 1 and lower[0]["epsilon"] > 0
    for r in rows:
        if r["batching"] == "shuffle" and r["accountant"] != "chua_lower":
            assert r["epsilon_lower"] == lower[0]["epsilon"]
            assert r["epsilon_if_poisson"] is not None


def test_choice_lists_come_from_the_library():
    from cli.account import ACCOUNTANT_CHOICES
    from dpaudit.accounting import ACCOUNTANTS

    assert ACCOUNTANT_CHOICES == [*ACCOUNTANTS, "all"]


@pytest.mark.parametrize("spelling", ["balls-in-bins", "balls_in_bins"])
def test_account_json_balls_in_bins_interface(spelling):
    """The interface of issue 13: epsilon (sound upper bound), epsilon_lower,
    epsilon_if_poisson, batching, accountant; Poisson-level, far below shuffling."""
    res = _invoke(["account", "-n", "60000", "-b", "256", "-s", "1.1", "-e", "60", "--delta", "1e-5",
                   "--batching", spelling, "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["batching"] == "balls_in_bins" and out["accountant"] == "pld"
    assert out["epsilon_lower"] <= out["epsilon"] <= 1.05 * out["epsilon_if_poisson"]
    assert out["epsilon"] < 5.0  # the shuffle lower bound for this run is 10.8


def test_account_shuffle_note_suggests_balls_in_bins():
    res = _invoke(["account", "-s", "1.1", "-e", "3", "--batching", "shuffle", "-a", "rdp"])
    assert res.exit_code == 0, res.output
    assert "balls-in-bins" in res.output


def test_compare_has_balls_in_bins_rows_and_lower_row():
    res = _invoke(["compare", "-n", "6000", "-b", "100", "-s", "1.0", "-e", "3", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)["rows"]
    by = {(r["accountant"], r["batching"]): r for r in rows}
    for acc in ("rdp", "ma", "cdp", "pld"):
        assert (acc, "balls_in_bins") in by
    low = by[("allocation_lower", "balls_in_bins")]["epsilon"]
    assert low <= by[("pld", "balls_in_bins")]["epsilon"] <= 1.05 * by[("pld", "poisson")]["epsilon"]
    assert by[("rdp", "balls_in_bins")]["epsilon"] == pytest.approx(by[("rdp", "shuffle")]["epsilon"])
