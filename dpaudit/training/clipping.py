"""Per-example gradient clipping engine, chosen per layer.

DP-SGD (Abadi et al. 2016, "Deep Learning with Differential Privacy", CCS, Alg. 1) needs, for a
batch of B examples, the per-example gradient norms ||g_i|| over *all* trainable parameters
and the clipped sum  sum_i c_i g_i  with  c_i = min(1, C / ||g_i||)  (flat clipping to norm C).
Only these two quantities are needed -- not the B per-example gradients -- so the engine works
from each layer's input activations a_i and output gradients d_i = dL_i/d(output), captured
in one forward and one backward pass (the "book-keeping" scheme of Bu, Mao, Xu 2023,
"Differentially Private Optimization on Large Model at Small Cost", ICML 2023, Sec. 3):

* ``nn.Linear`` with a_i in R^{T x in}, d_i in R^{T x out} (T = 1 for plain MLPs): the per-
  example weight gradient is d_i^T a_i. For T = 1 its squared norm is ||a_i||^2 ||d_i||^2
  (Goodfellow 2015, "Efficient Per-Example Gradient Computations", arXiv:1510.01799); for
  T > 1 it is sum_{t,s} (a_it . a_is)(d_it . d_is) -- "ghost clipping" (Li, Tramer, Liang,
  Hashimoto 2022, "Large Language Models Can Be Strong Differentially Private Learners", ICLR
  2022, Sec. 4) -- or, when cheaper (B T^2 (in + out) > B T in out), the materialised
  einsum. The clipped sum is ONE matrix product  (c * d)^T a  over the B*T rows; no
  (B, out, in) tensor is ever formed on the ghost path. Bias: per-example gradient sum_t d_it.
* ``nn.Conv2d`` (groups = 1, zero padding): the input is unfolded into patches U_i in
  R^{L x (in k k)} (Rochette, Manoel, Tramel 2019, "Efficient Per-Example Gradient
  Computations in Convolutional Neural Networks", arXiv:1912.06015), which makes the layer a
  Linear layer applied to L positions; the Linear rule above then picks ghost norms or
  per-example gradients by cost.
* Any other layer with trainable parameters (GroupNorm, LayerNorm, a user's layer): per-
  example gradients from ``torch.func.vmap`` over the layer's own vector-Jacobian product with
  its captured input and output gradient (exact for any layer that treats examples
  independently).

A parameter reached from several modules or calls (weight tying, reuse) is handled by
materialising and summing its per-example gradients before the norm, so norms stay exact.

Layers that mix examples (batch normalisation in training mode) are refused: with them the
per-example gradient is undefined and clipping bounds nothing. Use ``nn.GroupNorm``.

Losses: ``loss_fn(logits, y)`` must return one loss per example, shape (B,) (default:
cross-entropy with ``reduction="none"``); the engine differentiates their sum.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeGuard

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dpaudit.errors import InvalidParameterError

LossFn = Callable[[Tensor, Tensor], Tensor]


def default_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Per-example cross-entropy (natural log), shape (B,)."""
    return F.cross_entropy(logits, y, reduction="none")


def check_model(model: nn.Module) -> None:
    """Refuse layers that mix examples within a batch (batch normalisation in training mode)."""
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training:
            raise InvalidParameterError(
                f"layer {name or type(m).__name__!r} ({type(m).__name__}) normalises over the "
                "batch, so one example changes every other example's gradient and per-example "
                "clipping cannot bound its influence; replace it with nn.GroupNorm "
                "(e.g. GroupNorm(min(32, C), C)) or nn.LayerNorm"
            )


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The model's trainable parameters, in ``model.parameters()`` order (deduplicated)."""
    return [p for p in model.parameters() if p.requires_grad]


# ----------------------------------------------------------------------------- contributions
class _Contribution:
    """One module call's share of one parameter's per-example gradients."""

    def normsq(self) -> Tensor:  # (B,)
        raise NotImplementedError

    def materialize(self) -> Tensor:  # (B, *param.shape)
        raise NotImplementedError

    def clipped_sum(self, c: Tensor) -> Tensor:  # param.shape
        raise NotImplementedError


class _Materialized(_Contribution):
    def __init__(self, grads: Tensor) -> None:
        self.grads = grads

    def normsq(self) -> Tensor:
        return self.grads.reshape(self.grads.shape[0], -1).pow(2).sum(1)

    def materialize(self) -> Tensor:
        return self.grads

    def clipped_sum(self, c: Tensor) -> Tensor:
        return torch.tensordot(c.to(self.grads.dtype), self.grads, dims=1)


