"""Model architectures of the reference trainer; every one is rebuildable from
``(arch, input_shape, num_classes, arch_kwargs)`` as stored in a model file.

* ``cnn``: the tanh CNN of Tramer & Boneh 2021 ("Differentially Private Learning Needs Better
  Features (or Much More Data)", ICLR 2021, Table 9 / App. B, after Papernot et al. 2021):
  conv 16 8x8 stride 2 pad 2, maxpool 2 stride 1, conv 32 4x4 stride 2, maxpool 2 stride 1,
  fc 32, fc num_classes, tanh activations. That layout is for 28x28 inputs. For small inputs
  (height or width < 16, e.g. the 8x8 digits) the kernels are scaled down -- conv 16 3x3
  stride 1 pad 1, maxpool 2/1, conv 32 3x3 stride 2, maxpool 2/1 -- so that the feature maps
  stay non-empty; the resolved values are returned in ``arch_kwargs`` of :func:`resolve_arch_kwargs`
  and recorded in the model's metadata.
* ``cifar-cnn``: Tramer & Boneh 2021's CIFAR-10 tanh CNN (same appendix): conv 32, conv 32,
  maxpool, conv 64, conv 64, maxpool, conv 128, conv 128, maxpool (3x3 convolutions, stride 1,
  padding 1; max-pool 2x2 stride 2), fc 128, fc num_classes; 550,570 parameters. The
  screening papers use the same network: SA-DPSGD's baselines (98.12 / 86.33 / 59.34 %)
  reproduce Tramer & Boneh's end-to-end CNNs, and DPSUR's code defines this layout
  (``CIFAR10_CNN_Tanh``).
* ``scatter-cnn``: Tramer & Boneh 2021's CNN on ScatterNet features
  (:mod:`dpaudit.training.features`): for grey 28x28 images (81 x 7 x 7 features) conv 16
  3x3 stride 2 pad 1, conv 32 3x3 pad 1, fc 32, fc classes; for colour 32x32 images
  (243 x 8 x 8) conv 64 3x3 pad 1, maxpool 2/2, conv 64 3x3 pad 1, fc classes.
* ``mlp``: flatten, ``hidden`` Linear+activation layers (default (512,): the 784-512-10 MLP of
  the benchmark), Linear to the classes.
* ``logreg``: flatten, one Linear layer (multinomial logistic regression; on ScatterNet
  features this is Tramer & Boneh's "ScatterNet + linear").

Input layers (options of every architecture, :mod:`dpaudit.training.archs`): ``center`` (x ->
2x - 1), ``input_norm`` = ``imagenet`` (fixed ImageNet channel mean / std), ``group``
(GroupNorm without parameters, per example) or ``data`` (:class:`DataStandardize`: per-channel
mean and variance of the training members, computed privately by the trainer and stored as
buffers, so a saved model normalises its inputs as in training). None of them mixes examples.

No architecture uses batch normalisation: it mixes examples, which per-example clipping (and
hence DP-SGD's analysis) does not allow. GroupNorm is the per-example replacement; with
``weight_std`` every convolution standardises its kernel (:class:`WSConv2d`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from dpaudit.errors import InvalidParameterError
from dpaudit.training.archs import ARCHS, resolve_arch_kwargs

__all__ = ["ARCHS", "Center", "DataStandardize", "WSConv2d", "build_model", "resolve_arch_kwargs"]

#: activation name -> module class (names: :data:`dpaudit.training.archs.ACTIVATIONS`).
_ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU}

#: ImageNet channel statistics (public constants; Tramer & Boneh 2021's CIFAR-10 preprocessing).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Center(nn.Module):
    """x -> 2 x - 1: maps pixels in [0, 1] to [-1, 1] (no parameters, no data statistics)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2.0 - 1.0


