"""The per-example engine against a naive per-example autograd loop, for every layer type."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from dpaudit.errors import InvalidParameterError
from dpaudit.training.clipping import (
    clip_and_sum,
    clipped_grad_sum,
    default_loss,
    per_sample_grads,
    per_sample_norms,
)
from dpaudit.training.models import build_model

torch.set_num_threads(1)


def naive_grads(model, x, y, loss_fn=default_loss):
    """Per-example gradients by B separate backward passes (the definition)."""
    params = [p for p in model.parameters() if p.requires_grad]
    out = [[] for _ in params]
    for i in range(x.shape[0]):
        loss = loss_fn(model(x[i : i + 1]), y[i : i + 1]).sum()
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        for j, g in enumerate(grads):
            out[j].append(torch.zeros_like(params[j]) if g is None else g)
    return [torch.stack(o) for o in out]


def naive_clipped_sum(grads, c):
    norms = torch.cat([g.flatten(1) for g in grads], 1).norm(dim=1)
    f = (c * (1 - 1e-5) / norms).clamp(max=1.0)
    return [(g * f.view(-1, *[1] * (g.dim() - 1))).sum(0) for g in grads], norms


class SeqModel(nn.Module):
    """Linear on a (B, T, d) sequence, LayerNorm, a custom parameterised layer, tied weights."""

    def __init__(self, d=6, t=5, out=4):
        super().__init__()
        self.lin = nn.Linear(d, 8)
        self.norm = nn.LayerNorm(8)
        self.scale = Scale(8)
        self.shared = nn.Linear(8, 8, bias=False)
        self.head = nn.Linear(8, out)

    def forward(self, x):
        h = torch.tanh(self.norm(self.lin(x)))
        h = self.scale(h)
        h = torch.tanh(self.shared(h))
        h = self.shared(h)  # same module called twice
        return self.head(h.mean(1))


class Scale(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.w = nn.Parameter(torch.randn(d))

    def forward(self, x):
        return x * self.w + x.pow(2) * 0.1


class ConvZoo(nn.Module):
    """Conv2d variants: padding/stride/dilation, no bias, groups=2 (fallback), GroupNorm."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(2, 4, 3, stride=2, padding=1, dilation=1)
        self.c2 = nn.Conv2d(4, 4, 3, padding=2, dilation=2, bias=False)
        self.c3 = nn.Conv2d(4, 6, 3, groups=2)
        self.gn = nn.GroupNorm(3, 6)
        self.c4 = nn.Conv1d(6, 5, 2)  # generic fallback
        self.fc = nn.Linear(5 * 2, 3)

    def forward(self, x):
        h = torch.relu(self.c1(x))
        h = torch.tanh(self.c2(h))
        h = self.gn(self.c3(h))
        h = torch.nn.functional.max_pool2d(h, 2, 1)  # (B, 6, 3, 3) for 10x10 input
        h = self.c4(h.flatten(2)[:, :, :3])
        return self.fc(h.flatten(1))


def _models():
    yield "cnn28", build_model("cnn", (1, 28, 28), 10), torch.rand(4, 1, 28, 28), 10
    yield "cnn8", build_model("cnn", (1, 8, 8), 10), torch.rand(5, 1, 8, 8), 10
    yield "cnn8-gn", build_model("cnn", (1, 8, 8), 10, groupnorm=4), torch.rand(3, 1, 8, 8), 10
    yield "mlp", build_model("mlp", (1, 8, 8), 10, hidden=[16, 12]), torch.rand(6, 1, 8, 8), 10
    yield "logreg", build_model("logreg", (1, 8, 8), 10), torch.rand(5, 1, 8, 8), 10
    yield "seq", SeqModel(), torch.randn(4, 5, 6), 4
    yield "convzoo", ConvZoo(), torch.randn(3, 2, 10, 10), 3
    emb = nn.Sequential(nn.Embedding(20, 4), nn.Flatten(), nn.Linear(12, 3))
    yield "embedding", emb, torch.randint(0, 20, (4, 3)), 3