#: Relative margin under C that absorbs rounding in the computed per-example norms.
SAFETY = 1e-5

#: Materialising per-example weight gradients is allowed up to this many elements (B*out*in).
MAX_MATERIALIZED = 32 * 2**20


def _use_ghost(b: int, t: int, n_in: int, n_out: int, force_materialize: bool) -> bool:
    """Ghost norm when cheaper: the ghost norm costs ~T^2 (in + out) per example on top of the
    clipped-sum product, materialising costs T in out once (and its result gives the clipped
    sum for ~in out more); so ghost iff T^2 (in + out) <= in out, or when B in out elements
    would not fit the materialisation budget."""
    if force_materialize:
        return False
    return t * t * (n_in + n_out) <= n_in * n_out or b * n_in * n_out > MAX_MATERIALIZED


class _LinearWeight(_Contribution):
    """Weight of a Linear map applied at T positions: a (B, T, in), d (B, T, out)."""

    def __init__(self, a: Tensor, d: Tensor, shape: torch.Size, force_materialize: bool) -> None:
        self.a, self.d, self.shape = a, d, shape
        b, t, n_in = a.shape
        self.ghost = _use_ghost(b, t, n_in, d.shape[2], force_materialize)
        self._grads: Tensor | None = None

    def normsq(self) -> Tensor:
        if not self.ghost:
            return _Materialized(self.materialize()).normsq()
        if self.a.shape[1] == 1:
            return self.a.pow(2).sum((1, 2)) * self.d.pow(2).sum((1, 2))
        aa = torch.bmm(self.a, self.a.transpose(1, 2))
        dd = torch.bmm(self.d, self.d.transpose(1, 2))
        return (aa * dd).sum((1, 2))

    def materialize(self) -> Tensor:
        if self._grads is None:
            g = torch.bmm(self.d.transpose(1, 2), self.a)  # (B, out, in)
            self._grads = g.reshape(self.a.shape[0], *self.shape)
        return self._grads

    def clipped_sum(self, c: Tensor) -> Tensor:
        if self._grads is not None:
            return _Materialized(self._grads).clipped_sum(c)
        n_in, n_out = self.a.shape[2], self.d.shape[2]
        dc = (self.d * c.to(self.d.dtype)[:, None, None]).reshape(-1, n_out)
        return (dc.t() @ self.a.reshape(-1, n_in)).reshape(self.shape)


class _ConvWeight(_Contribution):
    """Conv2d weight from unfolded patches u (B, K, L) and output gradients d (B, out, L),
    K = in kh kw, L = output positions; the same algebra as :class:`_LinearWeight` with T = L,
    kept in the unfold layout to avoid transposed copies."""

    def __init__(self, u: Tensor, d: Tensor, shape: torch.Size, force_materialize: bool) -> None:
        self.u, self.d, self.shape = u, d, shape
        b, k, length = u.shape
        self.ghost = _use_ghost(b, length, k, d.shape[1], force_materialize)
        self._grads: Tensor | None = None

    def normsq(self) -> Tensor:
        if not self.ghost:
            return _Materialized(self.materialize()).normsq()
        uu = torch.bmm(self.u.transpose(1, 2), self.u)  # (B, L, L)
        dd = torch.bmm(self.d.transpose(1, 2), self.d)
        return (uu * dd).sum((1, 2))

    def materialize(self) -> Tensor:
        if self._grads is None:
            g = torch.bmm(self.d, self.u.transpose(1, 2))  # (B, out, K)
            self._grads = g.reshape(self.u.shape[0], *self.shape)
        return self._grads

    def clipped_sum(self, c: Tensor) -> Tensor:
        if self._grads is not None:
            return _Materialized(self._grads).clipped_sum(c)
        dc = self.d * c.to(self.d.dtype)[:, None, None]
        return torch.einsum("bol,bkl->ok", dc, self.u).reshape(self.shape)


@dataclass(frozen=True)
class _Call:
    module: nn.Module
    args: tuple
    output: Tensor
    version: int


def _linear_contribs(m: nn.Linear, a: Tensor, d: Tensor, force: bool) -> dict[int, _Contribution]:
    b = a.shape[0]
    a3 = a.reshape(b, -1, a.shape[-1])
    d3 = d.reshape(b, -1, d.shape[-1])
    out: dict[int, _Contribution] = {}
    if m.weight.requires_grad:
        out[id(m.weight)] = _LinearWeight(a3, d3, m.weight.shape, force)
    if m.bias is not None and m.bias.requires_grad:
        out[id(m.bias)] = _Materialized(d3.sum(1))
    return out


