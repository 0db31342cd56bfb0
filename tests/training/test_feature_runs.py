"""Data-set and feature defaults, and whole runs with private data normalisation and
ScatterNet features (on the bundled digits: no data files needed)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dpaudit.errors import InvalidParameterError
from dpaudit.training import TrainConfig, load_dataset, load_model, save_model, train
from dpaudit.training.budget import account
from dpaudit.training.config import resolve_config
from dpaudit.training.ledger import PrivacyLedger

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_dataset_defaults_include_ema_and_cifar():
    m = resolve_config(TrainConfig(dataset="mnist"))
    assert m.ema_decay == 0.995 and m.arch == "cnn" and m.arch_kwargs == {"center": True}
    assert resolve_config(TrainConfig(dataset="mnist", ema_decay=0.0)).ema_decay == 0.0
    c = resolve_config(TrainConfig(dataset="cifar10"))
    assert (c.arch, c.arch_kwargs, c.batch_size, c.clip, c.ema_decay) == (
        "cifar-cnn", {"input_norm": "imagenet"}, 1024, 0.1, 0.995)
    assert resolve_config(TrainConfig(dataset="digits")).ema_decay is None


def test_feature_defaults_merge_and_user_values_win():
    c = resolve_config(TrainConfig(dataset="mnist", features="scatternet"))
    assert (c.arch, c.arch_kwargs, c.batch_size, c.lr, c.momentum, c.clip) == (
        "logreg", {"input_norm": "data"}, 4096, 8.0, 0.9, 0.1)
    assert c.norm_sigma == 8.0 and c.norm_clip == (1.0, 1.0)
    f = resolve_config(TrainConfig(dataset="fashion-mnist", features="scatternet", lr=1.0))
    assert f.arch_kwargs == {"input_norm": "group", "norm_groups": 27} and f.lr == 1.0
    assert f.norm_sigma is None  # no private statistics with GroupNorm
    s = resolve_config(TrainConfig(dataset="cifar10", features="scatternet", arch="scatter-cnn",
                                   arch_kwargs={"input_norm": "data"}))
    assert s.arch_kwargs == {"input_norm": "data"} and s.batch_size == 8192


@pytest.mark.parametrize("kw,match", [
    ({"features": "sift"}, "features must be one of"),
    ({"norm_clip": (1.0,)}, "two numbers"),
    ({"norm_clip": (1.0, -1.0)}, "C_s"),
    ({"norm_sigma": 0.0}, "normalisation noise multiplier"),
    ({"arch": "logreg", "arch_kwargs": {"input_norm": "group"}}, "norm_groups"),
])
def test_bad_feature_options(kw, match):
    with pytest.raises(InvalidParameterError, match=match):
        resolve_config(TrainConfig(**kw))


def test_private_data_normalisation_run_is_charged_and_saved(digits, tmp_path):
    cfg = TrainConfig(dataset="digits", arch="logreg", arch_kwargs={"input_norm": "data"}, epsilon=2.0,
                      epochs=3, norm_sigma=8.0, norm_clip=(0.5, 0.5), seed=3)
    res = train(cfg, dataset=digits, progress=False)
    m = res.metadata
    assert m["input_statistics"] == {"private": True, "members": 1437, "noise_multiplier": 8.0,
                                     "clip": [0.5, 0.5], "releases": 2, "sample_rate": 1.0}
    assert m["ledger"]["extra_releases"][0]["noise_multiplier"] == 8.0
    assert any("data normalisation" in n for n in m["notes"])
    run = PrivacyLedger.from_dict(m["ledger"]).to_run()
    assert account(run, m["delta"], "pld").epsilon == pytest.approx(m["epsilon"], abs=1e-9)
    assert m["epsilon"] <= 2.0
    # the same sigma without the statistics spends less: the charge is real
    bare = PrivacyLedger.from_dict({**m["ledger"], "extra_releases": []}).to_run()
    assert account(bare, m["delta"], "pld").epsilon < m["epsilon"] - 0.01
    layer = res.model[0]
    assert float(layer.var.sum()) > 0
    save_model(tmp_path / "m.pt", res.model, m)
    model, meta = load_model(tmp_path / "m.pt")
    assert torch.equal(model[0].mean, layer.mean) and meta["levers"]["input_norm"] == "data"


def test_normalisation_without_privacy_is_exact(digits):
    res = train(TrainConfig(dataset="digits", arch="logreg", arch_kwargs={"input_norm": "data"},
                            no_privacy=True, epochs=1), dataset=digits, progress=False)
    assert res.metadata["input_statistics"] == {"private": False, "members": 1437}
    assert res.model[0].mean.item() == pytest.approx(float(digits.x_train.mean()), abs=1e-5)


def test_budget_that_cannot_pay_for_the_statistics_is_refused_before_release(digits):
    cfg = TrainConfig(dataset="digits", arch="logreg", arch_kwargs={"input_norm": "data"},
                      noise_multiplier=2.0, epsilon=0.3, norm_sigma=1.0, epochs=1)
    with pytest.raises(InvalidParameterError, match="does not cover the private normalisation"):
        train(cfg, dataset=digits, progress=False)
    with pytest.raises(InvalidParameterError, match="releases before training alone"):
        train(TrainConfig(dataset="digits", arch="logreg", arch_kwargs={"input_norm": "data"},
                          epsilon=0.3, norm_sigma=1.0, epochs=1), dataset=digits, progress=False)


def test_scatternet_route_on_digits(digits, tmp_path):
    pytest.importorskip("kymatio")
    cfg = TrainConfig(dataset="digits", features="scatternet", feature_cache=str(tmp_path),
                      arch="logreg", arch_kwargs={"input_norm": "group", "norm_groups": 81},
                      epsilon=2.0, epochs=2, lr=1.0)
    res = train(cfg, dataset=digits, progress=False)
    m = res.metadata
    assert m["input_shape"] == [81, 2, 2] and m["features"]["kind"] == "scatternet"
    assert m["levers"]["features"] == "scatternet" and m["test_accuracy"] > 0.3
    from dpaudit.training.features import image_model

    img = image_model(res.model, m)
    x = torch.from_numpy(digits.x_test[:5])
    assert img(x).shape == (5, 10)


def test_cli_feature_flags(tmp_path, capsys):
    pytest.importorskip("kymatio")
    from cli.main import main

    out = tmp_path / "m.pt"
    main(["train", "--dataset", "digits", "--features", "scatternet", "--feature-cache", str(tmp_path / "c"),
          "--model", "logreg", "--model-arg", "input_norm=data", "--norm-sigma", "8", "--norm-clip", "1",
          "0.5", "--epochs", "1", "--out", str(out), "--json"])
    d = json.loads(capsys.readouterr().out)
    assert d["features"]["kind"] == "scatternet" and d["input_statistics"]["clip"] == [1.0, 0.5]
    _, meta = load_model(out)
    assert meta["config"]["norm_clip"] == [1.0, 0.5]
    assert np.isfinite(meta["epsilon"])