@pytest.mark.parametrize("name,model,x,k", list(_models()), ids=lambda v: v if isinstance(v, str) else "")
def test_per_sample_grads_and_clipped_sum_match_naive_loop(name, model, x, k):
    torch.manual_seed(1)
    y = torch.randint(0, k, (x.shape[0],))
    ref = naive_grads(model, x, y)
    got = per_sample_grads(model, x, y)
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        assert g.shape == r.shape
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-6)
    for c in (1e-3, 0.5, 1e3):
        sums, norms = clipped_grad_sum(model, x, y, c)
        ref_sums, ref_norms = naive_clipped_sum(ref, c)
        torch.testing.assert_close(norms, ref_norms, rtol=1e-4, atol=1e-6)
        for s, r in zip(sums, ref_sums):
            torch.testing.assert_close(s, r, rtol=1e-4, atol=1e-6)


def test_linear_sequence_ghost_and_materialised_paths_agree():
    # T=2, in=out=64: ghost path (T^2 (in+out) < T in out); T=50, in=out=3: materialised path.
    for t, d in ((2, 64), (50, 3)):
        model = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Flatten(), nn.Linear(t * d, 2))
        x, y = torch.randn(3, t, d), torch.randint(0, 2, (3,))
        ref = naive_grads(model, x, y)
        sums, norms = clipped_grad_sum(model, x, y, 0.1)
        ref_sums, ref_norms = naive_clipped_sum(ref, 0.1)
        torch.testing.assert_close(norms, ref_norms, rtol=1e-4, atol=1e-6)
        for s, r in zip(sums, ref_sums):
            torch.testing.assert_close(s, r, rtol=1e-4, atol=1e-6)


@given(
    b=st.integers(1, 6),
    d_in=st.integers(1, 7),
    d_out=st.integers(2, 5),
    clip=st.floats(1e-3, 1e2),
    seed=st.integers(0, 2**16),
)
def test_property_linear_clipped_sum_equals_naive(b, d_in, d_out, clip, seed):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(d_in, 5), nn.Tanh(), nn.Linear(5, d_out))
    x, y = torch.randn(b, d_in) * 3, torch.randint(0, d_out, (b,))
    ref_sums, ref_norms = naive_clipped_sum(naive_grads(model, x, y), clip)
    sums, norms = clipped_grad_sum(model, x, y, clip)
    torch.testing.assert_close(norms, ref_norms, rtol=1e-4, atol=1e-6)
    for s, r in zip(sums, ref_sums):
        torch.testing.assert_close(s, r, rtol=1e-4, atol=1e-5)
    # Flat clipping: the clipped sum's norm never exceeds b * C.
    total = torch.cat([s.flatten() for s in sums]).norm()
    assert total <= b * clip


@pytest.mark.parametrize("arch", ["cnn", "mlp", "logreg"])
def test_clipping_bound_holds_for_huge_norm_example(arch):
    torch.manual_seed(0)
    model = build_model(arch, (1, 8, 8), 10)
    x = torch.rand(4, 1, 8, 8)
    x[2] *= 1e6  # one example with an enormous gradient
    y = torch.randint(0, 10, (4,))
    c = 0.7
    norms = per_sample_norms(model, x, y)
    assert norms[2] > 100 * c or arch == "cnn"  # tanh saturates in the cnn
    for i in range(4):
        sums, _ = clipped_grad_sum(model, x[i : i + 1], y[i : i + 1], c)
        one = torch.cat([s.flatten() for s in sums]).norm()
        assert one <= c
        assert torch.isfinite(one)
    # Removing the huge example changes the clipped sum by at most C (sensitivity).
    full, _ = clipped_grad_sum(model, x, y, c)
    keep = torch.tensor([0, 1, 3])
    part, _ = clipped_grad_sum(model, x[keep], y[keep], c)
    diff = torch.cat([(a - b).flatten() for a, b in zip(full, part)]).norm()
    assert diff <= c


def test_huge_gradient_linear_is_clipped_to_c():
    model = nn.Linear(3, 2)
    x = torch.tensor([[1e3, -1e3, 1e3]])
    y = model(x).argmin(1)  # the wrong class: the gradient is huge, not saturated to 0
    r = clip_and_sum(model, x, y, 1.0)
    assert r.norms[0] > 1e3
    assert torch.cat([g.flatten() for g in r.grads]).norm() <= 1.0