def _conv_supported(m: nn.Module) -> TypeGuard[nn.Conv2d]:
    return (
        type(m) is nn.Conv2d
        and m.groups == 1
        and m.padding_mode == "zeros"
        and not isinstance(m.padding, str)
    )


def _conv_contribs(m: nn.Conv2d, a: Tensor, d: Tensor, force: bool) -> dict[int, _Contribution]:
    b = a.shape[0]
    padding = m.padding
    if isinstance(padding, str):  # excluded by _conv_supported
        raise InvalidParameterError("string padding is handled by the generic engine")
    u = F.unfold(a, m.kernel_size, dilation=m.dilation, padding=padding, stride=m.stride)
    d3 = d.reshape(b, d.shape[1], -1)  # (B, out, L)
    out: dict[int, _Contribution] = {}
    if m.weight.requires_grad:
        out[id(m.weight)] = _ConvWeight(u, d3, m.weight.shape, force)
    if m.bias is not None and m.bias.requires_grad:
        out[id(m.bias)] = _Materialized(d3.sum(2))
    return out


def _generic_contribs(m: nn.Module, args: tuple, d: Tensor) -> dict[int, _Contribution]:
    """Per-example gradients of ``m``'s own parameters by vmap over its VJP."""
    from torch.func import functional_call, vjp, vmap

    named = {n: p for n, p in m.named_parameters(recurse=False) if p.requires_grad}
    if not named:
        return {}
    b = d.shape[0]
    if not args or not all(isinstance(t, Tensor) and t.dim() >= 1 and t.shape[0] == b for t in args):
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
    return {id(named[n]): _Materialized(grads[n]) for n in named}


# ----------------------------------------------------------------------------- the engine
@dataclass
class ClipResult:
    """Result of one clipping pass.

    Attributes:
        grads: sum over the batch of clipped per-example gradients, one tensor per trainable
            parameter (``trainable_parameters(model)`` order).
        norms: per-example gradient L2 norms before clipping, shape (B,).
        losses: per-example losses (detached), shape (B,).
        logits: model outputs (detached).
    """

    grads: list[Tensor]
    norms: Tensor
    losses: Tensor
    logits: Tensor


def _contributions(
    model: nn.Module, x: Tensor, y: Tensor, loss_fn: LossFn | None, force_materialize: bool
) -> tuple[list[nn.Parameter], dict[int, list[_Contribution]], Tensor, Tensor]:
    check_model(model)
    params = trainable_parameters(model)
    if not params:
        raise InvalidParameterError("the model has no trainable parameters")
    owners = [m for m in model.modules() if any(p.requires_grad for p in m.parameters(recurse=False))]
    calls: list[_Call] = []

    def hook(module: nn.Module, args: tuple, output: object) -> None:
        if not isinstance(output, Tensor):
            raise InvalidParameterError(
                f"layer {type(module).__name__} returns {type(output).__name__}, not a tensor; "
                "the per-example engine needs tensor outputs"
            )
        if output.requires_grad:
            calls.append(_Call(module, tuple(args), output, output._version))

    handles = [m.register_forward_hook(hook) for m in owners]
    try:
        logits = model(x)
    finally:
        for h in handles:
            h.remove()
    losses = (loss_fn or default_loss)(logits, y)
    if losses.shape != (x.shape[0],):
        raise InvalidParameterError(
            f"loss_fn must return one loss per example, shape ({x.shape[0]},); got "
            f"{tuple(losses.shape)} (use reduction='none')"
        )
    for c in calls:
        if c.output._version != c.version:
            raise InvalidParameterError(
                f"the output of layer {type(c.module).__name__} is modified in place later in "
                "the forward pass (e.g. ReLU(inplace=True)); use inplace=False"
            )
    out_grads = torch.autograd.grad(losses.sum(), [c.output for c in calls], allow_unused=True)
    contribs: dict[int, list[_Contribution]] = {}
    for c, d in zip(calls, out_grads):
        if d is None:
            continue
        m = c.module
        a = c.args[0].detach() if c.args and isinstance(c.args[0], Tensor) else None
        if type(m) is nn.Linear and a is not None and len(c.args) == 1:
            got = _linear_contribs(m, a, d, force_materialize)
        elif _conv_supported(m) and a is not None and a.dim() == 4 and len(c.args) == 1:
            got = _conv_contribs(m, a, d, force_materialize)
        else:
            got = _generic_contribs(m, tuple(t.detach() for t in c.args), d)
        for pid, contrib in got.items():
            contribs.setdefault(pid, []).append(contrib)
    return params, contribs, losses.detach(), logits.detach()


