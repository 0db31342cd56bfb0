"""End-to-end training runs on the bundled digits data (no download), model files, CLI."""

from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from dpaudit.errors import InvalidParameterError, UntrustedFileError
from dpaudit.training import TrainConfig, load_dataset, load_model, save_model, train
from dpaudit.training.budget import account
from dpaudit.training.ledger import PrivacyLedger

torch.set_num_threads(1)  # conftest sets OMP_NUM_THREADS=2; 1 is faster here (docs/training.md)

REQUIRED_KEYS = {"epsilon", "delta", "test_accuracy", "ledger", "arch", "arch_kwargs", "input_shape",
                 "num_classes", "dataset", "data_dir", "split", "config", "accountant",
                 "library_version"}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def default_run(digits):
    """The README's main job: CLI defaults for digits at epsilon = 2."""
    return train(TrainConfig(epsilon=2.0), dataset=digits, progress=False)


def test_digits_dataset_shape(digits):
    assert digits.x_train.shape == (1437, 1, 8, 8) and digits.x_test.shape == (360, 1, 8, 8)
    assert digits.x_train.dtype == np.float32 and digits.y_train.dtype == np.int64
    assert 0.0 <= digits.x_train.min() and digits.x_train.max() <= 1.0


def test_default_digits_run_is_accurate_and_within_budget(default_run):
    m = default_run.metadata
    print(f"digits default: test acc {m['test_accuracy']:.4f}, eps {m['epsilon']:.4f}, "
          f"{m['train_seconds']:.1f} s")
    assert m["test_accuracy"] > 0.80
    assert m["private"] and 0 < m["epsilon"] <= 2.0
    assert m["epsilon"] > 1.9  # the plan spends (almost) the whole budget
    assert REQUIRED_KEYS <= set(m)
    json.dumps(m, allow_nan=False)


def test_ledger_reaccounts_to_claimed_epsilon(default_run):
    m = default_run.metadata
    led = PrivacyLedger.from_dict(m["ledger"])
    run = led.to_run()
    assert run.batching == "poisson" and run.total_steps == m["ledger"]["steps"]
    assert run.noise_multipliers == tuple(m["noise_multipliers"])
    again = account(run, m["delta"], m["accountant"]).epsilon
    assert again == pytest.approx(m["epsilon"], rel=1e-9)
    assert again <= m["target_epsilon"]


def test_split_is_seeded_and_recorded(digits):
    cfg = TrainConfig(epsilon=None, noise_multiplier=5.0, epochs=1, member_fraction=0.5, seed=3)
    a = train(cfg, dataset=digits, progress=False).metadata["split"]
    b = train(cfg, dataset=digits, progress=False).metadata["split"]
    assert a == b
    mem, non = set(a["member_indices"]), set(a["nonmember_indices"])
    assert not mem & non and len(mem | non) == 1437 and abs(len(mem) - 718) <= 1
    assert a["seed"] == 3


def test_budget_stop_never_exceeds_target(digits):
    # sigma = 1 for 50 epochs would spend far more than 1.0: training must stop early.
    cfg = TrainConfig(epsilon=1.0, noise_multiplier=1.0, epochs=50, accountant="rdp")
    r = train(cfg, dataset=digits, progress=False)
    m = r.metadata
    assert m["stopped_early"] and m["epochs_trained"] < 50
    assert m["epsilon"] <= 1.0
    assert any("stopped before epoch" in n for n in m["notes"])
    # one more epoch would have exceeded the budget
    led = PrivacyLedger.from_dict(m["ledger"])
    led.record_epoch(1.0, m["clip"])
    assert account(led.to_run(), m["delta"], m["accountant"]).epsilon > 1.0


def test_explicit_members_and_shuffle_batching(digits):
    members = np.arange(0, 1437, 2)
    cfg = TrainConfig(epsilon=None, noise_multiplier=2.0, epochs=2, batching="shuffle",
                      batch_size=100, accountant="rdp")
    m = train(cfg, dataset=digits, members=members, progress=False).metadata
    assert m["split"]["member_indices"] == members.tolist()
    assert m["ledger"]["batching"] == "shuffle" and m["ledger"]["steps"] == 2 * 8
    assert m["epsilon"] > 0


def test_no_privacy_run(digits):
    r = train(TrainConfig(no_privacy=True, epochs=3), dataset=digits, progress=False)
    m = r.metadata
    assert m["private"] is False and m["epsilon"] is None and m["ledger"] is None
    assert m["test_accuracy"] > 0.8


def test_custom_module_and_callbacks(digits):
    from dpaudit.training import Callback

    class Count(Callback):
        steps = 0
        epochs = 0

        def on_step(self, state):
            Count.steps += 1
            assert state.last_norms is not None

        def on_epoch_end(self, state, row):
            Count.epochs += 1

    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.GroupNorm(4, 32), nn.Tanh(),
                          nn.Linear(32, 10))
    cfg = TrainConfig(epsilon=None, noise_multiplier=3.0, epochs=2, accountant="rdp")
    r = train(cfg, dataset=digits, model=model, progress=False, callbacks=[Count()])
    assert r.metadata["arch"] == "custom" and Count.epochs == 2 and Count.steps > 0


