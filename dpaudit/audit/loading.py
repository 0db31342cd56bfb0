"""Finding the trainer to audit: a built-in adapter by name, or a user's factory by
``module:function``.

:func:`parse_adapter_spec` checks the spec's shape without importing anything, so a typo is
refused before torch is imported; :func:`load_adapter` imports the module (with the current
directory on ``sys.path``, as ``python -m`` has it, and left there so that process-pool
workers can import it too) and calls the factory.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING, Any

from dpaudit.errors import InvalidParameterError

if TYPE_CHECKING:
    from dpaudit.audit.adapter import TrainerAdapter
    from dpaudit.audit.claim import Claim

#: Adapters shipped with dpaudit, by name.
BUILTIN_ADAPTERS: tuple[str, ...] = ("reference", "opacus")


def parse_adapter_spec(spec: str) -> tuple[str, str]:
    """``"module:function"`` -> ``(module, function)``; anything else is refused."""
    module, sep, func = str(spec).partition(":")
    if not sep or not module or not func:
        raise InvalidParameterError(f"a trainer factory is named module:function, got {spec!r}")
    return module, func


def load_adapter(spec: str, claim: Claim | None = None) -> TrainerAdapter:
    """Import ``module:function`` and call it -- with ``claim=claim`` when a claim is given --
    and check that it returned a :class:`~dpaudit.audit.adapter.TrainerAdapter`."""
    from dpaudit.audit.adapter import TrainerAdapter

    module, func = parse_adapter_spec(spec)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        factory: Any = getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as exc:
        raise InvalidParameterError(f"cannot load trainer {spec!r}: {exc}") from None
    if not callable(factory):
        raise InvalidParameterError(f"{spec} is not callable (expected a factory returning a TrainerAdapter)")
    adapter = factory(claim=claim) if claim is not None else factory()
    if not isinstance(adapter, TrainerAdapter):
        raise InvalidParameterError(
            f"{spec} returned {type(adapter).__name__}, not a TrainerAdapter "
            "(needs name, claim() and privatized_gradient())")
    return adapter


def builtin_adapter(name: str, claim: Claim, device: str = "cpu") -> TrainerAdapter:
    """The built-in adapter ``name`` (one of :data:`BUILTIN_ADAPTERS`) for ``claim`` on
    ``device`` (checked: an unknown or absent device is refused here, before any work)."""
    if name not in BUILTIN_ADAPTERS:
        raise InvalidParameterError(f"unknown built-in adapter {name!r}; choose from {', '.join(BUILTIN_ADAPTERS)}")
    from dpaudit.audit.adapter import OpacusAdapter, ReferenceAdapter
    from dpaudit.runtime import resolve_device

    resolve_device(device)
    if name == "opacus":
        return OpacusAdapter(claim, device)
    return ReferenceAdapter(claim, device)
