"""The canary audits: the batched instrument against the per-run loop, the report's
interface (epsilon_lower_bound / method / p_value), ceilings, progress, the trade-off
figure, and the statistical tests' level in the regimes users run."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from scipy import stats

from dpaudit.audit import PASS, VIOLATION, Claim, ReferenceAdapter, StepAdapter, audit, probes
from dpaudit.audit.canaries import canary_audit, multi_run_data
from dpaudit.audit.one_run import one_run_audit
from dpaudit.audit.simulate import PRESENCE, presence
from tests.audit import planted

#: Full-batch Gaussian claim: 2 steps, sigma = sqrt(2)/0.5016 (eps = 2 at 1e-5).
FULL = Claim(epsilon=2.0, delta=1e-5, sample_rate=1.0, noise_multiplier=2**0.5 / 0.5016, clip=1.0, steps=2,
             dataset_size=4)
SMALL = Claim(epsilon=4.0, delta=1e-5, sample_rate=0.1, noise_multiplier=1.0, clip=1.0, steps=6, dataset_size=100)


def _correct(claim: Claim, batched: bool) -> StepAdapter:
    a = planted.adapter("correct", claim)
    return replace(a, batched=batched)


def test_batched_runs_have_the_law_of_single_runs():
    """Under the claim the coordinates of the batched instrument are independent runs: their
    scores have the same law as runs simulated one by one (two-sample KS, per world)."""
    loop = multi_run_data(_correct(SMALL, False), runs=100, seed=1)
    batched = multi_run_data(_correct(SMALL, True), runs=1000, seed=2)
    assert batched.batched and not loop.batched
    for a, b in ((loop.s_in, batched.s_in), (loop.s_out, batched.s_out)):
        assert stats.ks_2samp(a, b).pvalue > 1e-3
    # and the scores of the two worlds differ as the claim says (canary effect 1 C/B)
    d, se = batched.effect.estimate()
    assert abs(d - 1.0) < 5 * se


@pytest.mark.parametrize("batching", sorted(PRESENCE))
def test_claimed_samplers_include_each_canary_at_rate_q(batching):
    claim = replace(SMALL, batching=batching, steps=40)
    p = presence(claim, 3000, claim.steps, np.random.default_rng(0))
    assert p.mean() == pytest.approx(claim.batch_size / claim.dataset_size if batching == "shuffle" else 0.1, rel=0.05)
    if batching == "shuffle":  # exactly once per epoch
        spe = -(-claim.dataset_size // claim.batch_size)
        assert np.all(p[:spe].sum(0) == 1)


@pytest.mark.parametrize("batched", [False, True], ids=["loop", "batched"])
def test_no_noise_is_a_violation_and_correct_passes_in_both_instruments(batched):
    bad = canary_audit(replace(planted.adapter("no_noise", FULL), batched=batched), alpha=0.05, runs=100)
    assert bad.verdict == VIOLATION and bad.details["epsilon_lower_bound"] > FULL.epsilon
    good = canary_audit(_correct(FULL, batched), alpha=0.05, runs=100)
    assert good.verdict == PASS and good.details["epsilon_lower_bound"] <= FULL.epsilon
    claim = replace(FULL, dataset_size=400)
    bad1 = one_run_audit(replace(planted.adapter("no_noise", claim), batched=batched), alpha=0.05, canaries=400)
    assert bad1.verdict == VIOLATION and bad1.details["method"] == "fdp-one-run"


def test_half_sigma_is_caught_by_the_multi_run_audit():
    """The f-DP test has power against a modest leak (sigma halved: eps 2 -> ~4.6)."""
    r = canary_audit(replace(planted.adapter("half_sigma", FULL), batched=True), alpha=1e-3, runs=5000)
    assert r.verdict == VIOLATION and r.details["p_value"] < 1e-3


def test_interface_of_the_canary_checks():
    report = audit(ReferenceAdapter(FULL), checks="audits", runs=500, canaries=500)
    d = json.loads(report.to_json())
    for c in d["checks"]:
        det = c["details"]
        assert {"epsilon_lower_bound", "method", "p_value"} <= set(det)
        assert c["p_value"] == det["p_value"]
    multi = report.check("canary_multi_run").details
    assert multi["method"] == "fdp-multi-run" and multi["cp_bonferroni"]["method"] == "cp-bonferroni"
    assert multi["mu_lower"] is not None and multi["mu_lower"] <= 0.5016  # Gaussian claim: equivalent mu
    assert report.check("canary_one_run").details["method"] == "fdp-one-run"


def test_gdp_mu_and_eps_lb_agree_for_a_gaussian_claim():
    r = canary_audit(ReferenceAdapter(FULL), alpha=0.05, runs=4000)
    from dpaudit.accounting.gaussian import gaussian_epsilon

    mu = r.details["mu_lower"]
    assert r.details["epsilon_lower_bound"] == pytest.approx(gaussian_epsilon(mu, FULL.delta), rel=1e-6)
    assert 0.2 < mu <= 0.5016


def test_ceiling_is_reported_when_the_runs_cannot_reach_the_claim():
    big = replace(FULL, epsilon=7.7, noise_multiplier=0.25)
    r = canary_audit(ReferenceAdapter(big), alpha=1e-3, runs=10)
    ceiling = r.details["ceiling"]
    assert ceiling["epsilon"] < big.epsilon and ceiling["runs_needed"] > 10
    assert any("cannot certify" in n and str(ceiling["runs_needed"]) in n for n in r.notes)
    one = one_run_audit(ReferenceAdapter(replace(big, dataset_size=100)), alpha=1e-3, canaries=100)
    assert one.details["ceiling"]["epsilon"] < big.epsilon
    assert any("cannot certify" in n for n in one.notes)


def test_progress_callback_reports_every_check(tmp_path):
    seen: dict[str, list[tuple[int, int]]] = {}

    def progress(check: str, done: int, total: int) -> None:
        seen.setdefault(check, []).append((done, total))

    audit(ReferenceAdapter(SMALL), checks="sampler,canary_multi_run", runs=2500, canaries=100, progress=progress)
    assert set(seen) == {"sampler", "canary_multi_run"}
    for events in seen.values():
        assert events[0][0] == 0 and events[-1][0] == events[-1][1]
    assert len(seen["canary_multi_run"]) > 3  # chunks of the batched instrument
    names: list[str] = []
    audit(ReferenceAdapter(SMALL), checks="accounting", progress=names.append)  # one-argument form
    assert names == ["accounting"]


def test_report_folder_holds_the_tradeoff_figure(tmp_path):
    pytest.importorskip("matplotlib")
    report = audit(ReferenceAdapter(FULL), checks="canary_multi_run", runs=300)
    paths = report.write(tmp_path / "r")
    assert sorted(p.split("/")[-1] for p in paths) == ["report.json", "report.md", "tradeoff.png"]
    assert (tmp_path / "r" / "tradeoff.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![trade-off curves](tradeoff.png)" in (tmp_path / "r" / "report.md").read_text()


def test_verdict_wording():
    report = audit(planted.adapter("half_sigma", SMALL), checks="noise_variance,per_sample_gradients")
    text = report.to_text()
    assert "noise_variance        violation at 99.9% confidence (p = " in text
    assert "per_sample_gradients  pass (exact)" in text


def _sampler_claim(q: float, n: int) -> Claim:
    return Claim(epsilon=10.0, delta=1e-6, sample_rate=q, noise_multiplier=1.0, clip=1.0, steps=1000, dataset_size=n)


@pytest.mark.parametrize("q, n", [(0.001, 50_000), (0.01, 2000), (0.3, 40)])
def test_sampler_probe_holds_its_level_where_users_run_it(q, n):
    """A correct Poisson sampler: the exact tests reject in at most about alpha of the
    audits, also at T q = 0.2 where the former chi-square flagged 10% at nominal 0.6%."""
    a = planted.adapter("correct", _sampler_claim(q, n))
    alpha, trials = 0.05, 60
    alarms = sum(probes.sampler_probe(a, alpha=alpha, seed=s).verdict == VIOLATION for s in range(trials))
    assert alarms / trials <= alpha + 3 * (alpha * (1 - alpha) / trials) ** 0.5


def test_sampler_probe_still_sees_shuffling_at_small_q():
    claim = _sampler_claim(0.001, 50_000)
    r = probes.sampler_probe(planted.adapter("shuffle_as_poisson", claim), alpha=1e-4)
    assert r.verdict == VIOLATION


def test_process_executor_failure_is_explained():
    from concurrent.futures.process import BrokenProcessPool

    from dpaudit.audit.runner import _executor_failure

    msg = _executor_failure(BrokenProcessPool("A process in the process pool was terminated abruptly"))
    assert msg is not None and 'if __name__ == "__main__":' in msg
    assert _executor_failure(ValueError("x")) is None
