"""Unit tests of the probes, the canary audits, the claim and the report."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from dpaudit.audit import INCONCLUSIVE, PASS, VIOLATION, Claim, StepAdapter, audit, probes
from dpaudit.audit.canaries import canary_audit, canary_scores
from dpaudit.audit.one_run import one_run_audit
from dpaudit.errors import InvalidParameterError
from tests.audit import planted


def _global_rng_step(model, x, y, *, loss_fn, generator, step, claim):
    """Correct DP-SGD that ignores the audit's generator (draws from torch's global RNG)."""
    s = planted._clip_sum(planted.per_sample(model, x, y, loss_fn), claim.clip)
    return (s + claim.noise_multiplier * claim.clip * torch.randn(s.numel())) / claim.expected_batch_size


def _global_rng_no_clip(model, x, y, *, loss_fn, generator, step, claim):
    s = planted.per_sample(model, x, y, loss_fn).sum(0)
    return (s + claim.noise_multiplier * claim.clip * torch.randn(s.numel())) / claim.expected_batch_size


def test_claim_validation():
    good = dict(epsilon=1.0, delta=1e-5, sample_rate=0.1, noise_multiplier=1.0, clip=1.0, steps=10,
                dataset_size=1000)
    assert Claim(**good).expected_batch_size == pytest.approx(100.0)
    for key, bad in [("delta", 1.0), ("sample_rate", 0.0), ("noise_multiplier", -1.0), ("clip", 0.0),
                     ("steps", 0), ("batching", "random"), ("epsilon", float("nan")), ("dataset_size", -5),
                     ("dataset_size", 2.5), ("expected_batch_size", -1.0)]:
        with pytest.raises(InvalidParameterError):
            Claim(**{**good, key: bad})
    c = Claim(**good)
    assert Claim.from_dict(c.to_dict()) == c


def test_claim_needs_dataset_size_or_batch_size():
    """B = q*N divides the update: without N or B the claim is refused, never N = 1/q."""
    base = dict(epsilon=1.0, delta=1e-5, sample_rate=0.1, noise_multiplier=1.0, clip=1.0, steps=10)
    with pytest.raises(InvalidParameterError, match="dataset size N or the expected batch size"):
        Claim(**base)
    with pytest.raises(InvalidParameterError, match="dataset size N"):
        Claim(**base, dataset_size=None)
    from_b = Claim(**base, expected_batch_size=25.0)
    assert (from_b.dataset_size, from_b.expected_batch_size) == (250, 25.0)


def test_claim_create_defaults_to_the_tightest_accountant():
    from dpaudit.accounting import TIGHTEST, epsilon

    c = Claim.create(noise_multiplier=1.0, steps=20, sample_rate=0.1, dataset_size=100)
    assert c.epsilon == pytest.approx(epsilon(c.to_run(), 1e-5, TIGHTEST).epsilon)
    assert c.epsilon == pytest.approx(3.59, abs=0.01)  # dp-accounting's PLD gives 3.59 too
    by_sizes = Claim.create(noise_multiplier=1.0, steps=20, batch_size=10, dataset_size=100, epsilon=5.0)
    assert (by_sizes.sample_rate, by_sizes.expected_batch_size, by_sizes.epsilon) == (0.1, 10.0, 5.0)
    for kwargs, msg in [
        (dict(noise_multiplier=None, steps=20, sample_rate=0.1, dataset_size=100), "noise multiplier"),
        (dict(noise_multiplier=1.0, steps=20, batch_size=10), "sample rate, or the batch size and the dataset"),
        (dict(noise_multiplier=1.0, steps=20, batch_size=200, dataset_size=100), "batch size <= dataset size"),
        (dict(noise_multiplier=1.0, steps=20, sample_rate=0.1), "dataset size N"),
    ]:
        with pytest.raises(InvalidParameterError, match=msg):
            Claim.create(**kwargs)


def test_noise_variance_false_alarm_rate_is_at_most_alpha(claim):
    a = planted.adapter("correct", claim)
    alarms = sum(probes.noise_variance_probe(a, alpha=0.2, seed=s, calls=1).verdict == VIOLATION
                 for s in range(60))
    assert alarms / 60 <= 0.2 + 3 * (0.2 * 0.8 / 60) ** 0.5


def test_noise_variance_sees_a_small_sigma_deficit(claim):
    # 20% less noise than claimed is caught with 16 x 64 observations
    a = StepAdapter(claim, planted.correct_step, name="x")
    lower = replace(claim, noise_multiplier=1.25)
    r = probes.noise_variance_probe(StepAdapter(lower, _scaled_step), alpha=0.01)
    assert r.verdict == VIOLATION
    assert probes.noise_variance_probe(a, alpha=0.01).verdict == PASS


def _scaled_step(model, x, y, *, loss_fn, generator, step, claim):
    """Noise sigma = 1.0 while the claim says 1.25."""
    return planted.correct_step(model, x, y, loss_fn=loss_fn, generator=generator, step=step,
                                claim=replace(claim, noise_multiplier=1.0))


def test_sensitivity_without_generator_control_is_statistical(claim):
    ok = probes.sensitivity_probe(StepAdapter(claim, _global_rng_step), alpha=0.01)
    bad = probes.sensitivity_probe(StepAdapter(claim, _global_rng_no_clip), alpha=0.01)
    assert ok.verdict == PASS and ok.details["deterministic"] is False and ok.confidence == pytest.approx(0.99)
    assert bad.verdict == VIOLATION


def test_per_sample_probe_needs_determinism_or_a_method(claim):
    r = probes.per_sample_probe(StepAdapter(claim, _global_rng_step), alpha=0.01)
    assert r.verdict == INCONCLUSIVE
    r = probes.per_sample_probe(StepAdapter(claim, _global_rng_step, per_sample_fn=planted.per_sample), alpha=0.01)
    assert r.verdict == PASS


def test_sampler_probe(claim):
    assert probes.sampler_probe(StepAdapter(claim, planted.correct_step), alpha=0.01).verdict == INCONCLUSIVE
    wrong_rate = StepAdapter(claim, planted.correct_step, sampler=planted.make_poisson_sampler(0.13))
    r = probes.sampler_probe(wrong_rate, alpha=0.01)
    assert r.verdict == VIOLATION and "sample rate" in r.evidence
    shuffled = replace(claim, batching="shuffle")
    ok = StepAdapter(shuffled, planted.correct_step, sampler=planted._ShuffleSampler(shuffled.batch_size))
    assert probes.sampler_probe(ok, alpha=0.01).verdict == PASS
    poisson_as_shuffle = StepAdapter(shuffled, planted.correct_step, sampler=planted.make_poisson_sampler(0.1))
    assert probes.sampler_probe(poisson_as_shuffle, alpha=0.01).verdict == VIOLATION


#: Full-batch Gaussian claim: 2 steps with sigma = sqrt(2)/mu, mu = 0.5 (eps = 2 at 1e-5).
FULL = Claim(epsilon=2.0, delta=1e-5, sample_rate=1.0, noise_multiplier=2**0.5 / 0.5016, clip=1.0, steps=2,
             dataset_size=4)


def test_multi_run_canary_audit_flags_no_noise_and_passes_correct():
    bad = canary_audit(planted.adapter("no_noise", FULL), alpha=0.05, runs=100)
    d = bad.details
    assert bad.verdict == VIOLATION and d["epsilon_lower_bound"] > FULL.epsilon and d["method"] == "fdp-multi-run"
    assert d["p_value"] < 0.05 and bad.p_value == d["p_value"]
    assert d["cp_bonferroni"]["method"] == "cp-bonferroni" and d["cp_bonferroni"]["epsilon_lower_bound"] <= d["epsilon_lower_bound"]
    good = canary_audit(planted.adapter("correct", FULL), alpha=0.05, runs=100)
    assert good.verdict == PASS and good.details["trainer_sampler"] is True and good.details["batched"] is False
    assert good.details["gdp_estimate"]["mu_lower"] <= 0.5016
    assert good.details["mu_lower"] <= 0.5016 and good.details["p_value"] > 0.05


def test_one_run_audit_flags_no_noise_and_passes_correct():
    claim = replace(FULL, dataset_size=400)
    r = one_run_audit(planted.adapter("no_noise", claim), alpha=0.05, canaries=400)
    assert r.verdict == VIOLATION
    assert r.details["method"] == "fdp-one-run" and r.details["p_value"] < 0.05
    r = one_run_audit(planted.adapter("correct", claim), alpha=0.05, canaries=400)
    assert r.verdict == PASS and 0 <= r.details["epsilon_lower_bound"] <= claim.epsilon


def test_executors_give_identical_scores(claim):
    a = planted.adapter("correct", replace(claim, steps=3))
    inline = canary_scores(a, runs=6, seed=3, executor="inline")
    thread = canary_scores(a, runs=6, seed=3, executor="thread", workers=2)
    np.testing.assert_allclose(inline[0], thread[0])
    np.testing.assert_allclose(inline[1], thread[1])


def test_report_renders_and_writes(tmp_path, claim):
    report = audit(planted.adapter("half_sigma", claim), checks="noise_variance,sampler")
    d = json.loads(report.to_json())
    assert d["verdict"] == VIOLATION and [c["name"] for c in d["checks"]] == ["noise_variance", "sampler"]
    assert "| noise_variance | violation at 99.95% confidence (p = " in report.to_markdown()  # 2 statistical checks
    assert "VIOLATION" in report.to_text()
    paths = report.write(str(tmp_path / "out"))
    assert json.loads((tmp_path / "out" / "report.json").read_text())["verdict"] == VIOLATION
    assert len(paths) == 2


def test_bad_audit_arguments(claim):
    a = planted.adapter("correct", claim)
    with pytest.raises(InvalidParameterError):
        audit(a, checks="nonsense")
    with pytest.raises(InvalidParameterError):
        audit(a, confidence=1.0)


def test_crashing_trainer_is_inconclusive_not_pass(claim):
    def boom(*args, **kwargs):
        raise RuntimeError("no such layer")

    r = audit(StepAdapter(claim, boom), checks="sensitivity,noise_variance")
    assert [c.verdict for c in r.checks] == [INCONCLUSIVE, INCONCLUSIVE]
    assert r.verdict == INCONCLUSIVE


def test_accounting_agrees_across_libraries_and_names_the_shuffle_bug(claim):
    from dpaudit.audit.reaccount import accounting_check, independent_epsilons

    figs, _ = independent_epsilons(claim)
    assert figs["dp_accounting:pld"] <= figs["dp_accounting:rdp"]
    if "dpaudit:pld" in figs:  # dpaudit's and dp-accounting's PLD compute the same thing
        assert figs["dpaudit:pld"] == pytest.approx(figs["dp_accounting:pld"], rel=0.02)
    poisson_eps = min(figs.values())
    shuffled = replace(claim, batching="shuffle", epsilon=poisson_eps * 1.001)
    r = accounting_check(shuffled)
    assert r.verdict == VIOLATION and "accounted as Poisson" in r.evidence
    assert r.details["certified_epsilon"] > 1.5 * poisson_eps
    assert accounting_check(replace(shuffled, epsilon=r.details["certified_epsilon"])).verdict == PASS