def _merged(parts: list[_Contribution]) -> _Contribution:
    if len(parts) == 1:
        return parts[0]
    return _Materialized(torch.stack([p.materialize() for p in parts]).sum(0))


def norm_dtype(params: Sequence[Tensor]) -> torch.dtype:
    """The dtype per-example norms are computed in: the widest of the parameters' dtypes and
    float32 (a float64 model gets float64 norms; half-precision models float32 ones)."""
    return functools.reduce(torch.promote_types, (p.dtype for p in params), torch.float32)


def clip_and_sum(
    model: nn.Module, x: Tensor, y: Tensor, max_norm: float, loss_fn: LossFn | None = None
) -> ClipResult:
    """Clipped per-example gradient sum, per-example norms, losses and logits of one batch.

    Flat clipping (Abadi et al. 2016, Alg. 1): c_i = min(1, C (1 - 1e-5) / ||g_i||), so every
    clipped per-example gradient has L2 norm <= C over all trainable parameters together, with
    a 1e-5 margin for float32 rounding in the computed norms. Norms are computed in the
    model's dtype (:func:`norm_dtype`: float64 for a float64 model).
    An empty batch gives zero sums.
    """
    c_norm = float(max_norm)
    if not c_norm > 0 or c_norm == float("inf"):
        raise InvalidParameterError(f"clipping norm must be a finite number > 0, got {max_norm!r}")
    params = trainable_parameters(model)
    dtype = norm_dtype(params)
    if x.shape[0] == 0:
        check_model(model)
        z = torch.zeros(0, device=x.device, dtype=dtype)
        return ClipResult([torch.zeros_like(p) for p in params], z, z, z)
    params, contribs, losses, logits = _contributions(model, x, y, loss_fn, False)
    merged = {pid: _merged(parts) for pid, parts in contribs.items()}
    b = x.shape[0]
    normsq = torch.zeros(b, device=x.device, dtype=dtype)
    for contrib in merged.values():
        normsq = normsq + contrib.normsq().to(normsq.dtype)
    norms = normsq.clamp_min(0).sqrt()
    # Clip to C (1 - SAFETY): float32 norms can be off by ~1e-6 relative; the margin keeps
    # every clipped gradient's true norm <= C, the sensitivity the accountants assume.
    factor = (c_norm * (1.0 - SAFETY) / (norms + 1e-12)).clamp(max=1.0)
    grads = [
        merged[id(p)].clipped_sum(factor).to(p.dtype) if id(p) in merged else torch.zeros_like(p)
        for p in params
    ]
    return ClipResult(grads, norms, losses, logits)


def clipped_grad_sum(
    model: nn.Module, x: Tensor, y: Tensor, max_norm: float, loss_fn: LossFn | None = None
) -> tuple[list[Tensor], Tensor]:
    """(sum of clipped per-example gradients per trainable parameter, per-example norms (B,)).

    See :func:`clip_and_sum` for the clipping rule and the module docstring for the method.
    """
    r = clip_and_sum(model, x, y, max_norm, loss_fn)
    return r.grads, r.norms


def per_sample_grads(
    model: nn.Module, x: Tensor, y: Tensor, loss_fn: LossFn | None = None
) -> list[Tensor]:
    """Per-example gradients, each (B, *param.shape), one per trainable parameter.

    Materialises every per-example gradient (memory B x #params): a reference for tests and
    audits, not the training path.
    """
    params = trainable_parameters(model)
    if x.shape[0] == 0:
        return [torch.zeros(0, *p.shape, device=p.device, dtype=p.dtype) for p in params]
    params, contribs, _, _ = _contributions(model, x, y, loss_fn, True)
    b = x.shape[0]
    out = []
    for p in params:
        parts = contribs.get(id(p))
        if not parts:
            out.append(torch.zeros(b, *p.shape, device=p.device, dtype=p.dtype))
        else:
            out.append(torch.stack([q.materialize() for q in parts]).sum(0).to(p.dtype))
    return out


def per_sample_norms(
    model: nn.Module, x: Tensor, y: Tensor, loss_fn: LossFn | None = None
) -> Tensor:
    """Per-example gradient L2 norms over all trainable parameters, shape (B,)."""
    return clip_and_sum(model, x, y, float("1e300"), loss_fn).norms


__all__: Sequence[str] = (
    "ClipResult",
    "check_model",
    "clip_and_sum",
    "clipped_grad_sum",
    "default_loss",
    "per_sample_grads",
    "per_sample_norms",
    "trainable_parameters",
)
