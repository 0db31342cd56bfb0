"""The clipping engine against a float64 per-example loop: both per-layer paths (ghost norm,
instantiated gradients), micro-batches, and augmentation multiplicity (K-copy groups)."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from dpaudit.errors import InvalidParameterError
from dpaudit.training import layergrads
from dpaudit.training.augment import Augmenter
from dpaudit.training.clipping import (
    SAFETY,
    clip_and_sum,
    default_loss,
    default_max_rows,
    per_sample_grads,
)
from dpaudit.training.layergrads import GHOST, INSTANTIATE, choose_path, layer_paths
from dpaudit.training.models import build_model

torch.set_num_threads(1)


def small_cifar_cnn() -> nn.Module:
    """Tramer & Boneh's CIFAR-10 layout (conv pairs, max-pool 2, tanh) at 3x16x16, narrow."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.Tanh(), nn.Conv2d(8, 8, 3, padding=1), nn.Tanh(),
        nn.MaxPool2d(2, 2), nn.Conv2d(8, 16, 3, padding=1), nn.Tanh(), nn.Conv2d(16, 16, 3, padding=1),
        nn.Tanh(), nn.MaxPool2d(2, 2), nn.Flatten(), nn.Linear(16 * 16, 12), nn.Tanh(), nn.Linear(12, 10),
    )


def f64_reference(model, x, y, clip, k=1):
    """Definition, in float64: example i's gradient is the mean of its k rows' gradients (one
    backward pass per example); clipped to C (1 - SAFETY); summed."""
    m = copy.deepcopy(model).double()
    params = [p for p in m.parameters() if p.requires_grad]
    grads = []
    for i in range(x.shape[0] // k):
        rows = slice(i * k, (i + 1) * k)
        loss = default_loss(m(x[rows].double()), y[rows]).mean()
        grads.append(torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)]))
    g = torch.stack(grads)
    norms = g.norm(dim=1)
    f = (clip * (1 - SAFETY) / norms).clamp(max=1.0)
    return (f[:, None] * g).sum(0), norms


def flat(ts):
    return torch.cat([t.flatten() for t in ts]).double()


def rel(a, b):
    return float((a - b).norm() / b.norm())


def _cases():
    torch.manual_seed(0)
    yield "mnist-cnn", build_model("cnn", (1, 28, 28), 10, center=True), torch.rand(37, 1, 28, 28)
    yield "cifar-cnn", small_cifar_cnn(), torch.rand(23, 3, 16, 16)
    yield "mlp", build_model("mlp", (1, 28, 28), 10, hidden=[64]), torch.rand(41, 1, 28, 28)


@pytest.mark.parametrize("name,model,x", list(_cases()), ids=lambda v: v if isinstance(v, str) else "")
@pytest.mark.parametrize("max_rows", [None, 8])
def test_clipped_sum_equals_float64_loop_to_1e6(name, model, x, max_rows):
    torch.manual_seed(1)
    y = torch.randint(0, 10, (x.shape[0],))
    for clip in (1e-3, 0.1, 1e3):  # every example clipped / some / none
        r = clip_and_sum(model, x, y, clip, max_rows=max_rows)
        ref_sum, ref_norms = f64_reference(model, x, y, clip)
        assert rel(flat(r.grads), ref_sum) <= 1e-6, name
        assert float(((r.norms.double() - ref_norms).abs() / ref_norms).max()) <= 1e-6
        assert r.losses.shape == (x.shape[0],) and r.logits.shape == (x.shape[0], 10)


@pytest.mark.parametrize("path", [GHOST, INSTANTIATE])
def test_both_per_layer_paths_equal_the_float64_loop(monkeypatch, path):
    """Force every Linear/Conv2d layer onto one path: each path alone is exact."""
    monkeypatch.setattr(layergrads, "choose_path", lambda t, p, d: path)
    torch.manual_seed(2)
    for model, x in ((build_model("cnn", (1, 28, 28), 10), torch.rand(9, 1, 28, 28)),
                     (small_cifar_cnn(), torch.rand(7, 3, 16, 16))):
        y = torch.randint(0, 10, (x.shape[0],))
        assert all(p.path == path for p in layer_paths(model, x))
        r = clip_and_sum(model, x, y, 0.05)
        ref_sum, ref_norms = f64_reference(model, x, y, 0.05)
        assert rel(flat(r.grads), ref_sum) <= 1e-6
        torch.testing.assert_close(r.norms.double(), ref_norms, rtol=1e-6, atol=0)


