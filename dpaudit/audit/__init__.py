"""Verify a DP trainer: probes, canary audits and re-accounting, with a verdict per check.

Quick use::

    from dpaudit.audit import Claim, ReferenceAdapter, audit
    claim = Claim(epsilon=2.0, delta=1e-5, sample_rate=0.01, noise_multiplier=1.1,
                  clip=1.0, steps=1000, dataset_size=10_000)
    report = audit(ReferenceAdapter(claim), confidence=0.95)
    print(report.to_text())

Wrap your own trainer with :class:`StepAdapter` (plain callables) or implement the
:class:`TrainerAdapter` protocol; see docs/verify.md.

Importing this package does not import torch: the claim, the check names and the option
checks (:mod:`~dpaudit.audit.claim`, :mod:`~dpaudit.audit.checks`) are pure Python, and the
torch-based names (adapters, :func:`audit`) are imported on first use. The audit reads its
statistics from :mod:`dpaudit.stats` and nothing from :mod:`dpaudit.attacks`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dpaudit.audit.checks import AUDITS, CHECKS, PROBES, check_options, resolve_checks
from dpaudit.audit.claim import Claim
from dpaudit.audit.loading import (
    BUILTIN_ADAPTERS,
    builtin_adapter,
    load_adapter,
    parse_adapter_spec,
)
from dpaudit.audit.verdict import INCONCLUSIVE, PASS, VIOLATION, AuditReport, CheckResult

if TYPE_CHECKING:
    from dpaudit.audit.adapter import (
        OpacusAdapter,
        ReferenceAdapter,
        StepAdapter,
        TrainerAdapter,
        poisson_batches,
        shuffle_batches,
    )
    from dpaudit.audit.runner import audit

#: torch-based names, imported from their module on first use.
_LAZY: dict[str, str] = {
    "OpacusAdapter": "dpaudit.audit.adapter",
    "ReferenceAdapter": "dpaudit.audit.adapter",
    "StepAdapter": "dpaudit.audit.adapter",
    "TrainerAdapter": "dpaudit.audit.adapter",
    "poisson_batches": "dpaudit.audit.adapter",
    "shuffle_batches": "dpaudit.audit.adapter",
    "audit": "dpaudit.audit.runner",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AUDITS",
    "BUILTIN_ADAPTERS",
    "CHECKS",
    "INCONCLUSIVE",
    "PASS",
    "PROBES",
    "VIOLATION",
    "AuditReport",
    "CheckResult",
    "Claim",
    "OpacusAdapter",
    "ReferenceAdapter",
    "StepAdapter",
    "TrainerAdapter",
    "audit",
    "builtin_adapter",
    "check_options",
    "load_adapter",
    "parse_adapter_spec",
    "poisson_batches",
    "resolve_checks",
    "shuffle_batches",
]
