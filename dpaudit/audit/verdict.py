"""Verdicts: one :class:`CheckResult` per check, gathered in an :class:`AuditReport`.

``pass`` means the check looked for the failure it targets and found no evidence of it at
the stated confidence; ``violation`` means the evidence contradicts the claim at that
confidence; ``inconclusive`` means the check could not run (missing adapter method,
non-deterministic step where an exact test was needed, ...) -- never a silent pass.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from dpaudit.io import to_jsonable

PASS = "pass"
VIOLATION = "violation"
INCONCLUSIVE = "inconclusive"
VERDICTS = (PASS, VIOLATION, INCONCLUSIVE)


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one check.

    Attributes:
        name: short identifier (``sensitivity``, ``noise_variance``, ...).
        verdict: ``pass`` / ``violation`` / ``inconclusive``.
        evidence: one human-readable sentence with the measured figures.
        confidence: the confidence level of the statistical statement (1 - false-alarm
            probability of this check), ``None`` for exact (deterministic) comparisons.
        details: machine-readable figures (JSON-able).
        notes: caveats (fallbacks taken, what the check cannot see).
    """

    name: str
    verdict: str
    evidence: str
    confidence: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "verdict": self.verdict,
            "evidence": self.evidence,
            "confidence": self.confidence,
            "details": to_jsonable(self.details),
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class AuditReport:
    """All checks of one audit, with the claim they were run against."""

    trainer: str
    claim: dict[str, Any]
    checks: tuple[CheckResult, ...]
    confidence: float
    seconds: float = 0.0

    @property
    def verdict(self) -> str:
        """``violation`` if any check found one; ``pass`` if all passed; else inconclusive."""
        v = [c.verdict for c in self.checks]
        if VIOLATION in v:
            return VIOLATION
        if v and all(x == PASS for x in v):
            return PASS
        return INCONCLUSIVE

    def check(self, name: str) -> CheckResult:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "trainer": self.trainer,
            "verdict": self.verdict,
            "confidence": self.confidence,
            "claim": to_jsonable(self.claim),
            "seconds": self.seconds,
            "checks": [c.to_dict() for c in self.checks],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_text(self) -> str:
        c = self.claim
        lines = [
            f"audit of {self.trainer}: {self.verdict.upper()}",
            f"claim: eps={c.get('epsilon')} delta={c.get('delta')} q={c.get('sample_rate')} "
            f"sigma={c.get('noise_multiplier')} C={c.get('clip')} steps={c.get('steps')} "
            f"batching={c.get('batching')}",
            f"family-wise confidence {self.confidence:g} (split over {len(self.checks)} checks)",
            "",
        ]
        width = max((len(x.name) for x in self.checks), default=5)
        for x in self.checks:
            conf = "exact" if x.confidence is None else f"{x.confidence:.4f}"
            lines.append(f"{x.name:<{width}}  {x.verdict:<12}  [{conf}]  {x.evidence}")
            for n in x.notes:
                lines.append(f"{'':<{width}}    note: {n}")
        return "\n".join(lines)

    def to_markdown(self) -> str:
        c = self.claim
        out = [
            f"# DP audit: {self.trainer}",
            "",
            f"**Overall verdict: {self.verdict}** (family-wise confidence {self.confidence:g}; "
            f"{self.seconds:.1f} s)",
            "",
            "Claim: " + ", ".join(f"{k}={v}" for k, v in c.items()),
            "",
            "| check | verdict | confidence | evidence |",
            "|---|---|---|---|",
        ]
        for x in self.checks:
            conf = "exact" if x.confidence is None else f"{x.confidence:.4f}"
            ev = x.evidence.replace("|", "\\|")
            if x.notes:
                ev += "<br>" + "<br>".join("note: " + n.replace("|", "\\|") for n in x.notes)
            out.append(f"| {x.name} | {x.verdict} | {conf} | {ev} |")
        out += [
            "",
            "`pass` = no evidence of the failure this check targets at its confidence; it is "
            "not a proof of privacy. See docs/verify.md for what each check proves.",
            "",
        ]
        return "\n".join(out)

    def write(self, directory: str) -> list[str]:
        """Write ``report.json`` and ``report.md`` into ``directory`` (atomically)."""
        from pathlib import Path

        from dpaudit.io import atomic_write_text

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        atomic_write_text(d / "report.json", self.to_json() + "\n")
        atomic_write_text(d / "report.md", self.to_markdown())
        return [str(d / "report.json"), str(d / "report.md")]
