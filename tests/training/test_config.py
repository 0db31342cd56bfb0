"""Configuration rules (dpaudit.training.config): one set of budget rules for the library and
the CLI, torch-free validation, defaults."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dpaudit.errors import InvalidParameterError
from dpaudit.training.config import (
    DEFAULT_EPSILON,
    TrainConfig,
    load_plan,
    preflight,
    resolve_config,
)


@pytest.fixture(scope="module")
def plan_file(tmp_path_factory):
    from dpaudit.allocation import solve_plan

    plan = solve_plan(1.5, 1e-5, dataset_size=1437, batch_size=128, epochs=3, batching="poisson",
                      accountant="rdp", schedule="exp")
    path = tmp_path_factory.mktemp("plan") / "plan.json"
    plan.save(path)
    return str(path)


#: (TrainConfig fields, the same run as CLI flags, expected message) -- refused by both.
BUDGET_CONFLICTS = [
    ({"plan_path": "PLAN", "epsilon": 1.0}, ["--plan", "PLAN", "--epsilon", "1"],
     "noise plan sets the budget"),
    ({"plan_path": "PLAN", "noise_multiplier": 2.0}, ["--plan", "PLAN", "--noise-multiplier", "2"],
     "either a noise plan or a noise multiplier"),
    ({"no_privacy": True, "epsilon": 1.0}, ["--no-privacy", "--epsilon", "1"],
     "without privacy takes no target epsilon"),
    ({"no_privacy": True, "plan_path": "PLAN"}, ["--no-privacy", "--plan", "PLAN"],
     "without privacy takes no noise plan"),
    ({"no_privacy": True, "noise_multiplier": 1.0}, ["--no-privacy", "--noise-multiplier", "1"],
     "without privacy takes no noise multiplier"),
    ({"no_privacy": True, "screening": "sa"}, ["--no-privacy", "--screening", "sa"],
     "screening is a private mechanism"),
    ({"noise_multiplier": 2.0, "schedule": "exp"}, ["--noise-multiplier", "2", "--schedule", "exp"],
     "noise schedule"),
    ({"plan_path": "PLAN", "schedule": "exp"}, ["--plan", "PLAN", "--schedule", "exp"],
     "noise schedule"),
    ({"plan_path": "PLAN", "epochs": 7}, ["--plan", "PLAN", "--epochs", "7"], "re-plan"),
    ({"plan_path": "PLAN", "batch_size": 64}, ["--plan", "PLAN", "--batch-size", "64"], "re-plan"),
    ({"plan_path": "PLAN", "delta": 1e-6}, ["--plan", "PLAN", "--delta", "1e-6"], "re-plan"),
    ({"plan_path": "PLAN", "batching": "shuffle"}, ["--plan", "PLAN", "--batching", "shuffle"],
     "re-plan"),
    ({"plan_path": "PLAN", "screening": "dpsur"}, ["--plan", "PLAN", "--screening", "dpsur"],
     "screening supports the constant schedule"),
]


def _fill(obj, plan):
    if isinstance(obj, dict):
        return {k: (plan if v == "PLAN" else v) for k, v in obj.items()}
    return [plan if v == "PLAN" else v for v in obj]


@pytest.mark.parametrize("fields,flags,match", BUDGET_CONFLICTS)
def test_library_and_cli_refuse_the_same_budget_conflicts(fields, flags, match, plan_file, tmp_path,
                                                          capsys):
    with pytest.raises(InvalidParameterError, match=match) as lib:
        resolve_config(TrainConfig(**_fill(fields, plan_file)))
    assert "--" not in str(lib.value)  # library messages never name CLI flags

    from cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["train", *_fill(flags, plan_file), "--out", str(tmp_path / "m.pt"), "--quiet"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == f"dpaudit: error: {lib.value}"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fields", [
    {}, {"noise_multiplier": 2.0}, {"noise_multiplier": 2.0, "epsilon": 3.0}, {"epsilon": 1.0},
    {"no_privacy": True}, {"plan_path": "PLAN"}, {"epsilon": 2.0, "schedule": "validation"},
    {"screening": "dpsur", "epsilon": 3.0}, {"dataset": "mnist"},
])
def test_allowed_budgets_resolve_idempotently_and_their_stored_config_is_valid(fields, plan_file):
    cfg = resolve_config(TrainConfig(**_fill(fields, plan_file)))
    again = resolve_config(cfg)
    assert again == cfg
    # the metadata stores cfg.to_dict(): re-running it (e.g. shadow models) must be allowed
    stored = json.loads(json.dumps(cfg.to_dict()))
    assert resolve_config(TrainConfig(**stored)) == cfg


def test_default_budget_is_the_default_epsilon_only_when_nothing_else_is_given(plan_file):
    assert resolve_config(TrainConfig()).epsilon == DEFAULT_EPSILON
    assert resolve_config(TrainConfig(noise_multiplier=3.0)).epsilon is None
    assert resolve_config(TrainConfig(no_privacy=True)).epsilon is None
    planned = resolve_config(TrainConfig(plan_path=plan_file))
    plan = load_plan(TrainConfig(plan_path=plan_file))
    assert planned.epsilon is None and plan is not None
    assert (planned.batch_size, planned.epochs, planned.delta, planned.accountant) == (
        plan.run.batch_size, plan.run.epochs, plan.delta, plan.accountant)


def test_validation_schedule_holds_out_data():
    assert resolve_config(TrainConfig(schedule="validation")).member_fraction == 0.9
    assert resolve_config(TrainConfig(schedule="validation", member_fraction=0.5)).member_fraction == 0.5
    assert resolve_config(TrainConfig()).member_fraction == 1.0


@pytest.mark.parametrize("fields,match", [
    ({"epochs": 2.5}, "epochs"), ({"epochs": float("nan")}, "epochs"), ({"batch_size": 0}, "batch size"),
    ({"lr": float("inf")}, "lr"), ({"momentum": 1.0}, "momentum"), ({"delta": 0.0}, "delta"),
    ({"noise_multiplier": 0.0}, "noise multiplier"), ({"noise_multiplier": float("nan")}, "noise multiplier"),
    ({"threads": 0}, "threads"), ({"eval_size": 0}, "evaluation size"), ({"seed": -1}, "seed"),
    ({"accountant": "yu2019"}, "accountant"), ({"schedule": "cosine"}, "schedule"),
    ({"lr_schedule": "step"}, "lr schedule"), ({"arch": "resnet"}, "unknown model"),
    ({"arch": "mlp", "arch_kwargs": {"depth": 3}}, "unknown option"),
    ({"arch_kwargs": {"center": "yes"}}, "center"),
    ({"screening": "sa", "screen_sigma": -1.0}, "screening noise_multiplier"),
    ({"ema_decay": 1.0}, "EMA decay"),
])
def test_bad_values_are_refused_without_flag_names(fields, match):
    with pytest.raises(InvalidParameterError, match=match) as exc:
        resolve_config(TrainConfig(**fields))
    assert "--" not in str(exc.value)


@given(eps=st.one_of(st.none(), st.floats(0.1, 10)), sigma=st.one_of(st.none(), st.floats(0.5, 5)),
       no_privacy=st.booleans(), schedule=st.sampled_from(["constant", "exp", "validation"]))
def test_property_exactly_one_budget_source_is_accepted(eps, sigma, no_privacy, schedule):
    cfg = TrainConfig(epsilon=eps, noise_multiplier=sigma, no_privacy=no_privacy, schedule=schedule)
    conflict = (no_privacy and (eps is not None or sigma is not None)) or (
        schedule != "constant" and (no_privacy or sigma is not None))
    if conflict:
        with pytest.raises(InvalidParameterError):
            resolve_config(cfg)
    else:
        c = resolve_config(cfg)
        sources = [c.no_privacy, c.noise_multiplier is not None or c.epsilon is not None]
        assert sum(sources) == 1


def test_preflight_finds_missing_data_without_reading_it(tmp_path):
    with pytest.raises(InvalidParameterError, match="IDX"):
        preflight(TrainConfig(dataset="mnist", data_dir=str(tmp_path)))
    with pytest.raises(InvalidParameterError, match="unknown dataset"):
        preflight(TrainConfig(dataset="cifar"))
    assert preflight(TrainConfig()).epsilon == DEFAULT_EPSILON


# ---------------------------------------------------------------- fast start: no torch
_NO_TORCH = """
import sys
import dpaudit.training, dpaudit.training.config, dpaudit.training.budget, dpaudit.training.ledger
import dpaudit.training.data, dpaudit.training.archs, dpaudit.training.split, dpaudit.runtime
from dpaudit.training import TrainConfig, PrivacyBudget, resolve_config
resolve_config(TrainConfig())
print(sorted(m for m in ("torch", "scipy") if m in sys.modules))
"""


def test_config_and_budget_modules_do_not_import_torch():
    out = subprocess.run([sys.executable, "-c", _NO_TORCH], capture_output=True, text=True, check=True)
    assert "torch" not in out.stdout, out.stdout


_CLI_BAD_VALUE = """
import sys
from cli.main import main
try:
    main(["train", *sys.argv[1:]])
except SystemExit as exc:
    print("exit", exc.code, "torch" in sys.modules)
"""


@pytest.mark.parametrize("args", [
    ["--epsilon", "-2", "--out", "m.pt"],
    ["--epochs", "0", "--out", "m.pt"],
    ["--no-privacy", "--epsilon", "1", "--out", "m.pt"],
    ["--model", "mlp", "--model-arg", "depth=3", "--out", "m.pt"],
    ["--plan", "/nonexistent/plan.json", "--out", "m.pt"],
    ["--dataset", "mnist", "--data-dir", "/nonexistent", "--out", "m.pt"],
    ["--out", "/proc/m.pt"],
    ["--out", "/nonexistent-folder/m.pt"],
])
def test_cli_rejects_bad_values_before_importing_torch(args, tmp_path):
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _CLI_BAD_VALUE, *args], capture_output=True,
                         text=True, cwd=tmp_path, env=_env())
    wall = time.perf_counter() - t0
    assert out.stdout.strip() == "exit 2 False", (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dpaudit: error: "), out.stderr
    assert ".tmp" not in out.stderr
    assert list(tmp_path.iterdir()) == []
    print(f"{args}: {wall:.2f} s")


def _env():
    import os
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[2])
    return {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
