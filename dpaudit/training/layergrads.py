"""Per-layer, per-example gradient contributions: ghost norms or instantiated gradients,
chosen per layer by cost.

A parameterised layer called on R rows contributes to each example's gradient. With
augmentation multiplicity K (De, Berrada, Hayes, Smith, Balle 2022, "Unlocking High-Accuracy
Differentially Private Image Classification through Scale", arXiv:2204.13650, Sec. 3.2) the
rows come in groups of K consecutive rows (the K augmented copies of one example), and the
example's gradient is the *mean* of its copies' gradients, g_i = (1/K) sum_k g_ik; the engine
folds the 1/K into the output gradients, so here g_i = sum_k g_ik. n = R / K examples.

Algebra (Bu, Mao, Xu 2023, "Differentially Private Optimization on Large Model at Small Cost",
ICML 2023, Sec. 3, "book-keeping"): a ``Linear`` layer applied at T positions has input rows
a_i in R^{T x p} and output gradients d_i in R^{T x d}; its per-example weight gradient is
d_i^T a_i (p = in, d = out). A ``Conv2d`` layer is the same with the unfolded patches
(Rochette, Manoel, Tramel 2019, "Efficient Per-Example Gradient Computations in Convolutional
Neural Networks", arXiv:1912.06015): T = output positions, p = in * kh * kw. A group of K copies
is one example with K T positions, because sum_k d_ik^T a_ik stacks the copies' positions.

Two ways to get the norm ||d_i^T a_i||_F:

* ghost norm: ||d_i^T a_i||^2 = sum_{t,s} (a_it . a_is)(d_it . d_is) -- two T x T Gram
  matrices per example (Li, Tramer, Liang, Hashimoto 2022, "Large Language Models Can Be Strong
  Differentially Private Learners", ICLR 2022, Sec. 4); for T = 1 it is ||a_i||^2 ||d_i||^2
  (Goodfellow 2015, arXiv:1510.01799). The clipped sum is then one weight-gradient product with
  the output gradients scaled by the clipping factors, (c * d)^T a (for convolutions: the
  layer's own weight-gradient kernel), so no per-example gradient is ever formed.
* instantiation: form the per-example gradients (n, d, p), take their norms, and the clipped
  sum is a tensordot with the clipping factors. For convolutions the per-example gradients
  come from the convolution's weight-gradient kernel run with the batch as groups (input
  viewed as (1, R C_in, H, W), groups = R), which never unfolds the input.

The choice per layer is mixed ghost clipping (Bu, Mao, Xu, Ding, Ghosh 2022, "Scalable and
Efficient Training of Large Convolutional Neural Networks with Differential Privacy", NeurIPS
2022, Sec. 3.2 / Alg. 1): ghost norm iff 2 T^2 < p d -- the ghost norm holds 2 T^2 numbers per
example, instantiation p d. Early convolutions (large T, small p d) instantiate; late
convolutions and Linear layers take the ghost norm. :func:`choose_path` states the rule.

Every other layer with trainable parameters (GroupNorm, LayerNorm, Embedding, grouped or 1-D
convolutions, user layers): per-row gradients from ``torch.func.vmap`` over the layer's own
vector-Jacobian product, summed over each group.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeGuard

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.grad import conv2d_weight

from dpaudit.errors import InvalidParameterError

#: The two per-layer paths of the engine.
GHOST, INSTANTIATE = "ghost", "instantiate"


def choose_path(positions: int, p: int, d: int) -> str:
    """Mixed ghost clipping's per-layer rule (Bu et al. 2022, NeurIPS, Sec. 3.2): ``"ghost"``
    iff 2 T^2 < p d (T = positions per example, including the K copies of a group; p, d = the
    layer's input and output widths, p = in kh kw for a convolution), else ``"instantiate"``."""
    return GHOST if 2 * positions * positions < p * d else INSTANTIATE


class Contribution:
    """One module call's share of one parameter's per-example gradients (n examples)."""

    def normsq(self) -> Tensor:  # (n,)
        raise NotImplementedError

    def materialize(self) -> Tensor:  # (n, *param.shape)
        raise NotImplementedError

    def clipped_sum(self, c: Tensor) -> Tensor:  # param.shape; c: (n,) clipping factors
        raise NotImplementedError


def _sqnorms(g: Tensor) -> Tensor:
    """Squared L2 norm of each row of g (n, ...), without a squared temporary."""
    return torch.linalg.vector_norm(g.reshape(g.shape[0], -1), dim=1).square()


class Materialized(Contribution):
    """Per-example gradients held in full: (n, *param.shape)."""

    def __init__(self, grads: Tensor) -> None:
        self.grads = grads

    def normsq(self) -> Tensor:
        return _sqnorms(self.grads)

    def materialize(self) -> Tensor:
        return self.grads

    def clipped_sum(self, c: Tensor) -> Tensor:
        return torch.tensordot(c.to(self.grads.dtype), self.grads, dims=1)


def _group_sum(t: Tensor, k: int) -> Tensor:
    """Sum over each group of k consecutive rows: (n k, ...) -> (n, ...)."""
    return t if k == 1 else t.reshape(t.shape[0] // k, k, *t.shape[1:]).sum(1)


def _repeat_rows(c: Tensor, k: int) -> Tensor:
    return c if k == 1 else c.repeat_interleave(k)


class LinearWeight(Contribution):
    """Weight of a Linear layer applied at T positions: a (R, T, p), d (R, T, d), R = n K."""

    def __init__(self, a: Tensor, d: Tensor, shape: torch.Size, k: int, force: bool) -> None:
        n = a.shape[0] // k
        # a group of k rows is one example with k T positions (no copy: rows are consecutive)
        self.a = a.reshape(n, -1, a.shape[2])
        self.d = d.reshape(n, -1, d.shape[2])
        self.shape = shape
        self.path = INSTANTIATE if force else choose_path(self.a.shape[1], a.shape[2], d.shape[2])
        self._grads: Tensor | None = None

    def normsq(self) -> Tensor:
        if self.path == INSTANTIATE:
            return _sqnorms(self.materialize())
        if self.a.shape[1] == 1:
            return _sqnorms(self.a) * _sqnorms(self.d)
        aa = torch.bmm(self.a, self.a.transpose(1, 2))
        dd = torch.bmm(self.d, self.d.transpose(1, 2))
        return torch.einsum("bts,bts->b", aa, dd)

    def materialize(self) -> Tensor:
        if self._grads is None:
            g = torch.bmm(self.d.transpose(1, 2), self.a)  # (n, out, in)
            self._grads = g.reshape(self.a.shape[0], *self.shape)
        return self._grads

    def clipped_sum(self, c: Tensor) -> Tensor:
        if self._grads is not None:
            return Materialized(self._grads).clipped_sum(c)
        n_in, n_out = self.a.shape[2], self.d.shape[2]
        dc = (self.d * c.to(self.d.dtype)[:, None, None]).reshape(-1, n_out)
        return (dc.t() @ self.a.reshape(-1, n_in)).reshape(self.shape)


class ConvWeight(Contribution):
    """Weight of a Conv2d layer (groups 1, zero padding): input a (R, C, H, W), output
    gradients d (R, out, H', W'), R = n K."""

    def __init__(self, m: nn.Conv2d, a: Tensor, d: Tensor, k: int, force: bool) -> None:
        self.m, self.a, self.d, self.k = m, a, d, k
        self.n = a.shape[0] // k
        positions = k * d.shape[2] * d.shape[3]
        p = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
        self.path = INSTANTIATE if force else choose_path(positions, p, m.out_channels)
        self._grads: Tensor | None = None

    def _kernel(self, a: Tensor, shape: Sequence[int], d: Tensor, groups: int) -> Tensor:
        """The convolution's weight-gradient kernel: sum over rows of d^T a per group."""
        m = self.m
        padding = m.padding
        assert not isinstance(padding, str)  # conv_supported
        return conv2d_weight(a, list(shape), d, stride=m.stride, padding=padding,
                             dilation=m.dilation, groups=groups)

    def normsq(self) -> Tensor:
        if self.path == INSTANTIATE:
            return _sqnorms(self.materialize())
        m, n, k = self.m, self.n, self.k
        padding = m.padding
        assert not isinstance(padding, str)
        u = F.unfold(self.a, m.kernel_size, dilation=m.dilation, padding=padding, stride=m.stride)
        d3 = self.d.reshape(self.d.shape[0], self.d.shape[1], -1)  # (R, out, L)
        if k > 1:  # a group's k L positions side by side: (n, p, k L)
            u = u.reshape(n, k, u.shape[1], -1).transpose(1, 2).reshape(n, u.shape[1], -1)
            d3 = d3.reshape(n, k, d3.shape[1], -1).transpose(1, 2).reshape(n, d3.shape[1], -1)
        uu = torch.bmm(u.transpose(1, 2), u)  # (n, kL, kL)
        dd = torch.bmm(d3.transpose(1, 2), d3)
        return torch.einsum("bts,bts->b", uu, dd)

    def materialize(self) -> Tensor:
        if self._grads is None:
            r, c_in, h, w = self.a.shape
            out = self.m.out_channels
            shape = self.m.weight.shape
            # per-row weight gradients: the batch as convolution groups, no unfold
            g = self._kernel(self.a.reshape(1, r * c_in, h, w), (r * out, *shape[1:]),
                             self.d.reshape(1, r * out, *self.d.shape[2:]), groups=r)
            self._grads = _group_sum(g.reshape(r, *shape), self.k)
        return self._grads

    def clipped_sum(self, c: Tensor) -> Tensor:
        if self._grads is not None:
            return Materialized(self._grads).clipped_sum(c)
        cr = _repeat_rows(c.to(self.d.dtype), self.k)
        return self._kernel(self.a, self.m.weight.shape, self.d * cr[:, None, None, None], groups=1)


def conv_supported(m: nn.Module) -> TypeGuard[nn.Conv2d]:
    """Conv2d layers the fast path handles: groups 1, zero padding given as numbers."""
    return (
        type(m) is nn.Conv2d
        and m.groups == 1
        and m.padding_mode == "zeros"
        and not isinstance(m.padding, str)
    )


def linear_contribs(m: nn.Linear, a: Tensor, d: Tensor, k: int, force: bool) -> dict[int, Contribution]:
    """Weight and bias contributions of a Linear layer; a (R, ..., in), d (R, ..., out)."""
    r = a.shape[0]
    a3 = a.reshape(r, -1, a.shape[-1])
    d3 = d.reshape(r, -1, d.shape[-1])
    out: dict[int, Contribution] = {}
    if m.weight.requires_grad:
        out[id(m.weight)] = LinearWeight(a3, d3, m.weight.shape, k, force)
    if m.bias is not None and m.bias.requires_grad:
        out[id(m.bias)] = Materialized(_group_sum(d3.sum(1), k))
    return out


def conv_contribs(m: nn.Conv2d, a: Tensor, d: Tensor, k: int, force: bool) -> dict[int, Contribution]:
    """Weight and bias contributions of a supported Conv2d layer (:func:`conv_supported`)."""
    out: dict[int, Contribution] = {}
    if m.weight.requires_grad:
        out[id(m.weight)] = ConvWeight(m, a, d, k, force)
    if m.bias is not None and m.bias.requires_grad:
        out[id(m.bias)] = Materialized(_group_sum(d.sum((2, 3)), k))
    return out


def generic_contribs(m: nn.Module, args: tuple, d: Tensor, k: int) -> dict[int, Contribution]:
    """Per-example gradients of ``m``'s own parameters by vmap over its VJP, summed per group."""
    from torch.func import functional_call, vjp, vmap

    named = {n: p for n, p in m.named_parameters(recurse=False) if p.requires_grad}
    if not named:
        return {}
    r = d.shape[0]
    if not args or not all(isinstance(t, Tensor) and t.dim() >= 1 and t.shape[0] == r for t in args):
        raise InvalidParameterError(
            f"layer {type(m).__name__} has trainable parameters but its inputs are not all "
            "batched tensors; the per-example engine cannot handle it"
        )
    params = {n: p.detach() for n, p in named.items()}

    def one(args_i: tuple, d_i: Tensor) -> dict[str, Tensor]:
        def f(p: dict[str, Tensor]) -> Tensor:
            return functional_call(m, p, tuple(t.unsqueeze(0) for t in args_i)).squeeze(0)

        pullback = vjp(f, params)[1]
        return pullback(d_i)[0]

    grads = vmap(one)(tuple(args), d)
    return {id(named[n]): Materialized(_group_sum(grads[n], k)) for n in named}


def layer_contribs(m: nn.Module, args: tuple, d: Tensor, k: int, force: bool) -> dict[int, Contribution]:
    """The contributions of one call of ``m`` (inputs ``args``, output gradient ``d``)."""
    a = args[0].detach() if args and isinstance(args[0], Tensor) else None
    if type(m) is nn.Linear and a is not None and len(args) == 1:
        return linear_contribs(m, a, d, k, force)
    if conv_supported(m) and a is not None and a.dim() == 4 and len(args) == 1:
        return conv_contribs(m, a, d, k, force)
    return generic_contribs(m, tuple(t.detach() for t in args), d, k)


def merged(parts: list[Contribution]) -> Contribution:
    """One parameter's contributions from several calls (weight tying, reuse): per-example
    gradients summed before the norm, so the norm stays exact."""
    if len(parts) == 1:
        return parts[0]
    return Materialized(torch.stack([p.materialize() for p in parts]).sum(0))


@dataclass(frozen=True)
class LayerPath:
    """How the engine treats one parameterised layer call: ``path`` is ``"ghost"``,
    ``"instantiate"`` or ``"vmap"`` (the generic per-example fallback); ``positions`` T (per
    example, times K), ``p`` and ``d`` as in :func:`choose_path` (0 for ``"vmap"``)."""

    name: str
    layer: str
    positions: int
    p: int
    d: int
    path: str


def layer_paths(model: nn.Module, x: Tensor, group_size: int = 1) -> list[LayerPath]:
    """The path :func:`choose_path` gives each parameterised layer call of ``model`` on inputs
    shaped like ``x`` (one row is run, without gradients) with ``group_size`` copies per example."""
    names = {m: n for n, m in model.named_modules()}
    found: list[LayerPath] = []

    def hook(m: nn.Module, args: tuple, out: object) -> None:
        if not any(p.requires_grad for p in m.parameters(recurse=False)):
            return
        name, a = names.get(m, "?"), args[0] if args else None
        if type(m) is nn.Linear and isinstance(a, Tensor):
            t = group_size * (a[0].numel() // a.shape[-1])
            found.append(LayerPath(name, "Linear", t, m.in_features, m.out_features,
                                   choose_path(t, m.in_features, m.out_features)))
        elif conv_supported(m) and isinstance(out, Tensor) and out.dim() == 4:
            t, p = group_size * out.shape[2] * out.shape[3], m.in_channels * m.kernel_size[0] * m.kernel_size[1]
            found.append(LayerPath(name, "Conv2d", t, p, m.out_channels, choose_path(t, p, m.out_channels)))
        else:
            found.append(LayerPath(name, type(m).__name__, 0, 0, 0, "vmap"))

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        for h in handles:
            h.remove()
    return found
