"""Verdicts: one :class:`CheckResult` per check, gathered in an :class:`AuditReport`.

``pass`` means the check looked for the failure it targets and found no evidence of it at
the stated confidence; ``violation`` means the evidence contradicts the claim at that
confidence; ``inconclusive`` means the check could not run (missing adapter method,
non-deterministic step where an exact test was needed, ...) -- never a silent pass.
"""

from __future__ import annotations

import json
import os
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
        p_value: the statistical test's p-value (Bonferroni-adjusted within the check) when it
            has one: ``violation`` means ``p_value < 1 - confidence``.
    """

    name: str
    verdict: str
    evidence: str
    confidence: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    p_value: float | None = None

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")

    def phrase(self) -> str:
        """The verdict in words: "violation at 99.99% confidence (p = 2e-09)", "pass (exact)",
        "inconclusive"."""
        if self.verdict == INCONCLUSIVE:
            return INCONCLUSIVE
        if self.confidence is None:
            return f"{self.verdict} (exact)"
        p = f" (p = {self.p_value:.2g})" if self.p_value is not None else ""
        return f"{self.verdict} at {_percent(self.confidence)} confidence{p}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "verdict": self.verdict,
            "evidence": self.evidence,
            "confidence": self.confidence,
            "p_value": self.p_value,
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
        lines = [
            f"audit of {self.trainer}: {self.verdict.upper()}",
            f"claim: {claim_line(self.claim)}",
            f"family-wise confidence {self.confidence:g} (split over the statistical checks)",
            "",
        ]
        width = max((len(x.name) for x in self.checks), default=5)
        for x in self.checks:
            lines.append(f"{x.name:<{width}}  {x.phrase()}: {x.evidence}")
            for n in x.notes:
                lines.append(f"{'':<{width}}    note: {n}")
        return "\n".join(lines)

    def to_markdown(self) -> str:
        out = [
            f"# DP audit: {self.trainer}",
            "",
            f"**Overall verdict: {self.verdict}** (family-wise confidence {self.confidence:g}; "
            f"{self.seconds:.1f} s)",
            "",
            f"Claim: {claim_line(self.claim)}",
            "",
            "| check | verdict | evidence |",
            "|---|---|---|",
        ]
        for x in self.checks:
            ev = x.evidence.replace("|", "\\|")
            if x.notes:
                ev += "<br>" + "<br>".join("note: " + n.replace("|", "\\|") for n in x.notes)
            out.append(f"| {x.name} | {x.phrase()} | {ev} |")
        from dpaudit.audit.plot import TRADEOFF_PNG, has_tradeoff

        out += [
            "",
            "`pass` = no evidence of the failure this check targets at its confidence; it is "
            "not a proof of privacy. See docs/verify.md for what each check proves.",
            "",
        ]
        if has_tradeoff(self):
            out += [f"![trade-off curves]({TRADEOFF_PNG})", "",
                    "Claimed trade-off curve, the multi-run audit's (FPR, FNR) points with their simultaneous "
                    "upper confidence corners, and the certified curve (the most private member of the "
                    "claimed family the corners reject).", ""]
        return "\n".join(out)

    def write(self, directory: str | os.PathLike[str]) -> list[str]:
        """Write ``report.json``, ``report.md`` and, when the report holds a multi-run canary
        audit, ``tradeoff.png`` into ``directory`` (created if missing): all or none. An
        unusable folder, or a missing matplotlib when a figure is due, is refused
        (OutputError / DPAuditError) before anything is written."""
        from dpaudit.audit.plot import TRADEOFF_PNG, has_tradeoff, write_tradeoff
        from dpaudit.io import atomic_folder, check_output_dir

        d = check_output_dir(directory)
        names = ["report.json", "report.md"]
        if has_tradeoff(self):
            from dpaudit.plotting import require_matplotlib

            require_matplotlib("the trade-off figure of the report")
            names.append(TRADEOFF_PNG)
        with atomic_folder(d, names) as tmps:
            tmps[0].write_text(self.to_json() + "\n", encoding="utf-8")
            tmps[1].write_text(self.to_markdown(), encoding="utf-8")
            if len(tmps) > 2:
                write_tradeoff(self, tmps[2])
        return [str(d / n) for n in names]


def _percent(confidence: float) -> str:
    """0.95 -> "95%", 0.99983 -> "99.983%" (enough digits to tell it from 100%)."""
    pct = 100.0 * confidence
    for digits in range(0, 8):
        s = f"{pct:.{digits}f}"
        if float(s) < 100.0 and abs(float(s) - pct) <= 0.5 * 10**-digits:
            return s.rstrip("0").rstrip(".") + "%" if "." in s else s + "%"
    return f"{pct:.8g}%"


def claim_line(claim: dict[str, Any]) -> str:
    """Every parameter of a claim (as :meth:`Claim.to_dict` gives it) on one line:
    ε, δ, N, B, q, σ, C, T and the batching."""
    keys = (("eps", "epsilon"), ("delta", "delta"), ("N", "dataset_size"), ("B", "expected_batch_size"),
            ("q", "sample_rate"), ("sigma", "noise_multiplier"), ("C", "clip"), ("T", "steps"),
            ("batching", "batching"))
    return " ".join(f"{short}={_fmt(claim.get(key))}" for short, key in keys)


def _fmt(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)
