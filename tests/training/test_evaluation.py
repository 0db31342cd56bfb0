"""Evaluation during training (bounded held-out subset, off on request) and runs the
accountant cannot or can barely bound (tiny sigma)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from dpaudit.errors import OutOfValidityError
from dpaudit.training import TrainConfig, load_dataset, train
from dpaudit.training.evaluation import validation_subset

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_validation_subset_is_bounded_seeded_and_held_out():
    held = np.arange(5, 1000, 3)
    a = validation_subset(held, 50, seed=4)
    assert a.size == 50 and np.array_equal(a, validation_subset(held, 50, seed=4))
    assert set(a) <= set(held) and np.all(np.diff(a) > 0)
    assert not np.array_equal(a, validation_subset(held, 50, seed=5))
    assert validation_subset(held, None, 0) is held and validation_subset(held, 10_000, 0) is held


def test_epochs_are_scored_on_a_bounded_held_out_subset(digits):
    cfg = TrainConfig(noise_multiplier=3.0, epochs=2, member_fraction=0.3, eval_size=100,
                      accountant="rdp")
    m = train(cfg, dataset=digits, progress=False).metadata
    assert m["validation_examples"] == 100 and len(m["split"]["nonmember_indices"]) > 900
    assert all(0 <= h["val_accuracy"] <= 1 for h in m["history"])
    assert m["val_accuracy"] == m["history"][-1]["val_accuracy"]
    assert m["test_accuracy"] is not None


def test_no_evaluation_unless_asked(digits):
    cfg = TrainConfig(noise_multiplier=3.0, epochs=2, member_fraction=0.5, evaluate=False,
                      accountant="rdp")
    m = train(cfg, dataset=digits, progress=False).metadata
    assert all("val_accuracy" not in h for h in m["history"])
    assert m["test_accuracy"] is None and m["val_accuracy"] is None
    assert m["validation_examples"] is None
    # the validation schedule needs held-out accuracy: it is still measured
    v = train(TrainConfig(epsilon=2.0, schedule="validation", epochs=3, accountant="rdp",
                          evaluate=False), dataset=digits, progress=False).metadata
    assert all("val_accuracy" in h for h in v["history"]) and v["test_accuracy"] is None


def test_tiny_sigma_with_rdp_is_fast_and_sound(digits):
    t0 = time.process_time()
    m = train(TrainConfig(noise_multiplier=1e-4, epochs=2, accountant="rdp"), dataset=digits,
              progress=False).metadata
    assert time.process_time() - t0 < 30
    assert m["epsilon"] > 1e6  # no meaningful privacy: said, not hidden


def test_tiny_sigma_with_the_default_accountant_answers_or_refuses(digits):
    try:
        m = train(TrainConfig(noise_multiplier=1e-4, epochs=1), dataset=digits,
                  progress=False).metadata
    except OutOfValidityError:
        return
    assert m["epsilon"] > 1e3


def test_accountant_refusal_is_one_cli_line(tmp_path, capsys, monkeypatch):
    from cli.main import main
    from dpaudit.training import budget

    def refuse(*a, **k):
        raise OutOfValidityError("no sound epsilon for sigma = 0.0001 at these settings")

    monkeypatch.setattr(budget, "account", refuse)
    with pytest.raises(SystemExit) as exc:
        main(["train", "--noise-multiplier", "1e-4", "--epochs", "1", "--quiet",
              "--out", str(tmp_path / "m.pt")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.strip() == "dpaudit: error: no sound epsilon for sigma = 0.0001 at these settings"
    assert list(tmp_path.iterdir()) == []