def test_model_file_round_trip(default_run, tmp_path, digits):
    p = tmp_path / "model.pt"
    save_model(p, default_run.model, default_run.metadata)
    obj = torch.load(p, weights_only=True)
    assert obj["format"] == "dpaudit-model/1" and set(obj) == {"format", "state_dict", "metadata"}
    model, meta = load_model(p)
    assert meta == default_run.metadata
    x = torch.from_numpy(digits.x_test[:50])
    torch.testing.assert_close(model(x), default_run.model(x))
    assert not model.training


def test_loading_refuses_pickled_objects(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    p = tmp_path / "evil.pt"
    torch.save({"format": "dpaudit-model/1", "state_dict": {}, "metadata": {"x": Evil()}}, p)
    with pytest.raises(UntrustedFileError):
        load_model(p)
    (tmp_path / "junk.pt").write_bytes(pickle.dumps([1, 2]) + b"garbage")
    with pytest.raises(UntrustedFileError):
        load_model(tmp_path / "junk.pt")
    torch.save({"format": "other"}, tmp_path / "other.pt")
    with pytest.raises(UntrustedFileError, match="not a dpaudit model file"):
        load_model(tmp_path / "other.pt")


def test_interrupted_save_leaves_no_file(tmp_path, monkeypatch):
    p = tmp_path / "model.pt"

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        save_model(p, nn.Linear(2, 2), {"epsilon": 1.0})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"delta": 0.01}, "delta"),
        ({"batch_size": 5000}, "exceeds"),
        ({"batching": "random"}, "batching"),
        ({"epsilon": -1.0}, "epsilon"),
        ({"epsilon": math.inf}, "epsilon"),
        ({"clip": 0.0}, "clip"),
        ({"epochs": 0}, "epochs"),
        ({"arch": "resnet"}, "unknown model"),
        ({"device": "cuda"}, "CUDA"),
        ({"dataset": "cifar"}, "unknown dataset"),
        ({"member_fraction": 0.0}, "member fraction"),
        ({"no_privacy": True, "noise_multiplier": 1.0}, "without privacy takes no noise multiplier"),
    ],
)
def test_bad_config_gives_clear_error(digits, kw, match):
    ds = None if kw.get("dataset") else digits
    with pytest.raises(InvalidParameterError, match=match):
        train(TrainConfig(**kw), dataset=ds, progress=False)


def test_batchnorm_model_refused(digits):
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(144, 10))
    with pytest.raises(InvalidParameterError, match="GroupNorm"):
        train(TrainConfig(epsilon=None, noise_multiplier=1.0, epochs=1), dataset=digits,
              model=model, progress=False)


def test_training_from_a_saved_plan_spends_the_planned_epsilon(digits, tmp_path):
    alloc = pytest.importorskip("dpaudit.allocation")
    try:
        plan = alloc.solve_plan(1.5, 1e-5, dataset_size=1437, batch_size=128, epochs=3,
                                batching="poisson", accountant="rdp", schedule="exp")
    except ImportError:
        pytest.skip("rdp accountant not available")
    plan.save(tmp_path / "plan.json")
    cfg = TrainConfig(epsilon=None, plan_path=str(tmp_path / "plan.json"))  # B from the plan
    m = train(cfg, dataset=digits, progress=False).metadata
    assert PrivacyLedger.from_dict(m["ledger"]).to_run() == plan.run
    assert m["epsilon"] == pytest.approx(plan.epsilon, rel=1e-12) and m["epsilon"] <= 1.5
    assert m["noise_multipliers"] == list(plan.noise_multipliers)
    with pytest.raises(InvalidParameterError, match="re-plan"):
        train(TrainConfig(epsilon=None, plan_path=str(tmp_path / "plan.json"), batch_size=64),
              dataset=digits, progress=False)


def test_validation_schedule_applies_runtime_rule_within_budget(digits):
    pytest.importorskip("dpaudit.allocation")
    cfg = TrainConfig(epsilon=2.0, schedule="validation", epochs=4, accountant="rdp")
    try:
        m = train(cfg, dataset=digits, progress=False).metadata
    except ImportError:
        pytest.skip("rdp accountant not available")
    rule = m["plan"]["runtime_rule"]
    assert m["split"]["nonmember_indices"] and m["config"]["member_fraction"] == 0.9
    sig = m["noise_multipliers"]
    assert all(s >= w - 1e-12 for s, w in zip(sig, rule["worst_case"]))
    assert all(b <= a for a, b in zip(sig, sig[1:]))  # the rule only lowers sigma
    assert m["epsilon"] <= 2.0
    assert all("val_accuracy" in h for h in m["history"])


def test_noise_is_secret_unless_reproducible(digits):
    def weights(**kw):
        cfg = TrainConfig(epsilon=None, noise_multiplier=2.0, epochs=1, accountant="rdp", **kw)
        r = train(cfg, dataset=digits, progress=False)
        return torch.cat([p.detach().flatten() for p in r.model.parameters()]), r.metadata

    a, ma = weights(reproducible=True)
    b, _ = weights(reproducible=True)
    c, mc = weights()
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert any("reproducible" in n for n in ma["notes"])
    assert not any("reproducible" in n for n in mc["notes"])