def test_batchnorm_refused_names_groupnorm():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(36, 2))
    x, y = torch.rand(2, 1, 5, 5), torch.tensor([0, 1])
    with pytest.raises(InvalidParameterError, match="GroupNorm"):
        clipped_grad_sum(model, x, y, 1.0)


def test_inplace_activation_refused():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(inplace=True), nn.Linear(4, 2))
    with pytest.raises(InvalidParameterError, match="in place"):
        clipped_grad_sum(model, torch.randn(2, 3), torch.tensor([0, 1]), 1.0)


def test_loss_must_be_per_example():
    model = nn.Linear(3, 2)
    with pytest.raises(InvalidParameterError, match="one loss per example"):
        clipped_grad_sum(model, torch.randn(2, 3), torch.tensor([0, 1]), 1.0,
                         loss_fn=lambda o, y: nn.functional.cross_entropy(o, y))


def test_empty_batch_gives_zero_sums():
    model = build_model("mlp", (1, 8, 8), 10, hidden=[4])
    sums, norms = clipped_grad_sum(model, torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long), 1.0)
    assert norms.shape == (0,)
    assert all(float(s.abs().sum()) == 0 for s in sums)
    assert [s.shape for s in sums] == [p.shape for p in model.parameters()]


def test_frozen_parameters_are_skipped():
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    model[0].weight.requires_grad_(False)
    x, y = torch.randn(3, 3), torch.tensor([0, 1, 1])
    ref = naive_grads(model, x, y)
    got = per_sample_grads(model, x, y)
    assert len(got) == 3
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r)


@pytest.mark.parametrize("c", [0.0, -1.0, float("inf"), float("nan")])
def test_bad_clip_norm(c):
    with pytest.raises(InvalidParameterError):
        clipped_grad_sum(nn.Linear(2, 2), torch.randn(1, 2), torch.tensor([0]), c)


@given(
    b=st.integers(2, 6),
    scale=st.floats(1e-3, 1e6),
    clip=st.floats(1e-3, 1e3),
    drop=st.integers(0, 5),
    seed=st.integers(0, 2**16),
)
def test_property_sensitivity_of_clipped_sum_is_at_most_c(b, scale, clip, drop, seed):
    # add/remove neighbours: the clipped sums differ by one clipped gradient, norm <= C
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
    x, y = torch.randn(b, 4), torch.randint(0, 3, (b,))
    drop = drop % b
    x[drop] *= scale
    full, _ = clipped_grad_sum(model, x, y, clip)
    keep = torch.tensor([i for i in range(b) if i != drop])
    part, _ = clipped_grad_sum(model, x[keep], y[keep], clip)
    diff = torch.cat([(u - v).flatten() for u, v in zip(full, part)]).double().norm()
    assert diff <= clip * (1 + 1e-6)  # float32 sums of b terms: rounding only


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_float64_models_get_float64_norms(arch):
    """Norms in the model's dtype: a float64 model's per-example norms match the definition to
    float64 precision (float32 norms would be off by ~1e-7 relative)."""
    torch.manual_seed(0)
    model = build_model(arch, (1, 8, 8), 10).double()
    x = torch.rand(6, 1, 8, 8, dtype=torch.float64)
    y = torch.randint(0, 10, (6,))
    r = clip_and_sum(model, x, y, 0.5)
    assert r.norms.dtype == torch.float64 and all(g.dtype == torch.float64 for g in r.grads)
    ref_sum, ref_norms = naive_clipped_sum(naive_grads(model, x, y), 0.5)
    torch.testing.assert_close(r.norms, ref_norms, rtol=1e-12, atol=0)
    for g, ref in zip(r.grads, ref_sum):
        torch.testing.assert_close(g, ref, rtol=1e-10, atol=1e-14)
    empty = clip_and_sum(model, x[:0], y[:0], 0.5)
    assert empty.norms.dtype == torch.float64
