"""Acceptance: every planted bug is flagged ``violation`` by at least one check, and the
correct trainers (plain-torch textbook DP-SGD, dpaudit's reference trainer, Opacus) pass
every check at the stated confidence."""

from __future__ import annotations

import importlib.util

import pytest

from dpaudit.audit import PASS, VIOLATION, OpacusAdapter, ReferenceAdapter, audit
from tests.audit import planted

# The cheap probes and the re-accounting catch every planted bug; the canary audits are
# exercised on the correct trainers below and in test_canaries.py.
EXPECTED = {
    "no_clip": {"sensitivity", "per_sample_gradients"},
    "noise_on_mean": {"noise_variance"},
    "no_noise": {"noise_variance"},
    "half_sigma": {"noise_variance"},
    "reused_noise": {"fresh_noise"},
    "shuffle_as_poisson": {"sampler"},
    "wrong_per_sample": {"sensitivity", "per_sample_gradients"},
    "actual_batch_divisor": {"noise_variance"},
}


@pytest.mark.parametrize("bug", planted.BUGS)
def test_planted_bug_is_flagged(bug, claim):
    report = audit(planted.adapter(bug, claim), checks="probes", confidence=0.95)
    flagged = {c.name for c in report.checks if c.verdict == VIOLATION}
    assert report.verdict == VIOLATION
    assert EXPECTED[bug] <= flagged, report.to_text()
    # no collateral false alarms from checks that target other failures
    assert "accounting" not in flagged


def test_every_listed_bug_is_planted():
    assert set(EXPECTED) == set(planted.BUGS)


HAS_OPACUS = importlib.util.find_spec("opacus") is not None


@pytest.mark.parametrize("make", [
    lambda c: planted.adapter("correct", c),
    ReferenceAdapter,
    pytest.param(OpacusAdapter, marks=pytest.mark.skipif(not HAS_OPACUS, reason="opacus extra not installed")),
], ids=["plain-torch", "reference", "opacus"])
def test_correct_trainers_pass_everything(make, claim):
    report = audit(make(claim), confidence=0.95, runs=30, canaries=100, canary_steps=5)
    assert [c.verdict for c in report.checks] == [PASS] * len(report.checks), report.to_text()


def test_under_reported_epsilon_is_a_violation(claim):
    from dataclasses import replace

    report = audit(planted.adapter("correct", replace(claim, epsilon=1.0)), checks="accounting")
    assert report.check("accounting").verdict == VIOLATION


def test_family_wise_false_alarm_rate_of_the_probes(claim):
    """Over 24 audit seeds at confidence 0.5, the correct trainer raises an alarm in at most
    about half of the audits (Bonferroni makes the true rate lower)."""
    a = planted.adapter("correct", claim)
    checks = "noise_variance,fresh_noise,sampler"  # the statistical probes
    alarms = sum(audit(a, checks=checks, confidence=0.5, seed=s).verdict == VIOLATION for s in range(1, 25))
    assert alarms / 24 <= 0.5 + 3 * (0.25 / 24) ** 0.5
