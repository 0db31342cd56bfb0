"""Per-example gradient clipping engine (the DP-SGD step's clipped sum).

DP-SGD (Abadi et al. 2016, "Deep Learning with Differential Privacy", CCS, Alg. 1) needs, for a
batch of n examples, the per-example gradient norms ||g_i|| over *all* trainable parameters
and the clipped sum  sum_i c_i g_i  with  c_i = min(1, C / ||g_i||)  (flat clipping to norm C).
Only these two quantities are needed -- not the n per-example gradients -- so the engine works
from each layer's input activations and output gradients, captured in one forward and one
backward pass (forward hooks and ``torch.autograd.grad`` with respect to the layer outputs, so
autograd never forms the non-private summed weight gradients), and computes each layer's
share of the norms by ghost norms or instantiated per-example gradients, chosen per layer by
cost (mixed ghost clipping; :mod:`dpaudit.training.layergrads` has the algebra and the rule).

Micro-batches: the batch is processed in chunks of at most ``max_rows`` rows (whole examples
only), each with its own forward, backward, norms and clipped sums, and the chunks' clipped
sums are added. Clipping is per example, so this is exact; it bounds the per-step temporaries
(memory) and keeps them cache-sized (speed), so large batches cost per example what small
ones do.

Augmentation multiplicity (De, Berrada, Hayes, Smith, Balle 2022, "Unlocking High-Accuracy
Differentially Private Image Classification through Scale", arXiv:2204.13650, Sec. 3.2):
with ``group_size`` K, every example is K consecutive rows (K augmented copies) and its
gradient is the *mean* of its copies' gradients, g_i = (1/K) sum_k grad l(x_ik), computed
before clipping. Each example still adds one clipped vector of norm <= C to the sum, so the
sensitivity (C under add/remove) and the accounting are those of K = 1.

Layers that mix examples (batch normalisation in training mode) are refused: with them the
per-example gradient is undefined and clipping bounds nothing. Use ``nn.GroupNorm``.

Losses: ``loss_fn(logits, y)`` must return one loss per row, shape (R,) (default:
cross-entropy with ``reduction="none"``); the engine differentiates their sum (divided by K).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dpaudit.errors import InvalidParameterError
from dpaudit.training.layergrads import Contribution, layer_contribs, merged

LossFn = Callable[[Tensor, Tensor], Tensor]
#: Maps a chunk of n examples (n, ...) to their n K augmented rows (K consecutive per example).
Expand = Callable[[Tensor], Tensor]

#: Relative margin under C that absorbs rounding in the computed per-example norms.
SAFETY = 1e-5

#: Default micro-batch size, in input numbers: a micro-batch holds about this many input
#: elements (2^18: 334 MNIST rows, 85 CIFAR-10 rows). Chosen on the MNIST and CIFAR-10 CNNs
#: (docs/benchmarks.md): per-example cost is lowest around there, and the per-step
#: temporaries stay within tens of MB.
MICRO_BATCH_ELEMENTS = 2**18


def default_max_rows(x: Tensor) -> int:
    """Rows per micro-batch for inputs like ``x``: :data:`MICRO_BATCH_ELEMENTS` divided by
    the input elements per row (at least 1)."""
    per_row = max(1, math.prod(x.shape[1:]))
    return max(1, MICRO_BATCH_ELEMENTS // per_row)


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


def norm_dtype(params: Sequence[Tensor]) -> torch.dtype:
    """The dtype per-example norms are computed in: the widest of the parameters' dtypes and
    float32 (a float64 model gets float64 norms; half-precision models float32 ones)."""
    return functools.reduce(torch.promote_types, (p.dtype for p in params), torch.float32)


# ----------------------------------------------------------------------------- capture
@dataclass(frozen=True)
class _Call:
    module: nn.Module
    args: tuple
    output: Tensor
    version: int


class _Capture:
    """Forward hooks on every module that owns trainable parameters, recording each call's
    inputs and output (a context manager; the hooks are removed on exit)."""

    def __init__(self, model: nn.Module) -> None:
        self.owners = [m for m in model.modules() if any(p.requires_grad for p in m.parameters(recurse=False))]
        self.calls: list[_Call] = []
        self._handles: list = []

    def _hook(self, module: nn.Module, args: tuple, output: object) -> None:
        if not isinstance(output, Tensor):
            raise InvalidParameterError(
                f"layer {type(module).__name__} returns {type(output).__name__}, not a tensor; "
                "the per-example engine needs tensor outputs"
            )
        if output.requires_grad:
            self.calls.append(_Call(module, tuple(args), output, output._version))

    def __enter__(self) -> _Capture:
        self._handles = [m.register_forward_hook(self._hook) for m in self.owners]
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self.calls = []


@dataclass
class _Chunk:
    contribs: dict[int, list[Contribution]]
    losses: Tensor  # (rows,)
    logits: Tensor  # (rows, ...)


def _chunk_contributions(
    model: nn.Module, cap: _Capture, x: Tensor, y: Tensor, loss_fn: LossFn | None, k: int, force: bool
) -> _Chunk:
    """Forward and backward of one chunk of rows; each parameter's contributions."""
    cap.calls = []
    logits = model(x)
    losses = (loss_fn or default_loss)(logits, y)
    if losses.shape != (x.shape[0],):
        raise InvalidParameterError(
            f"loss_fn must return one loss per example, shape ({x.shape[0]},); got "
            f"{tuple(losses.shape)} (use reduction='none')"
        )
    calls, cap.calls = cap.calls, []
    for c in calls:
        if c.output._version != c.version:
            raise InvalidParameterError(
                f"the output of layer {type(c.module).__name__} is modified in place later in "
                "the forward pass (e.g. ReLU(inplace=True)); use inplace=False"
            )
    total = losses.sum() if k == 1 else losses.sum() / k  # mean over each example's K copies
    out_grads = torch.autograd.grad(total, [c.output for c in calls], allow_unused=True)
    contribs: dict[int, list[Contribution]] = {}
    for c, d in zip(calls, out_grads):
        if d is None:
            continue
        for pid, contrib in layer_contribs(c.module, c.args, d, k, force).items():
            contribs.setdefault(pid, []).append(contrib)
    return _Chunk(contribs, losses.detach(), logits.detach())


