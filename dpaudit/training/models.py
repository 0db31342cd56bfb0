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
* ``mlp``: flatten, ``hidden`` Linear+activation layers (default (512,): the 784-512-10 MLP of
  the benchmark), Linear to the classes.
* ``logreg``: flatten, one Linear layer (multinomial logistic regression).

Every architecture takes ``center`` (default false): a parameter-free first layer x -> 2x - 1
that maps pixels in [0, 1] to [-1, 1]. Its constants do not depend on the data, so it costs no
privacy (unlike standardising with the training set's mean and std), and because it is part of
the model a saved model sees the inputs it was trained on.

No architecture uses batch normalisation: it mixes examples, which per-example clipping (and
hence DP-SGD's analysis) does not allow. GroupNorm is the per-example replacement.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dpaudit.errors import InvalidParameterError
from dpaudit.training.archs import ARCHS, resolve_arch_kwargs

__all__ = ["ARCHS", "Center", "build_model", "resolve_arch_kwargs"]

#: activation name -> module class (names: :data:`dpaudit.training.archs.ACTIVATIONS`).
_ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU}


class Center(nn.Module):
    """x -> 2 x - 1: maps pixels in [0, 1] to [-1, 1] (no parameters, no data statistics)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2.0 - 1.0


def build_model(
    arch: str, input_shape: tuple[int, int, int], num_classes: int, **arch_kwargs: Any
) -> nn.Module:
    """Build ``arch`` ("cnn" | "mlp" | "logreg") for (C, H, W) inputs and ``num_classes``."""
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise InvalidParameterError(f"input shape must be (C, H, W), got {input_shape!r}")
    if int(num_classes) < 2:
        raise InvalidParameterError(f"need at least 2 classes, got {num_classes!r}")
    kw = resolve_arch_kwargs(arch, shape, **arch_kwargs)
    flat = shape[0] * shape[1] * shape[2]
    # Optional fixed input map x -> 2x - 1 (pixels in [0, 1] to [-1, 1]); data-independent
    # constants, so it costs no privacy, and it lives in the model so a saved model sees the
    # same inputs as during training.
    pre: list[nn.Module] = [Center()] if kw.get("center") else []
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
    # cnn
    layers = list(pre)
    c_in = shape[0]
    for c, k, s, p in zip(kw["channels"], kw["kernels"], kw["strides"], kw["paddings"]):
        layers.append(nn.Conv2d(c_in, int(c), int(k), stride=int(s), padding=int(p)))
        if kw["groupnorm"]:
            layers.append(nn.GroupNorm(min(int(kw["groupnorm"]), int(c)), int(c)))
        layers += [act(), nn.MaxPool2d(int(kw["pool"]), 1)]
        c_in = int(c)
    features = nn.Sequential(*layers)
    with torch.no_grad():
        try:
            n_feat = features(torch.zeros(1, *shape)).numel()
        except RuntimeError as exc:
            raise InvalidParameterError(
                f"cnn layout does not fit {shape[1]}x{shape[2]} inputs: {exc}"
            ) from None
    return nn.Sequential(
        *layers,
        nn.Flatten(),
        nn.Linear(n_feat, int(kw["hidden"])),
        act(),
        nn.Linear(int(kw["hidden"]), num_classes),
    )
