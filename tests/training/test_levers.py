"""Privacy-free accuracy levers: learning-rate decay and the fixed input centring."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from dpaudit.errors import InvalidParameterError
from dpaudit.training import TrainConfig, load_dataset, train
from dpaudit.training.levers import lr_factor
from dpaudit.training.models import build_model, resolve_arch_kwargs


@given(st.sampled_from(["cosine", "linear"]), st.integers(1, 10_000), st.data())
def test_lr_decay_starts_full_ends_near_zero_and_never_increases(kind, total, data):
    s1 = data.draw(st.integers(0, total))
    s2 = data.draw(st.integers(s1, total))
    assert lr_factor(kind, 0, total) == 1.0
    assert lr_factor(kind, total, total) == pytest.approx(0.0, abs=1e-12)
    assert 0.0 <= lr_factor(kind, s2, total) <= lr_factor(kind, s1, total) <= 1.0


def test_lr_factor_values_and_errors():
    assert lr_factor("constant", 7, 10) == 1.0
    assert lr_factor("cosine", 5, 10) == pytest.approx(0.5)
    assert lr_factor("cosine", 1, 4) == pytest.approx((1 + math.cos(math.pi / 4)) / 2)
    assert lr_factor("linear", 3, 4) == pytest.approx(0.25)
    with pytest.raises(InvalidParameterError, match="lr schedule"):
        lr_factor("warmup", 0, 10)


@pytest.mark.parametrize("arch", ["cnn", "mlp", "logreg"])
def test_center_maps_pixels_to_plus_minus_one_inside_the_model(arch):
    torch.manual_seed(0)
    plain = build_model(arch, (1, 8, 8), 10)
    torch.manual_seed(0)
    centred = build_model(arch, (1, 8, 8), 10, center=True)
    assert resolve_arch_kwargs(arch, (1, 8, 8))["center"] is False
    x = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(centred(x), plain(2 * x - 1), atol=1e-6)
    assert sum(p.numel() for p in centred.parameters()) == sum(p.numel() for p in plain.parameters())


def test_lr_schedule_is_applied_and_recorded():
    ds = load_dataset("digits")
    seen: list[float] = []

    from dpaudit.training.trainer import Callback

    class Lr(Callback):
        def on_step(self, state):
            seen.append(state.optimizer.param_groups[0]["lr"])

    cfg = TrainConfig(epsilon=2.0, epochs=2, lr_schedule="linear", reproducible=True)
    m = train(cfg, dataset=ds, progress=False, callbacks=[Lr()]).metadata
    assert m["levers"]["lr_schedule"] == "linear"
    assert seen[0] == pytest.approx(cfg_lr(m)) and seen[-1] < 0.1 * cfg_lr(m)
    assert all(a >= b for a, b in zip(seen, seen[1:]))


def cfg_lr(m: dict) -> float:
    return float(m["config"]["lr"])


def test_bad_lr_schedule_is_refused():
    with pytest.raises(InvalidParameterError, match="lr schedule"):
        train(TrainConfig(epsilon=2.0, epochs=1, lr_schedule="step"),
              dataset=load_dataset("digits"), progress=False)


def test_dataset_model_options_apply_to_the_default_model_only():
    from dpaudit.training.trainer import resolve_config

    assert resolve_config(TrainConfig(dataset="mnist")).arch_kwargs == {"center": True}
    assert resolve_config(TrainConfig(dataset="mnist", arch_kwargs={"center": False})).arch_kwargs == {
        "center": False}
    assert resolve_config(TrainConfig(dataset="mnist", arch="mlp")).arch_kwargs == {}
    assert resolve_config(TrainConfig(dataset="digits")).arch_kwargs == {}
    # no-privacy runs keep a batch that suits plain SGD's learning rate
    assert resolve_config(TrainConfig(dataset="mnist", no_privacy=True)).batch_size == 512


def test_center_must_be_a_boolean():
    with pytest.raises(InvalidParameterError, match="center"):
        build_model("cnn", (1, 28, 28), 10, center="yes")