class ChannelAffine(nn.Module):
    """x -> (x - mean_c) / std_c with fixed public constants (no parameters)."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class DataStandardize(nn.Module):
    """x -> (x - mean_c) / sqrt(var_c + 1e-5), channels with var_c = 0 set to 0 (Tramer &
    Boneh 2021's "data normalisation"); ``mean`` and ``var`` are buffers (identity until
    :meth:`set_statistics`), filled by the trainer with privately computed statistics
    (:func:`dpaudit.training.datanorm.private_channel_stats`) and saved with the model."""

    mean: torch.Tensor
    var: torch.Tensor

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("var", torch.ones(channels))

    def set_statistics(self, mean: torch.Tensor, var: torch.Tensor) -> None:
        if mean.shape != self.mean.shape or var.shape != self.var.shape:
            raise InvalidParameterError(f"statistics must have shape {tuple(self.mean.shape)}")
        self.mean.copy_(mean)
        self.var.copy_(var.clamp_min(0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        view = (1, -1) + (1,) * (x.dim() - 2)
        scale = torch.where(self.var > 0, torch.rsqrt(self.var + 1e-5), torch.zeros_like(self.var))
        return (x - self.mean.view(view)) * scale.view(view)


class WSConv2d(nn.Conv2d):
    """Conv2d with weight standardisation (Qiao et al. 2019, "Micro-Batch Training with
    Batch-Channel Normalization and Weight Standardization", Eq. 5): the kernel of every
    output channel is centred and scaled to unit variance over (in, kh, kw) before use. A
    function of the weights only, so per-example gradients stay per-example (the clipping
    engine treats it as a generic layer)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        mean = w.mean(dim=(1, 2, 3), keepdim=True)
        var = w.var(dim=(1, 2, 3), keepdim=True, unbiased=False)
        return F.conv2d(x, (w - mean) / torch.sqrt(var + 1e-5), self.bias, self.stride,
                        self.padding, self.dilation, self.groups)


def _input_layers(kw: dict[str, Any], channels: int) -> list[nn.Module]:
    layers: list[nn.Module] = [Center()] if kw.get("center") else []
    norm = kw.get("input_norm", "none")
    if norm == "imagenet":
        if channels != 3:
            raise InvalidParameterError(f"input normalisation 'imagenet' needs 3 channels, got {channels}")
        layers.append(ChannelAffine(IMAGENET_MEAN, IMAGENET_STD))
    elif norm == "group":
        g = int(kw["norm_groups"])
        if channels % g:
            raise InvalidParameterError(f"norm_groups = {g} does not divide the {channels} input channels")
        layers.append(nn.GroupNorm(g, channels, affine=False))
    elif norm == "data":
        layers.append(DataStandardize(channels))
    return layers


def _conv_stack(kw: dict[str, Any], c_in: int) -> list[nn.Module]:
    """Convolutions of a ``layout`` (see :data:`dpaudit.training.archs.CIFAR_CNN`)."""
    act, conv = _ACTIVATIONS[kw["activation"]], WSConv2d if kw.get("weight_std") else nn.Conv2d
    layers: list[nn.Module] = []
    for item in kw["layout"]:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
            continue
        c, k, s, p = (int(item), 3, 1, 1) if isinstance(item, int) else (int(v) for v in item)
        layers.append(conv(c_in, c, k, stride=s, padding=p))
        if kw.get("groupnorm"):
            layers.append(nn.GroupNorm(min(int(kw["groupnorm"]), c), c))
        layers.append(act())
        c_in = c
    return layers


def _head(features: list[nn.Module], shape: tuple[int, ...], hidden: int, act: type[nn.Module],
          num_classes: int) -> nn.Sequential:
    with torch.no_grad():
        try:
            n_feat = nn.Sequential(*features)(torch.zeros(1, *shape)).numel()
        except RuntimeError as exc:
            raise InvalidParameterError(f"the model's layout does not fit {shape} inputs: {exc}") from None
    tail: list[nn.Module] = [nn.Flatten()]
    if hidden:
        tail += [nn.Linear(n_feat, hidden), act(), nn.Linear(hidden, num_classes)]
    else:
        tail.append(nn.Linear(n_feat, num_classes))
    return nn.Sequential(*features, *tail)


def build_model(
    arch: str, input_shape: tuple[int, int, int], num_classes: int, **arch_kwargs: Any
) -> nn.Module:
    """Build ``arch`` (one of :data:`ARCHS`) for (C, H, W) inputs and ``num_classes``."""
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise InvalidParameterError(f"input shape must be (C, H, W), got {input_shape!r}")
    if int(num_classes) < 2:
        raise InvalidParameterError(f"need at least 2 classes, got {num_classes!r}")
    kw = resolve_arch_kwargs(arch, shape, **arch_kwargs)
    flat = shape[0] * shape[1] * shape[2]
    pre = _input_layers(kw, shape[0])
    if arch == "logreg":
        return nn.Sequential(*pre, nn.Flatten(), nn.Linear(flat, num_classes))
    act = _ACTIVATIONS[kw["activation"]]
    if arch == "mlp":
        layers: list[nn.Module] = [*pre, nn.Flatten()]
        width = flat
        for h in kw["hidden"]:
            layers += [nn.Linear(width, int(h)), act()]
            width = int(h)
        layers.append(nn.Linear(width, num_classes))
        return nn.Sequential(*layers)
    if arch in ("cifar-cnn", "scatter-cnn"):
        return _head([*pre, *_conv_stack(kw, shape[0])], shape, int(kw["hidden"]), act, num_classes)
    # cnn
    layers = list(pre)
    c_in = shape[0]
    conv = WSConv2d if kw.get("weight_std") else nn.Conv2d
    for c, k, s, p in zip(kw["channels"], kw["kernels"], kw["strides"], kw["paddings"]):
        layers.append(conv(c_in, int(c), int(k), stride=int(s), padding=int(p)))
        if kw["groupnorm"]:
            layers.append(nn.GroupNorm(min(int(kw["groupnorm"]), int(c)), int(c)))
        layers += [act(), nn.MaxPool2d(int(kw["pool"]), 1)]
        c_in = int(c)
    return _head(layers, shape, int(kw["hidden"]), act, num_classes)
