"""Names and options of the reference architectures (no torch here; the modules are built
by :mod:`dpaudit.training.models`).

Every architecture is rebuildable from ``(arch, input_shape, num_classes, arch_kwargs)`` as
stored in a model file; :func:`resolve_arch_kwargs` fills an architecture's defaults for an
input shape, :func:`check_arch_options` refuses unknown or ill-typed options before any work.
The layouts themselves (Tramer & Boneh 2021's tanh CNNs for MNIST, CIFAR-10 and ScatterNet
features, the MLP, logistic regression) are described in :mod:`dpaudit.training.models`.

Options every architecture takes:

* ``center`` (bool): a fixed first layer x -> 2x - 1 (pixels in [0, 1] to [-1, 1]);
* ``input_norm``: how the inputs are normalised before the first trainable layer (see
  :data:`INPUT_NORMS`): ``none``; ``imagenet`` (fixed per-channel ImageNet mean / std,
  Tramer & Boneh 2021's CIFAR-10 preprocessing: public constants, free); ``group``
  (GroupNorm with ``norm_groups`` groups and no affine parameters: per example, free);
  ``data`` (per-channel mean and variance of the *training members*, computed privately
  before training and charged to the budget, :mod:`dpaudit.training.datanorm`).

Convolutional architectures also take ``groupnorm`` (G > 0: GroupNorm with G groups after
each convolution) and ``weight_std`` (weight standardisation of every convolution, Qiao et
al. 2019): the "weight standardisation + GroupNorm" lever.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dpaudit.errors import InvalidParameterError

ARCHS: tuple[str, ...] = ("cnn", "cifar-cnn", "scatter-cnn", "mlp", "logreg")

#: Activation names every architecture with hidden layers accepts.
ACTIVATIONS: tuple[str, ...] = ("tanh", "relu", "elu", "gelu")

#: Input normalisations (option ``input_norm``; see the module docstring).
INPUT_NORMS: tuple[str, ...] = ("none", "imagenet", "group", "data")

_COMMON: dict[str, Any] = {"center": False, "input_norm": "none", "norm_groups": 0}

#: The cnn for inputs of at least 16x16 (Tramer & Boneh 2021, Table 9 / App. B).
CNN_28: dict[str, Any] = {
    "channels": [16, 32],
    "kernels": [8, 4],
    "strides": [2, 2],
    "paddings": [2, 0],
    "pool": 2,
    "hidden": 32,
    "activation": "tanh",
    "groupnorm": 0,
    "weight_std": False,
    "center": False,
}
#: The cnn scaled down for small inputs (height or width < 16, e.g. the 8x8 digits).
CNN_SMALL: dict[str, Any] = {**CNN_28, "kernels": [3, 3], "strides": [1, 2], "paddings": [1, 0]}

#: Tramer & Boneh 2021's CIFAR-10 tanh CNN (App. B, after Papernot et al. 2021): ``layout``
#: items are ``"M"`` (max-pool 2x2, stride 2), an int c (conv c 3x3, stride 1, padding 1) or
#: ``[c, kernel, stride, padding]``; then fc ``hidden`` (0: none) and fc to the classes.
CIFAR_CNN: dict[str, Any] = {
    "layout": [32, 32, "M", 64, 64, "M", 128, 128, "M"],
    "hidden": 128,
    "activation": "tanh",
    "groupnorm": 0,
    "weight_std": False,
}
#: Tramer & Boneh 2021's CNN on ScatterNet features of grey 28x28 images (81 x 7 x 7).
SCATTER_CNN_GREY: dict[str, Any] = {"layout": [[16, 3, 2, 1], [32, 3, 1, 1]], "hidden": 32,
                                    "activation": "tanh", "groupnorm": 0, "weight_std": False}
#: ... and of colour 32x32 images (243 x 8 x 8).
SCATTER_CNN_COLOUR: dict[str, Any] = {"layout": [64, "M", 64], "hidden": 0, "activation": "tanh",
                                      "groupnorm": 0, "weight_std": False}

_OPTIONS: dict[str, frozenset[str]] = {
    "cnn": frozenset(CNN_28) | frozenset(_COMMON),
    "cifar-cnn": frozenset(CIFAR_CNN) | frozenset(_COMMON),
    "scatter-cnn": frozenset(SCATTER_CNN_GREY) | frozenset(_COMMON),
    "mlp": frozenset({"hidden", "activation"}) | frozenset(_COMMON),
    "logreg": frozenset(_COMMON),
}


def check_arch_options(arch: str, options: dict[str, Any]) -> None:
    """Refuse an unknown architecture, unknown options, a non-boolean ``center`` /
    ``weight_std``, an unknown activation or input normalisation, or a ``group`` input
    normalisation without a group count (one readable line, :class:`InvalidParameterError`)."""
    if arch not in _OPTIONS:
        raise InvalidParameterError(f"unknown model {arch!r}; choose one of {', '.join(ARCHS)}")
    unknown = set(options) - _OPTIONS[arch]
    if unknown:
        raise InvalidParameterError(f"unknown option(s) for model {arch!r}: {sorted(unknown)}")
    for flag in ("center", "weight_std"):
        if not isinstance(options.get(flag, False), bool):
            raise InvalidParameterError(f"model option {flag} must be true or false, got {options[flag]!r}")
    if "activation" in options and options["activation"] not in ACTIVATIONS:
        raise InvalidParameterError(
            f"unknown activation {options['activation']!r}; choose one of {', '.join(ACTIVATIONS)}"
        )
    norm = options.get("input_norm", "none")
    if norm not in INPUT_NORMS:
        raise InvalidParameterError(f"unknown input normalisation {norm!r}; choose one of {', '.join(INPUT_NORMS)}")
    for name in ("norm_groups", "groupnorm"):
        v = options.get(name, 0)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise InvalidParameterError(f"model option {name} must be a whole number >= 0, got {v!r}")
    if norm == "group" and not options.get("norm_groups"):
        raise InvalidParameterError("input normalisation 'group' needs norm_groups > 0 (the number of groups)")
    if "layout" in options:
        check_layout(options["layout"])


def check_layout(layout: Any) -> None:
    """A conv layout: a non-empty list of ``"M"``, positive ints, or [c, k, s, p] lists."""
    ok = isinstance(layout, list) and bool(layout)
    for item in layout if ok else ():
        if item == "M" or (isinstance(item, int) and not isinstance(item, bool) and item > 0):
            continue
        if (isinstance(item, list) and len(item) == 4 and all(isinstance(v, int) for v in item)
                and item[0] > 0 and item[1] > 0 and item[2] > 0 and item[3] >= 0):
            continue
        ok = False
    if not ok:
        raise InvalidParameterError(
            f"model option layout must be a list of \"M\", channel counts or [channels, kernel, "
            f"stride, padding], got {layout!r}")


def resolve_arch_kwargs(arch: str, input_shape: Sequence[int], **arch_kwargs: Any) -> dict[str, Any]:
    """Fill in the defaults of ``arch`` for ``input_shape`` (C, H, W); the result rebuilds the
    same model."""
    check_arch_options(arch, arch_kwargs)
    if arch == "cnn":
        base = CNN_SMALL if min(input_shape[1:]) < 16 else CNN_28
        out = {**_COMMON, **base, **arch_kwargs}
    elif arch == "cifar-cnn":
        out = {**_COMMON, **CIFAR_CNN, **arch_kwargs}
    elif arch == "scatter-cnn":
        base = SCATTER_CNN_GREY if min(input_shape[1:]) < 8 else SCATTER_CNN_COLOUR
        out = {**_COMMON, **base, **arch_kwargs}
    elif arch == "mlp":
        out = {**_COMMON, "hidden": [512], "activation": "relu", **arch_kwargs}
        if isinstance(out["hidden"], int):
            out["hidden"] = [out["hidden"]]
    else:
        out = {**_COMMON, **arch_kwargs}
    return out
