"""bench/accuracy.py bookkeeping: cell keys (old results stay valid), grids and points, the
tuned-recipe choice (validation only), the reproduce-with flags and labels."""

from __future__ import annotations

import json

from bench import accuracy as acc


def test_old_rows_are_end_to_end_rows(tmp_path):
    old = {"dataset": "mnist", "epsilon": 2.0, "method": "plain", "seed": 0, "tune": False, "tag": ""}
    p = tmp_path / "r.json"
    p.write_text(json.dumps({"command": "x", "results": [old]}))
    rows = acc.load_results(str(p))
    assert list(rows) == ["mnist|e2e|2|plain|0|test"]
    new = {**old, "route": "scatternet"}
    assert acc.cell_key(new) == "mnist|scatternet|2|plain|0|test"


def test_grid_and_points():
    assert acc.parse_grid("batch_size=1,2;lr=0.5,x") == [
        {"batch_size": 1, "lr": 0.5}, {"batch_size": 1, "lr": "x"},
        {"batch_size": 2, "lr": 0.5}, {"batch_size": 2, "lr": "x"}]
    assert acc.parse_grid(None) == [{}]
    assert acc.parse_points("batch_size=1024,lr=2;epochs=20") == [{"batch_size": 1024, "lr": 2}, {"epochs": 20}]
    assert acc.tag_of({"lr": 2, "batch_size": 1024}) == "batch_size=1024,lr=2"


def _tune_row(tag_over, val, eps=2.0, method="plain", seed=0, dataset="mnist", route="scatternet"):
    return {"dataset": dataset, "route": route, "epsilon": eps, "method": method, "seed": seed,
            "tune": True, "tag": acc.tag_of(tag_over), "overrides": tag_over, "val_accuracy": val,
            "test_accuracy": None}


def test_tuned_recipe_uses_validation_means_of_plain_runs_only():
    rows = [_tune_row({"lr": 1}, 0.90), _tune_row({"lr": 1}, 0.96, seed=1),
            _tune_row({"lr": 2}, 0.94), _tune_row({"lr": 2}, 0.94, seed=1),
            _tune_row({"lr": 4}, 0.99, method="sa"), _tune_row({"lr": 8}, 0.99, eps=3.0),
            {**_tune_row({"lr": 16}, 0.5), "tune": False, "test_accuracy": 0.999}]
    results = {acc.cell_key(r): r for r in rows}
    assert acc.tuned_overrides(results, "mnist", "scatternet", 2.0) == {"lr": 2}
    assert acc.tuned_overrides(results, "mnist", "e2e", 2.0) is None


def test_reproduce_flags_and_labels():
    row = {"dataset": "cifar10", "route": "scatternet", "epsilon": 3.0, "method": "dpsur", "seed": 0,
           "overrides": {"batch_size": 8192, "lr": 4, "arch_kwargs": {"input_norm": "data"}},
           "config": {"epochs": 30}}
    flags = acc.reproduce_flags(row)
    assert flags == ("--dataset cifar10 --epsilon 3 --features scatternet --screening dpsur "
                     "--model-arg input_norm=\"data\" --batch-size 8192 --lr 4")
    assert acc._labels([row]) == "30 epochs (default 60)"
