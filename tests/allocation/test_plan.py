"""Plans are values: JSON round trip, safe loading, re-accounting reproduces epsilon."""

from __future__ import annotations

import json

import pytest
from alloc_testlib import available_accountants, runs
from hypothesis import given, settings

from dpaudit.allocation import Plan, ValidationDecay, account_plan, solve_plan
from dpaudit.errors import InvalidParameterError

ACCS = available_accountants()


@pytest.fixture(scope="module")
def plan():
    if "rdp" not in ACCS:
        pytest.skip("rdp accountant not present")
    return solve_plan(2.0, 1e-5, dataset_size=60000, batch_size=256, epochs=10, accountant="rdp",
                      schedule=ValidationDecay(factor=0.8, patience=2, min_ratio=0.5))


def test_round_trip_and_reaccount(plan, tmp_path):
    path = tmp_path / "plan.json"
    plan.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["plan.json"]  # atomic: no temp left
    loaded = Plan.load(path)
    assert loaded == plan
    assert loaded.runtime_rule == plan.runtime_rule
    assert account_plan(loaded).epsilon == plan.epsilon  # exact: same run, same accountant
    d = json.loads(path.read_text())
    for key in ("epsilon", "delta", "schedule", "noise_multipliers", "accountant", "batching",
                "cumulative_epsilon", "dataset_size", "batch_size", "runtime_rule"):
        assert key in d
    assert d["schedule"] == "validation" and len(d["noise_multipliers"]) == 10


@pytest.mark.skipif("pld" not in ACCS, reason="pld accountant not present")
def test_reaccount_with_a_tighter_accountant(plan):
    rep = account_plan(plan, "pld")
    assert rep.accountant == "pld"
    assert rep.epsilon <= plan.epsilon


def _tamper(plan, tmp_path, **changes):
    d = plan.to_dict()
    d.update(changes)
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(d))
    return p


def test_load_rejects_bad_files(plan, tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text("{not json")
    with pytest.raises(InvalidParameterError, match="not valid JSON"):
        Plan.load(bad)
    with pytest.raises(InvalidParameterError, match="format"):
        Plan.load(_tamper(plan, tmp_path, format="other/1"))
    with pytest.raises(InvalidParameterError, match="disagree"):
        Plan.load(_tamper(plan, tmp_path, noise_multipliers=[0.1] * 10))
    with pytest.raises(InvalidParameterError):
        Plan.load(_tamper(plan, tmp_path, delta=2.0))
    d = plan.to_dict()
    del d["run"]
    bad.write_text(json.dumps(d))
    with pytest.raises(InvalidParameterError, match="not a valid plan"):
        Plan.load(bad)
    with pytest.raises(FileNotFoundError):
        Plan.load(tmp_path / "missing.json")


@settings(max_examples=15)
@given(runs)
def test_json_round_trip_reproduces_epsilon_exactly(fast_rdp, kw):
    plan = solve_plan(accountant=fast_rdp, **kw)
    loaded = Plan.from_dict(json.loads(plan.to_json()))
    assert loaded == plan
    assert fast_rdp.epsilon(loaded.run, loaded.delta).epsilon == plan.epsilon