def test_float64_model_matches_float64_loop_to_1e12():
    torch.manual_seed(3)
    model = small_cifar_cnn().double()
    x, y = torch.rand(6, 3, 16, 16, dtype=torch.float64), torch.randint(0, 10, (6,))
    r = clip_and_sum(model, x, y, 0.05, max_rows=4)
    ref_sum, ref_norms = f64_reference(model, x, y, 0.05)
    assert r.norms.dtype == torch.float64
    assert rel(flat(r.grads), ref_sum) <= 1e-12
    torch.testing.assert_close(r.norms, ref_norms, rtol=1e-12, atol=0)


def test_mixed_rule_on_the_reference_cnns():
    """Bu et al. 2022: ghost iff 2 T^2 < p d. MNIST CNN: conv1 (T = 169, p d = 1024)
    instantiates, conv2 (T = 25, p d = 8192) and the Linear layers take the ghost norm."""
    paths = [(p.layer, p.positions, p.p * p.d, p.path)
             for p in layer_paths(build_model("cnn", (1, 28, 28), 10), torch.zeros(1, 1, 28, 28))]
    assert paths == [("Conv2d", 169, 1024, INSTANTIATE), ("Conv2d", 25, 8192, GHOST),
                     ("Linear", 1, 512 * 32, GHOST), ("Linear", 1, 320, GHOST)]
    # K copies per example multiply T: 4 copies of conv2 (2 (100)^2 > 8192) instantiate
    assert layer_paths(build_model("cnn", (1, 28, 28), 10), torch.zeros(1, 1, 28, 28), 4)[1].path == INSTANTIATE


@given(t=st.integers(1, 5000), p=st.integers(1, 5000), d=st.integers(1, 5000))
def test_property_choose_path_is_the_space_rule(t, p, d):
    assert (choose_path(t, p, d) == GHOST) == (2 * t * t < p * d)


def test_micro_batches_do_not_change_the_result():
    torch.manual_seed(4)
    model = build_model("cnn", (1, 28, 28), 10)
    x, y = torch.rand(19, 1, 28, 28), torch.randint(0, 10, (19,))
    ref = clip_and_sum(model, x, y, 0.1, max_rows=19)
    for rows in (1, 5, 18):
        r = clip_and_sum(model, x, y, 0.1, max_rows=rows)
        assert rel(flat(r.grads), flat(ref.grads)) <= 1e-6
        torch.testing.assert_close(r.norms, ref.norms, rtol=1e-6, atol=0)
        torch.testing.assert_close(r.losses, ref.losses)
    assert default_max_rows(torch.zeros(5, 1, 28, 28)) == 2**18 // 784
    assert default_max_rows(torch.zeros(0, 3, 32, 32)) == 2**18 // 3072


