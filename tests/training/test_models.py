"""Architectures of the reference trainer: Tramer & Boneh's CIFAR-10 and ScatterNet CNNs,
input normalisations, weight standardisation; exact per-example gradients through the
clipping engine; option checks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dpaudit.errors import InvalidParameterError
from dpaudit.training.archs import check_arch_options, resolve_arch_kwargs
from dpaudit.training.clipping import clipped_grad_sum, per_sample_grads
from dpaudit.training.models import WSConv2d, build_model
from tests.training.test_clipping import naive_clipped_sum, naive_grads

torch.set_num_threads(1)


def _n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_published_layouts():
    # Tramer & Boneh 2021 CIFAR-10 CNN: 32,32,M,64,64,M,128,128,M (3x3), fc 128, fc 10
    cifar = build_model("cifar-cnn", (3, 32, 32), 10)
    convs = [m for m in cifar.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 32, 64, 64, 128, 128]
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    assert _n_params(cifar) == 550_570
    assert [m.out_features for m in cifar.modules() if isinstance(m, nn.Linear)] == [128, 10]
    assert any(isinstance(m, nn.Tanh) for m in cifar.modules())
    # ScatterNet CNNs (their models.py): grey 81x7x7 and colour 243x8x8 features
    grey = build_model("scatter-cnn", (81, 7, 7), 10)
    assert [(c.out_channels, c.stride) for c in grey.modules() if isinstance(c, nn.Conv2d)] == [(16, (2, 2)), (32, (1, 1))]
    colour = build_model("scatter-cnn", (243, 8, 8), 10)
    assert [m.out_features for m in colour.modules() if isinstance(m, nn.Linear)] == [10]
    assert _n_params(colour) == 243 * 64 * 9 + 64 + 64 * 64 * 9 + 64 + 64 * 16 * 10 + 10
    for m, s in ((cifar, (3, 32, 32)), (grey, (81, 7, 7)), (colour, (243, 8, 8))):
        assert m(torch.rand(2, *s)).shape == (2, 10)


def test_old_cnn_state_dicts_still_load():
    """The MNIST cnn keeps its module order (saved models rebuild)."""
    m = build_model("cnn", (1, 28, 28), 10, center=True)
    keys = list(m.state_dict())
    assert keys == ["1.weight", "1.bias", "4.weight", "4.bias", "8.weight", "8.bias", "10.weight", "10.bias"]


def test_input_normalisations():
    x = torch.rand(4, 3, 32, 32)
    m = build_model("logreg", (3, 32, 32), 10, input_norm="imagenet")
    first = m[0]
    torch.testing.assert_close(first(x)[:, 0], (x[:, 0] - 0.485) / 0.229)
    g = build_model("logreg", (81, 7, 7), 10, input_norm="group", norm_groups=27)
    assert isinstance(g[0], nn.GroupNorm) and g[0].num_groups == 27 and not g[0].affine
    d = build_model("scatter-cnn", (81, 7, 7), 10, input_norm="data")
    assert set(d.state_dict()) >= {"0.mean", "0.var"}
    with pytest.raises(InvalidParameterError, match="3 channels"):
        build_model("logreg", (1, 28, 28), 10, input_norm="imagenet")
    with pytest.raises(InvalidParameterError, match="does not divide"):
        build_model("logreg", (81, 7, 7), 10, input_norm="group", norm_groups=4)


def test_weight_standardisation():
    conv = WSConv2d(2, 3, 3)
    w = conv.weight.detach()
    ws = (w - w.mean((1, 2, 3), keepdim=True)) / torch.sqrt(w.var((1, 2, 3), keepdim=True, unbiased=False) + 1e-5)
    x = torch.randn(2, 2, 5, 5)
    torch.testing.assert_close(conv(x), nn.functional.conv2d(x, ws, conv.bias))
    m = build_model("cifar-cnn", (3, 32, 32), 10, weight_std=True, groupnorm=8)
    assert sum(isinstance(c, WSConv2d) for c in m.modules()) == 6
    assert sum(isinstance(c, nn.GroupNorm) for c in m.modules()) == 6


@pytest.mark.parametrize("arch,shape,kw", [
    ("cnn", (1, 8, 8), {"weight_std": True, "groupnorm": 4}),
    ("cifar-cnn", (3, 8, 8), {"layout": [4, "M", [6, 3, 2, 1]], "hidden": 5, "weight_std": True,
                              "groupnorm": 2, "input_norm": "imagenet"}),
    ("scatter-cnn", (18, 7, 7), {"input_norm": "group", "norm_groups": 6}),
    ("logreg", (18, 4, 4), {"input_norm": "data"}),
], ids=["cnn-ws-gn", "cifar-small-ws-gn", "scatter-cnn-gn", "logreg-datanorm"])
def test_per_example_gradients_are_exact(arch, shape, kw):
    """Every new layer (WSConv2d, GroupNorm, fixed input layers) is clipped per example:
    the engine agrees with B separate backward passes."""
    torch.manual_seed(0)
    model = build_model(arch, shape, 10, **kw)
    x, y = torch.rand(4, *shape), torch.randint(0, 10, (4,))
    ref = naive_grads(model, x, y)
    for g, r in zip(per_sample_grads(model, x, y), ref):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-6)
    sums, norms = clipped_grad_sum(model, x, y, 0.05)
    ref_sums, ref_norms = naive_clipped_sum(ref, 0.05)
    torch.testing.assert_close(norms, ref_norms, rtol=1e-4, atol=1e-6)
    for s, r in zip(sums, ref_sums):
        torch.testing.assert_close(s, r, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("arch,opts,match", [
    ("cifar-cnn", {"layout": []}, "layout"),
    ("cifar-cnn", {"layout": [32, "X"]}, "layout"),
    ("cifar-cnn", {"layout": [[32, 3, 0, 1]]}, "layout"),
    ("scatter-cnn", {"input_norm": "batch"}, "input normalisation"),
    ("logreg", {"input_norm": "group"}, "norm_groups"),
    ("cnn", {"weight_std": "yes"}, "weight_std"),
    ("logreg", {"hidden": 3}, "unknown option"),
    ("resnet", {}, "unknown model"),
])
def test_bad_options_refused(arch, opts, match):
    with pytest.raises(InvalidParameterError, match=match):
        check_arch_options(arch, opts)


def test_scatter_cnn_layout_follows_input_size():
    assert resolve_arch_kwargs("scatter-cnn", (81, 7, 7))["layout"] == [[16, 3, 2, 1], [32, 3, 1, 1]]
    assert resolve_arch_kwargs("scatter-cnn", (243, 8, 8))["layout"] == [64, "M", 64]
