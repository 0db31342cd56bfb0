"""`dpaudit plan`: defaults, JSON keys, --out/--plot files, bad input, no torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from cli.main import cli, main
from dpaudit.allocation import Plan, account_plan


def _invoke(args):
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def test_plan_epsilon_only_uses_and_shows_defaults():
    res = _invoke(["plan", "--epsilon", "2"])
    assert res.exit_code == 0, res.output
    out = res.output
    for text in ("dataset size 60000", "batch size 256", "30 epochs", "delta = 1e-05",
                 "batching poisson", "accountant: pld", "schedule: constant"):
        assert text in out
    rows = [ln.split() for ln in out.splitlines() if ln.strip()[:1].isdigit()]
    assert len(rows) == 30 and rows[-1][0] == "30"
    assert 1.999 <= float(rows[-1][2]) <= 2.0


def test_plan_json_keys_and_out_file(tmp_path):
    path = tmp_path / "plan.json"
    res = _invoke(["plan", "--epsilon", "3", "--json", "--out", str(path), "-a", "rdp",
                   "--schedule", "exp", "--k", "0.05", "--epochs", "10"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    for key in ("epsilon", "delta", "schedule", "noise_multipliers", "accountant", "batching"):
        assert key in out
    assert out["schedule"] == "exp" and out["schedule_params"] == {"k": 0.05}
    assert len(out["noise_multipliers"]) == 10 and out["accountant"] == "rdp"
    assert 2.999 <= out["epsilon"] <= 3.0
    plan = Plan.load(path)
    assert plan.epsilon == out["epsilon"]
    assert account_plan(plan).epsilon == plan.epsilon


def test_validation_schedule_prints_runtime_rule():
    res = _invoke(["plan", "--epsilon", "2", "-a", "rdp", "--schedule", "validation",
                   "--factor", "0.8", "--patience", "2", "--epochs", "6"])
    assert res.exit_code == 0, res.output
    assert "runtime rule" in res.output and "best case" in res.output


def test_compare_schedules_table_and_plot(tmp_path):
    png = tmp_path / "cmp.png"
    res = _invoke(["plan", "--epsilon", "2", "-a", "rdp", "--epochs", "3", "--sample-rate",
                   "0.01", "--compare-schedules", "--plot", str(png)])
    assert res.exit_code == 0, res.output
    for name in ("constant", "time", "exp", "step", "poly", "validation"):
        assert f"\n{name} " in res.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    res = _invoke(["plan", "--epsilon", "2", "-a", "rdp", "--epochs", "3", "--sample-rate",
                   "0.01", "--compare-schedules", "--json"])
    assert [p["schedule"] for p in json.loads(res.output)["schedules"]] == [
        "constant", "time", "exp", "step", "poly", "validation"]


@pytest.mark.parametrize(
    "args",
    [
        ["plan", "--epsilon", "-1"],
        ["plan", "--epsilon", "2", "--delta", "1.5"],
        ["plan", "--epsilon", "2", "--batch-size", "0"],
        ["plan", "--epsilon", "2", "--batch-size", "10", "--sample-rate", "0.1"],
        ["plan", "--epsilon", "2", "--schedule", "exp", "--patience", "3"],
        ["plan", "--epsilon", "1e-9", "-a", "rdp"],
        ["plan", "--epsilon", "1e6"],  # used to print RuntimeWarnings, then a NaN error
        ["plan", "--epsilon", "2", "--out", "/proc/plan.json"],
        ["plan", "--epsilon", "2", "--plot", "/proc/p.png"],
        ["plan", "--epsilon", "2", "-a", "rdp", "--out", "/nonexistent/dir/plan.json"],
    ],
)
def test_bad_input_one_line_exit_2(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dpaudit: error: "), err
    assert "Traceback" not in err


def test_plan_never_imports_torch_or_scipy_optimize():
    code = (
        "import sys; from cli.main import main\n"
        "try:\n    main(['plan', '--epsilon', '2', '--json'])\nexcept SystemExit:\n    pass\n"
        "bad = [m for m in ('torch', 'scipy.optimize', 'scipy.stats') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["accountant"] == "pld"


# ------------------------------------------------------------------ issue 15
def test_tiny_delta_is_planned_with_a_sound_fallback():
    res = _invoke(["plan", "--epsilon", "2", "--delta", "1e-12", "--epochs", "2", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert 1.999 <= out["epsilon"] <= 2.0
    assert any("RDP" in n for n in out["notes"])


def test_outputs_checked_before_solving_and_all_or_nothing(tmp_path, capsys, monkeypatch):
    import dpaudit.allocation as allocation

    def boom(*a, **k):
        raise AssertionError("solved before the output check")

    monkeypatch.setattr(allocation, "solve_plan", boom)
    ok = tmp_path / "ok.json"
    with pytest.raises(SystemExit) as exc:
        main(["plan", "--epsilon", "2", "--out", str(ok), "--plot", "/proc/p.png"])
    assert exc.value.code == 2 and "/proc" in capsys.readouterr().err
    assert not ok.exists() and not list(tmp_path.iterdir())
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None if name == "matplotlib" else 1)
    with pytest.raises(SystemExit) as exc:
        main(["plan", "--epsilon", "2", "--out", str(ok), "--plot", str(tmp_path / "p.png")])
    assert exc.value.code == 2 and "matplotlib" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_plot_failure_leaves_no_plan_file(tmp_path, monkeypatch):
    import dpaudit.allocation.plot as plot

    def fail(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(plot, "plot_plans", fail)
    ok = tmp_path / "ok.json"
    with pytest.raises(SystemExit):
        main(["plan", "--epsilon", "2", "-a", "rdp", "--epochs", "2", "--out", str(ok),
              "--plot", str(tmp_path / "p.png")])
    assert not list(tmp_path.iterdir())


def test_plan_out_and_plot_written_together(tmp_path):
    ok, png = tmp_path / "ok.json", tmp_path / "p.png"
    res = _invoke(["plan", "--epsilon", "2", "-a", "rdp", "--epochs", "3", "--out", str(ok),
                   "--plot", str(png)])
    assert res.exit_code == 0, res.output
    assert Plan.load(ok).epsilon <= 2.0 and png.read_bytes()[:4] == b"\x89PNG"


def test_progress_bar_only_on_a_terminal(monkeypatch):
    from cli.common import progress_bars

    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    with progress_bars("point", unit_if_unknown="eval", delay=1.0) as cb:
        assert cb is None
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    with progress_bars("point", unit_if_unknown="eval", delay=1.0) as cb:
        cb("noise search", 1, None)
        cb("cumulative epsilon", 3, 10)


def test_many_epochs_plan_reports_progress_and_checkpointed_curve():
    from dpaudit.accounting.curve import CURVE_POINTS
    from dpaudit.allocation import solve_plan

    seen = []
    p = solve_plan(2.0, 1e-5, sample_rate=0.01, epochs=1500, accountant="rdp",
                   progress=lambda *a: seen.append(a))
    stages = {s for s, _, _ in seen}
    assert stages == {"noise search", "cumulative epsilon"}
    assert len(p.cumulative_epsilon) == 1500 and len(set(p.cumulative_epsilon)) <= CURVE_POINTS
    assert any("checkpoint" in n for n in p.notes)
    assert p.cumulative_epsilon[-1] == pytest.approx(p.epsilon, rel=1e-9)


def test_plan_choices_come_from_the_library():
    from cli.plan import plan as cmd
    from dpaudit.accounting import SOUND_ACCOUNTANTS
    from dpaudit.allocation import SCHEDULES

    opts = {o.name: o for o in cmd.params}
    assert list(opts["accountant"].type.choices) == list(SOUND_ACCOUNTANTS)
    assert list(opts["schedule"].type.choices) == list(SCHEDULES)


def test_plan_balls_in_bins_solves_sigma_for_the_random_allocation_figure(tmp_path):
    """`plan --batching balls-in-bins`: sigma solved under the pld random-allocation PLD (near
    the Poisson sigma, far below the shuffled one), the plan file round-trips and re-accounts
    to its own figure."""
    path = tmp_path / "plan.json"
    res = _invoke(["plan", "--epsilon", "2", "--epochs", "10", "--batching", "balls-in-bins",
                   "--json", "--out", str(path)])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["batching"] == "balls_in_bins" and 1.999 <= out["epsilon"] <= 2.0
    poisson = json.loads(_invoke(["plan", "--epsilon", "2", "--epochs", "10", "--json"]).output)
    shuffled = json.loads(_invoke(["plan", "--epsilon", "2", "--epochs", "10", "--batching",
                                   "shuffle", "--json"]).output)
    sig, sig_p, sig_s = (o["noise_multipliers"][0] for o in (out, poisson, shuffled))
    assert abs(sig - sig_p) < 0.05 * sig_p and sig < 0.5 * sig_s
    plan = Plan.load(path)
    assert plan.run.batching == "balls_in_bins"
    assert account_plan(plan).epsilon == pytest.approx(plan.epsilon, rel=1e-9)
