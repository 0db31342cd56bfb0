"""Verify a DP trainer: probes, canary audits and re-accounting, with a verdict per check.

Quick use::

    from dpaudit.audit import Claim, ReferenceAdapter, audit
    claim = Claim(epsilon=2.0, delta=1e-5, sample_rate=0.01, noise_multiplier=1.1,
                  clip=1.0, steps=1000, dataset_size=10_000)
    report = audit(ReferenceAdapter(claim), confidence=0.95)
    print(report.to_text())

Wrap your own trainer with :class:`StepAdapter` (plain callables) or implement the
:class:`TrainerAdapter` protocol; see docs/verify.md.
"""

from dpaudit.audit.adapter import (
    Claim,
    OpacusAdapter,
    ReferenceAdapter,
    StepAdapter,
    TrainerAdapter,
    poisson_batches,
    shuffle_batches,
)
from dpaudit.audit.runner import AUDITS, CHECKS, PROBES, audit, resolve_checks
from dpaudit.audit.verdict import INCONCLUSIVE, PASS, VIOLATION, AuditReport, CheckResult

__all__ = [
    "AUDITS",
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
    "poisson_batches",
    "resolve_checks",
    "shuffle_batches",
]
