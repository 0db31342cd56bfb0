"""Names and options of the reference architectures (no torch here; the modules are built
by :mod:`dpaudit.training.models`).

Every architecture is rebuildable from ``(arch, input_shape, num_classes, arch_kwargs)`` as
stored in a model file; :func:`resolve_arch_kwargs` fills an architecture's defaults for an
input shape, :func:`check_arch_options` refuses unknown or ill-typed options before any work.
The layouts themselves (Tramer & Boneh 2021's tanh CNN, the MLP, logistic regression) are
described in :mod:`dpaudit.training.models`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dpaudit.errors import InvalidParameterError

ARCHS: tuple[str, ...] = ("cnn", "mlp", "logreg")

#: Activation names every architecture with hidden layers accepts.
ACTIVATIONS: tuple[str, ...] = ("tanh", "relu", "elu", "gelu")

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
    "center": False,
}
#: The cnn scaled down for small inputs (height or width < 16, e.g. the 8x8 digits).
CNN_SMALL: dict[str, Any] = {**CNN_28, "kernels": [3, 3], "strides": [1, 2], "paddings": [1, 0]}

_OPTIONS: dict[str, frozenset[str]] = {
    "cnn": frozenset(CNN_28),
    "mlp": frozenset({"hidden", "activation", "center"}),
    "logreg": frozenset({"center"}),
}


def check_arch_options(arch: str, options: dict[str, Any]) -> None:
    """Refuse an unknown architecture, unknown options, a non-boolean ``center`` or an
    unknown activation (one readable line, :class:`InvalidParameterError`)."""
    if arch not in _OPTIONS:
        raise InvalidParameterError(f"unknown model {arch!r}; choose one of {', '.join(ARCHS)}")
    unknown = set(options) - _OPTIONS[arch]
    if unknown:
        raise InvalidParameterError(f"unknown option(s) for model {arch!r}: {sorted(unknown)}")
    if not isinstance(options.get("center", False), bool):
        raise InvalidParameterError(
            f"model option center must be true or false, got {options['center']!r}"
        )
    if "activation" in options and options["activation"] not in ACTIVATIONS:
        raise InvalidParameterError(
            f"unknown activation {options['activation']!r}; choose one of {', '.join(ACTIVATIONS)}"
        )


def resolve_arch_kwargs(arch: str, input_shape: Sequence[int], **arch_kwargs: Any) -> dict[str, Any]:
    """Fill in the defaults of ``arch`` for ``input_shape`` (C, H, W); the result rebuilds the
    same model."""
    check_arch_options(arch, arch_kwargs)
    if arch == "cnn":
        base = CNN_SMALL if min(input_shape[1:]) < 16 else CNN_28
        out = {**base, **arch_kwargs}
    elif arch == "mlp":
        out = {"hidden": [512], "activation": "relu", "center": False, **arch_kwargs}
        if isinstance(out["hidden"], int):
            out["hidden"] = [out["hidden"]]
    else:
        out = {"center": False, **arch_kwargs}
    return out