def _group_mean(t: Tensor, k: int) -> Tensor:
    return t if k == 1 else t.reshape(t.shape[0] // k, k, *t.shape[1:]).mean(1)


def _check_group(x: Tensor, y: Tensor, group_size: int, expand: Expand | None) -> int:
    k = int(group_size)
    if isinstance(group_size, bool) or k != group_size or k < 1:
        raise InvalidParameterError(f"group size must be a positive integer, got {group_size!r}")
    if x.shape[0] != y.shape[0]:
        raise InvalidParameterError(f"{x.shape[0]} inputs but {y.shape[0]} labels")
    if expand is None and x.shape[0] % k:
        raise InvalidParameterError(
            f"{x.shape[0]} rows do not form whole groups of {k} augmented copies"
        )
    return k


def _chunks(n: int, per: int) -> list[tuple[int, int]]:
    return [(s, min(n, s + per)) for s in range(0, n, per)]


# ----------------------------------------------------------------------------- the engine
@dataclass
class ClipResult:
    """Result of one clipping pass over n examples.

    Attributes:
        grads: sum over the batch of clipped per-example gradients, one tensor per trainable
            parameter (``trainable_parameters(model)`` order).
        norms: per-example gradient L2 norms before clipping, shape (n,) (with augmentation
            multiplicity: the norm of the mean of the example's K copies' gradients).
        losses: per-example losses (detached), shape (n,) (mean over the K copies).
        logits: model outputs (detached), (n, ...) (mean over the K copies).
    """

    grads: list[Tensor]
    norms: Tensor
    losses: Tensor
    logits: Tensor


def _check_clip(max_norm: float) -> float:
    c = float(max_norm)
    if not c > 0 or c == float("inf"):
        raise InvalidParameterError(f"clipping norm must be a finite number > 0, got {max_norm!r}")
    return c


def _check_rows(max_rows: int | None, x: Tensor) -> int:
    rows = default_max_rows(x) if max_rows is None else max_rows
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise InvalidParameterError(f"rows per micro-batch must be a positive integer, got {max_rows!r}")
    return rows


def clip_and_sum(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    max_norm: float,
    loss_fn: LossFn | None = None,
    *,
    group_size: int = 1,
    expand: Expand | None = None,
    max_rows: int | None = None,
) -> ClipResult:
    """Clipped per-example gradient sum, per-example norms, losses and logits of one batch.

    Flat clipping (Abadi et al. 2016, Alg. 1): c_i = min(1, C (1 - 1e-5) / ||g_i||), so every
    clipped per-example gradient has L2 norm <= C over all trainable parameters together, with
    a 1e-5 margin for rounding in the computed norms. Norms are computed in the model's dtype
    (:func:`norm_dtype`: float64 for a float64 model). An empty batch gives zero sums.

    Args:
        model, x, y: the model and the batch; without ``expand``, x and y hold n K rows, K
            consecutive rows per example.
        max_norm: the clipping norm C.
        loss_fn: per-row loss ``(logits, y) -> (rows,)`` (default cross-entropy).
        group_size: K, the augmented copies per example (augmentation multiplicity, De et al.
            2022, Sec. 3.2): an example's gradient is the mean of its K copies' gradients,
            clipped as one vector.
        expand: with K copies made on the fly, x and y hold the n examples and ``expand``
            maps a chunk of examples to its K-fold augmented rows (labels are repeated), so
            the n K rows never exist at once.
        max_rows: rows per micro-batch (default :func:`default_max_rows`; rounded down to
            whole examples, at least one example).
    """
    c_norm = _check_clip(max_norm)
    k = _check_group(x, y, group_size, expand)
    rows = _check_rows(max_rows, x)
    check_model(model)
    params = trainable_parameters(model)
    if not params:
        raise InvalidParameterError("the model has no trainable parameters")
    dtype = norm_dtype(params)
    step = k if expand is None else 1  # input rows per example
    n = x.shape[0] // step
    sums = [torch.zeros_like(p) for p in params]
    norms, losses, logits = [], [], []
    with _Capture(model) as cap:
        for s, e in _chunks(n, max(1, rows // k)):
            xc, yc = x[s * step:e * step], y[s * step:e * step]
            if expand is not None:
                xc, yc = expand(xc), yc.repeat_interleave(k)
            chunk = _chunk_contributions(model, cap, xc, yc, loss_fn, k, False)
            norms.append(_clip_chunk(params, chunk.contribs, sums, c_norm, dtype, e - s, x.device))
            losses.append(_group_mean(chunk.losses, k))
            logits.append(_group_mean(chunk.logits, k))
    if not norms:  # empty batch
        z = torch.zeros(0, device=x.device, dtype=dtype)
        return ClipResult(sums, z, z, z)
    return ClipResult(sums, torch.cat(norms), torch.cat(losses), torch.cat(logits))


def _clip_chunk(
    params: list[nn.Parameter], contribs: dict[int, list[Contribution]], sums: list[Tensor],
    c_norm: float, dtype: torch.dtype, n: int, device: torch.device,
) -> Tensor:
    """Norms of one chunk's n examples; adds the chunk's clipped sums into ``sums``."""
    parts = {pid: merged(ps) for pid, ps in contribs.items()}
    normsq = torch.zeros(n, device=device, dtype=dtype)
    for contrib in parts.values():
        normsq += contrib.normsq().to(dtype)
    norms = normsq.clamp_min(0).sqrt()
    # Clip to C (1 - SAFETY): float32 norms can be off by ~1e-6 relative; the margin keeps
    # every clipped gradient's true norm <= C, the sensitivity the accountants assume.
    factor = (c_norm * (1.0 - SAFETY) / (norms + 1e-12)).clamp(max=1.0)
    for p, acc in zip(params, sums):
        part = parts.get(id(p))
        if part is not None:
            acc += part.clipped_sum(factor).to(acc.dtype)
    return norms


def clipped_grad_sum(
    model: nn.Module, x: Tensor, y: Tensor, max_norm: float, loss_fn: LossFn | None = None,
    *, group_size: int = 1,
) -> tuple[list[Tensor], Tensor]:
    """(sum of clipped per-example gradients per trainable parameter, per-example norms (n,)).

    See :func:`clip_and_sum` for the clipping rule and the module docstring for the method.
    """
    r = clip_and_sum(model, x, y, max_norm, loss_fn, group_size=group_size)
    return r.grads, r.norms


def per_sample_grads(
    model: nn.Module, x: Tensor, y: Tensor, loss_fn: LossFn | None = None, *, group_size: int = 1
) -> list[Tensor]:
    """Per-example gradients, each (n, *param.shape), one per trainable parameter (with
    ``group_size`` K: the mean of each example's K consecutive rows' gradients).

    Materialises every per-example gradient (memory n x #params, one pass over the whole
    batch): a reference for tests and audits, not the training path.
    """
    k = _check_group(x, y, group_size, None)
    check_model(model)
    params = trainable_parameters(model)
    n = x.shape[0] // k
    if n == 0:
        return [torch.zeros(0, *p.shape, device=p.device, dtype=p.dtype) for p in params]
    if not params:
        raise InvalidParameterError("the model has no trainable parameters")
    with _Capture(model) as cap:
        chunk = _chunk_contributions(model, cap, x, y, loss_fn, k, True)
    out = []
    for p in params:
        parts = chunk.contribs.get(id(p))
        if not parts:
            out.append(torch.zeros(n, *p.shape, device=p.device, dtype=p.dtype))
        else:
            out.append(merged(parts).materialize().to(p.dtype))
    return out


def per_sample_norms(
    model: nn.Module, x: Tensor, y: Tensor, loss_fn: LossFn | None = None, *, group_size: int = 1
) -> Tensor:
    """Per-example gradient L2 norms over all trainable parameters, shape (n,)."""
    return clip_and_sum(model, x, y, float("1e300"), loss_fn, group_size=group_size).norms


__all__: Sequence[str] = (
    "MICRO_BATCH_ELEMENTS",
    "ClipResult",
    "check_model",
    "clip_and_sum",
    "clipped_grad_sum",
    "default_loss",
    "default_max_rows",
    "norm_dtype",
    "per_sample_grads",
    "per_sample_norms",
    "trainable_parameters",
)
