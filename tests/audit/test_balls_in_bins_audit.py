"""The audit on balls-in-bins claims: claim, reference sampler, sampler check (level and
power), simulated sampler, re-accounting, canary audit and CLI."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest

from dpaudit.audit import PASS, VIOLATION, Claim, StepAdapter, probes
from dpaudit.audit.adapter import (
    ReferenceAdapter,
    balls_in_bins_batches,
    poisson_batches,
    shuffle_batches,
)
from dpaudit.audit.reaccount import accounting_check, independent_epsilons
from dpaudit.audit.sampler_check import multinomial_dispersion_p_values
from dpaudit.audit.simulate import presence, run_batches
from dpaudit.errors import InvalidParameterError
from tests.audit import planted


def _claim(n: int = 100, b: int = 10, steps: int = 200, **kw) -> Claim:
    return Claim.create(noise_multiplier=1.0, steps=steps, batch_size=b, dataset_size=n,
                        batching="balls-in-bins", **kw)


def _sampler(fn):
    def sample(n: int, steps: int, seed: int) -> list[np.ndarray]:
        return fn(n, steps, seed)
    return sample


def test_claim_spellings_divisor_and_round_trip():
    c = _claim(n=1000, b=300, steps=8, epsilon=5.0)
    assert c.batching == "balls_in_bins" and c.batch_size == 300
    assert c.expected_batch_size == pytest.approx(1000 / 4)  # t = ceil(1000/300) = 4 batches of mean N/t
    assert Claim.from_dict(c.to_dict()) == c
    assert Claim(**{**c.to_dict(), "batching": "balls_in_bins"}) == c
    run = c.to_run()
    assert run.batching == "balls_in_bins" and run.steps_per_epoch == 4 and run.total_steps == 8
    assert c.to_run("shuffle").batching == "shuffle"
    with pytest.raises(InvalidParameterError, match="batching"):
        replace(c, batching="balls in bins")
    ledger = {"batching": "balls_in_bins", "dataset_size": 1000, "batch_size": 300, "steps": 8,
              "entries": [{"sigma": 1.0, "q": 0.3, "clip": 1.0}]}
    m = Claim.from_metadata({"epsilon": 5.0, "delta": 1e-5, "ledger": ledger})
    assert m.batching == "balls_in_bins" and m.expected_batch_size == pytest.approx(250.0)


def test_reference_sampler_puts_every_index_once_per_epoch():
    n, b = 103, 10  # t = 11 batches of mean 103/11
    batches = balls_in_bins_batches(n, 25, b, seed=4)
    assert len(batches) == 25
    for e in (0, 11):
        assert np.array_equal(np.sort(np.concatenate(batches[e:e + 11])), np.arange(n))
    tail = np.concatenate(batches[22:])
    assert len(np.unique(tail)) == len(tail)
    sizes = [len(x) for x in batches[:22]]
    assert len(set(sizes)) > 1  # sizes vary (a fixed-size sampler would not)


@pytest.mark.parametrize("n, b, steps", [(100, 10, 200), (60000, 256, 200), (7, 3, 200)])
def test_correct_balls_in_bins_samplers_pass(n, b, steps):
    claim = _claim(n, b, steps)
    ref = ReferenceAdapter(claim)
    r = probes.sampler_probe(ref, alpha=0.01, steps=steps)
    assert r.verdict == PASS, r.evidence
    step = StepAdapter(claim, planted.correct_step,
                       sampler=_sampler(lambda n_, s_, seed: balls_in_bins_batches(n_, s_, b, seed)))
    assert probes.sampler_probe(step, alpha=0.01, steps=steps).verdict == PASS


@pytest.mark.parametrize("n, b", [(100, 10), (60000, 256), (1000, 7)])
def test_shuffling_or_poisson_claimed_as_balls_in_bins_is_caught(n, b):
    claim = _claim(n, b)
    t = math.ceil(n / b)
    shuffled = StepAdapter(claim, planted.correct_step,
                           sampler=_sampler(lambda n_, s_, seed: shuffle_batches(n_, s_, b, seed)))
    r = probes.sampler_probe(shuffled, alpha=1e-4)
    assert r.verdict == VIOLATION and "Multinomial" in r.evidence, r.evidence
    pois = StepAdapter(claim, planted.correct_step,
                       sampler=_sampler(lambda n_, s_, seed: poisson_batches(n_, s_, 1 / t, seed)))
    r = probes.sampler_probe(pois, alpha=1e-4)
    assert r.verdict == VIOLATION and "once in each epoch" in r.evidence


def test_wrong_number_of_batches_is_caught():
    claim = _claim(100, 10)  # t = 10
    nine = StepAdapter(claim, planted.correct_step,
                       sampler=_sampler(lambda n_, s_, seed: balls_in_bins_batches(n_, s_, 12, seed)))  # t = 9
    assert probes.sampler_probe(nine, alpha=1e-4).verdict == VIOLATION


@pytest.mark.parametrize("n, t, steps", [(40, 4, 10), (30, 10, 25), (500, 25, 60)])
def test_multinomial_dispersion_bounds_are_valid(n, t, steps):
    """Both tail bounds hold against the simulated law: P(bound <= a) <= a, and the bound at
    a value is at least the empirical tail probability there (minus 3 standard errors)."""
    rng = np.random.default_rng(11)
    epochs = math.ceil(steps / t)
    trials = 3000
    sizes = rng.multinomial(n, [1 / t] * t, size=(trials, epochs)).reshape(trials, -1)[:, :steps].astype(float)
    d = np.sum((sizes - n / t) ** 2, axis=1)
    for a in (0.05, 0.2, 0.5):
        for lo_tail, q in ((True, a), (False, 1 - a)):
            x = float(np.quantile(d, q))
            idx = int(np.argmin(np.abs(d - x)))
            lo, hi = multinomial_dispersion_p_values(sizes[idx], n, t, epochs)
            emp = float(np.mean(d <= d[idx])) if lo_tail else float(np.mean(d >= d[idx]))
            bound = lo if lo_tail else hi
            assert bound >= emp - 3 * math.sqrt(emp * (1 - emp) / trials), (a, lo_tail, bound, emp)


@pytest.mark.parametrize("n, b", [(100, 10), (2000, 64)])
def test_sampler_check_false_alarm_rate_stays_at_its_level(n, b):
    claim = _claim(n, b)
    a = ReferenceAdapter(claim)
    alpha, trials = 0.05, 40
    alarms = sum(probes.sampler_probe(a, alpha=alpha, seed=s).verdict == VIOLATION for s in range(trials))
    assert alarms / trials <= alpha + 3 * (alpha * (1 - alpha) / trials) ** 0.5


def test_simulated_sampler_and_presence():
    claim = _claim(100, 10, steps=25)
    adapter = StepAdapter(claim, planted.correct_step)  # no sampler: the claimed one is simulated
    batches, own = run_batches(adapter, claim, 100, 25, seed=2)
    assert not own and len(batches) == 25
    assert np.array_equal(np.sort(np.concatenate(batches[:10])), np.arange(100))
    pres = presence(claim, 500, 25, np.random.default_rng(0))
    assert np.all(pres[:10].sum(axis=0) == 1) and np.all(pres[10:20].sum(axis=0) == 1)
    assert np.all(pres[20:].sum(axis=0) <= 1)
    share = pres[:20].mean()
    assert share == pytest.approx(0.1, abs=0.01)  # each batch with probability 1/t


def test_reaccounting_a_balls_in_bins_claim():
    claim = Claim.create(noise_multiplier=1.1, steps=470, batch_size=256, dataset_size=60000,
                         batching="balls_in_bins")
    figs, _ = independent_epsilons(claim)
    assert min(figs, key=figs.__getitem__) == "dpaudit:pld"
    assert figs["dp_accounting:pld"] > figs["dpaudit:pld"]  # the no-amplification view: sound, looser
    r = accounting_check(claim)
    assert r.verdict == PASS and r.details["epsilon_if_shuffle"] > 2 * claim.epsilon
    poisson = Claim.create(noise_multiplier=1.1, steps=470, batch_size=256, dataset_size=60000).epsilon
    assert claim.epsilon <= poisson * 1.05
    assert accounting_check(replace(claim, epsilon=0.5 * claim.epsilon)).verdict == VIOLATION


def test_canary_audit_passes_a_correct_balls_in_bins_trainer():
    from dpaudit.audit.canaries import canary_audit

    claim = _claim(n=40, b=20, steps=4)
    good = canary_audit(ReferenceAdapter(claim), alpha=0.05, runs=200)
    assert good.verdict == PASS, good.evidence
    bad = canary_audit(planted.adapter("no_noise", claim), alpha=0.05, runs=100)
    assert bad.verdict == VIOLATION


def test_cli_audit_balls_in_bins(capsys):
    from click.testing import CliRunner

    from cli.main import cli

    res = CliRunner().invoke(cli, ["audit", "--batching", "balls-in-bins", "--dataset-size", "1000",
                                   "--batch-size", "100", "--noise-multiplier", "1.0", "--steps", "30",
                                   "--checks", "accounting,sampler", "--executor", "inline", "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output[res.output.index("{"):])
    assert d["claim"]["batching"] == "balls_in_bins"
    assert {c["name"]: c["verdict"] for c in d["checks"]} == {"accounting": "pass", "sampler": "pass"}
