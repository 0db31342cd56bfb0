"""Acceptance: every planted bug is flagged ``violation`` by at least one check at the
default confidence (0.999), trainers the audit cannot see into get ``inconclusive`` (never
a violation, never a blind pass), and the correct trainers (plain-torch textbook DP-SGD,
dpaudit's reference trainer, Opacus) pass every check."""

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
    "bias_noiseless": {"noise_variance"},
    "sigma_drop": {"noise_variance"},
    "step_seeded_noise": {"fresh_noise"},
}


@pytest.mark.parametrize("bug", planted.BUGS)
def test_planted_bug_is_flagged(bug, claim):
    report = audit(planted.adapter(bug, claim), checks="probes")
    flagged = {c.name for c in report.checks if c.verdict == VIOLATION}
    assert report.verdict == VIOLATION
    assert EXPECTED[bug] <= flagged, report.to_text()
    # no collateral false alarms from checks that target other failures
    assert "accounting" not in flagged


def test_every_listed_bug_is_planted():
    assert set(EXPECTED) == set(planted.BUGS)


def test_sigma_drop_is_located_in_the_run(claim):
    check = audit(planted.adapter("sigma_drop", claim), checks="noise_variance").check("noise_variance")
    assert "at step(s)" in check.evidence and str(claim.steps - 1) in check.evidence


def test_noiseless_biases_are_named(claim):
    check = audit(planted.adapter("bias_noiseless", claim), checks="noise_variance").check("noise_variance")
    assert "l1.bias" in check.evidence and "l2.bias" in check.evidence and "weight" not in check.evidence.split(";")[0]


def test_noise_repeated_across_runs_is_named(claim):
    check = audit(planted.adapter("step_seeded_noise", claim), checks="fresh_noise").check("fresh_noise")
    assert check.verdict == VIOLATION and "across runs" in check.evidence


@pytest.mark.parametrize("kind", planted.BLIND)
def test_trainer_the_gradients_never_reach_is_inconclusive(kind, claim):
    """A private trainer that ignores the given loss_fn (or the batch) is never called a
    violation, and the checks that need the audit's gradients say why they cannot decide."""
    report = audit(planted.adapter(kind, claim), runs=20, canaries=40, canary_steps=4)
    verdicts = {c.name: c.verdict for c in report.checks}
    assert VIOLATION not in verdicts.values(), report.to_text()
    assert report.verdict == "inconclusive"
    for name in ("sensitivity", "canary_multi_run", "canary_one_run"):
        assert verdicts[name] == "inconclusive", report.to_text()
        assert "reach" in report.check(name).evidence


HAS_OPACUS = importlib.util.find_spec("opacus") is not None


@pytest.mark.parametrize("make", [
    lambda c: planted.adapter("correct", c),
    ReferenceAdapter,
    pytest.param(OpacusAdapter, marks=pytest.mark.skipif(not HAS_OPACUS, reason="opacus extra not installed")),
], ids=["plain-torch", "reference", "opacus"])
def test_correct_trainers_pass_everything(make, claim):
    report = audit(make(claim), runs=30, canaries=100, canary_steps=5)
    assert [c.verdict for c in report.checks] == [PASS] * len(report.checks), report.to_text()


@pytest.mark.parametrize("seed", range(5))
def test_update_read_back_from_float32_weights_is_not_a_violation(seed, claim):
    """The round-off of an update read back from float32 weights at lr 0.002 (~1e-4 C/B) is
    below the measured comparison floor's tolerance: no false alarm from the exact checks."""
    a = planted.adapter("read_back", claim)
    report = audit(a, checks="sensitivity,per_sample_gradients,noise_variance", seed=seed)
    assert [c.verdict for c in report.checks] == [PASS] * 3, report.to_text()
    # the round-off is real: above the fixed 0.1% part of the tolerance, absorbed by the floor
    assert report.check("per_sample_gradients").details["step_max_error_over_C_B"] > 1e-3


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


@pytest.mark.slow
@pytest.mark.parametrize("make", [ReferenceAdapter, pytest.param(
    OpacusAdapter, marks=pytest.mark.skipif(not HAS_OPACUS, reason="opacus extra not installed"))],
    ids=["reference", "opacus"])
def test_no_false_alarm_over_seeds_at_the_default_confidence(make):
    """Default audits (every check, confidence 0.999) of a correct trainer over 20 seeds:
    no violation (bench/audit.py --part alarms runs 100 seeds)."""
    from dpaudit.audit import Claim

    claim = Claim.create(noise_multiplier=1.0, steps=20, sample_rate=0.1, dataset_size=100)
    flagged = {s: [c.name for c in audit(make(claim), seed=s).checks if c.verdict == VIOLATION] for s in range(20)}
    assert not any(flagged.values()), flagged