# ----------------------------------------------------------------------------- K-copy groups
@pytest.mark.parametrize("k", [2, 3])
def test_k_copy_group_is_one_clipped_contribution_of_norm_at_most_c(k):
    """Augmentation multiplicity (De et al. 2022, Sec. 3.2): the K copies' gradients are
    averaged before clipping, so a group adds ONE vector of norm <= C -- the float64 mean of
    its copies' gradients, clipped -- whatever K is."""
    torch.manual_seed(5)
    model = small_cifar_cnn()
    aug = Augmenter("flip-crop", k, torch.Generator().manual_seed(0))
    examples = torch.rand(5, 3, 16, 16) * 40  # large inputs: every group is clipped
    x, y = aug(examples), torch.randint(0, 10, (5,)).repeat_interleave(k)
    c = 0.01
    for i in range(5):
        rows = slice(i * k, (i + 1) * k)
        r = clip_and_sum(model, x[rows], y[rows], c, group_size=k)
        assert r.norms.shape == (1,) and r.norms[0] > c
        assert float(flat(r.grads).norm()) <= c  # one clipped contribution, not K
        ref_sum, ref_norms = f64_reference(model, x[rows], y[rows], c, k)
        assert rel(flat(r.grads), ref_sum) <= 1e-6
        torch.testing.assert_close(r.norms.double(), ref_norms, rtol=1e-6, atol=0)
    # the whole batch in micro-batches that never split a group
    r = clip_and_sum(model, x, y, c, group_size=k, max_rows=2 * k + 1)
    ref_sum, _ = f64_reference(model, x, y, c, k)
    assert rel(flat(r.grads), ref_sum) <= 1e-6 and r.losses.shape == (5,)


@pytest.mark.parametrize("path", [GHOST, INSTANTIATE])
def test_k_copy_groups_on_each_path(monkeypatch, path):
    monkeypatch.setattr(layergrads, "choose_path", lambda t, p, d: path)
    torch.manual_seed(6)
    model, k = build_model("cnn", (1, 28, 28), 10), 3
    x, y = torch.rand(4 * k, 1, 28, 28), torch.randint(0, 10, (4 * k,))
    r = clip_and_sum(model, x, y, 0.05, group_size=k)
    ref_sum, ref_norms = f64_reference(model, x, y, 0.05, k)
    assert rel(flat(r.grads), ref_sum) <= 1e-6
    torch.testing.assert_close(r.norms.double(), ref_norms, rtol=1e-6, atol=0)
    # the instantiated per-example gradients are the group means
    g = per_sample_grads(model, x, y, group_size=k)
    assert g[0].shape == (4, *next(model.parameters()).shape)


def test_expand_equals_pre_expanded_rows():
    """Copies made per micro-batch (``expand``) give the result of copies made up front."""
    torch.manual_seed(7)
    model, k = build_model("cnn", (1, 28, 28), 10), 4
    ex, y = torch.rand(10, 1, 28, 28), torch.randint(0, 10, (10,))
    x = Augmenter("shift", k, torch.Generator().manual_seed(3))(ex)
    up_front = clip_and_sum(model, x, y.repeat_interleave(k), 0.1, group_size=k)
    lazy = clip_and_sum(model, ex, y, 0.1, group_size=k, max_rows=10 * k,
                        expand=Augmenter("shift", k, torch.Generator().manual_seed(3)))
    assert rel(flat(lazy.grads), flat(up_front.grads)) <= 1e-6
    torch.testing.assert_close(lazy.norms, up_front.norms)


@given(k=st.integers(1, 4), n=st.integers(2, 5), drop=st.integers(0, 4), scale=st.floats(1e-2, 1e4),
       clip=st.floats(1e-3, 10.0), seed=st.integers(0, 2**16))
def test_property_removing_a_group_moves_the_sum_by_at_most_c(k, n, drop, scale, clip, seed):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
    x, y = torch.randn(n * k, 4), torch.randint(0, 3, (n * k,))
    drop %= n
    x[drop * k:(drop + 1) * k] *= scale
    full = clip_and_sum(model, x, y, clip, group_size=k).grads
    keep = torch.tensor([i for i in range(n * k) if i // k != drop])
    part = clip_and_sum(model, x[keep], y[keep], clip, group_size=k).grads
    assert float((flat(full) - flat(part)).norm()) <= clip * (1 + 1e-6)


@pytest.mark.parametrize("kw,match", [({"group_size": 0}, "group size"), ({"group_size": 4}, "whole groups"),
                                      ({"max_rows": 0}, "micro-batch")])
def test_bad_group_or_micro_batch_refused(kw, match):
    with pytest.raises(InvalidParameterError, match=match):
        clip_and_sum(nn.Linear(2, 2), torch.randn(6, 2), torch.zeros(6, dtype=torch.long), 1.0, **kw)
