"""The balls-in-bins sampler: every example exactly once per epoch, t = ceil(N/B) batches
with Multinomial sizes, the constant the update divides by, and the ledger's run."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dpaudit.accounting import DpSgdRun, steps_per_epoch
from dpaudit.training.config import TrainConfig, resolve_config
from dpaudit.training.ledger import PrivacyLedger
from dpaudit.training.sampling import BallsInBinsSampler, make_sampler


@pytest.mark.parametrize("n,b", [(1000, 64), (60000, 256), (10, 10), (7, 3)])
def test_each_example_exactly_once_per_epoch(n, b):
    s = BallsInBinsSampler(n, b, rng=0)
    assert s.steps_per_epoch == math.ceil(n / b) == steps_per_epoch("balls_in_bins", dataset_size=n, batch_size=b)
    assert s.expected_batch_size == pytest.approx(n / s.steps_per_epoch)
    for _ in range(3):
        batches = list(s.epoch())
        assert len(batches) == s.steps_per_epoch == len(s)
        allidx = np.concatenate(batches)
        assert allidx.dtype == np.int64 and np.array_equal(np.sort(allidx), np.arange(n))


def test_batch_sizes_are_multinomial():
    """Sizes of one batch over epochs: Binomial(N, 1/t) mean and variance (z-tests at
    ~5 sigma); the sizes of an epoch sum to N; the joint law is exchangeable across batches."""
    n, b, epochs = 2000, 100, 400
    s = BallsInBinsSampler(n, b, rng=np.random.default_rng(3))
    t = s.steps_per_epoch
    sizes = np.array([[len(x) for x in s.epoch()] for _ in range(epochs)])
    assert (sizes.sum(axis=1) == n).all()
    p = 1.0 / t
    mean, var = n * p, n * p * (1 - p)
    col_means = sizes.mean(axis=0)
    assert abs(col_means.mean() - mean) < 5 * math.sqrt(var / (epochs * t))
    assert sizes.var(ddof=1) == pytest.approx(var, rel=0.1)
    # pairwise covariance of two batches is -N p^2 (multinomial)
    cov = np.cov(sizes[:, 0], sizes[:, 1])[0, 1]
    assert cov == pytest.approx(-n * p * p, abs=5 * var / math.sqrt(epochs))


def test_allocation_is_uniform_and_independent_across_epochs():
    n, b = 500, 50
    s = BallsInBinsSampler(n, b, rng=7)
    first = s.assign()
    counts = np.bincount(first, minlength=s.steps_per_epoch)
    chi2 = float(((counts - n / s.steps_per_epoch) ** 2 / (n / s.steps_per_epoch)).sum())
    assert chi2 < 40.0  # chi^2 with 9 degrees of freedom: P(> 40) < 1e-5
    assert not np.array_equal(first, s.assign())


def test_make_sampler_spellings_and_seed_reproducible():
    for spelling in ("balls-in-bins", "balls_in_bins"):
        s = make_sampler(spelling, 300, 32, rng=11)
        assert isinstance(s, BallsInBinsSampler) and s.batching == "balls_in_bins"
    a = [x.tolist() for x in make_sampler("balls-in-bins", 300, 32, rng=11).epoch()]
    b = [x.tolist() for x in make_sampler("balls_in_bins", 300, 32, rng=11).epoch()]
    assert a == b


def test_ledger_records_the_balls_in_bins_run():
    led = PrivacyLedger(1000, 64, "balls-in-bins")
    for _ in range(3):
        led.record_epoch(1.2, 1.0)
    run = led.to_run()
    assert run == DpSgdRun.create(dataset_size=1000, batch_size=64, noise_multiplier=1.2, epochs=3,
                                  batching="balls_in_bins")
    assert PrivacyLedger.from_dict(led.to_dict()).to_run() == run
    assert led.to_dict()["relation"] == "add_remove"


def test_config_normalises_the_spelling():
    cfg = resolve_config(TrainConfig(dataset="digits", batching="balls-in-bins", noise_multiplier=1.0))
    assert cfg.batching == "balls_in_bins"


def test_balls_in_bins_training_run_records_and_reaccounts(tmp_path):
    """A short digits run: the ledger holds the balls-in-bins run, the model file's epsilon
    is the pld random-allocation figure of that run, and it is below the shuffled view."""
    import torch

    from dpaudit.accounting import get_accountant
    from dpaudit.training import train

    torch.set_num_threads(1)
    res = train(TrainConfig(dataset="digits", batching="balls-in-bins", noise_multiplier=1.5, epochs=2),
                progress=False)
    meta = res.metadata
    run = PrivacyLedger.from_dict(meta["ledger"]).to_run()
    assert meta["batching"] == run.batching == "balls_in_bins"
    assert run.steps_per_epoch == math.ceil(1437 / 128) and run.total_steps == 2 * run.steps_per_epoch
    eps = get_accountant("pld").epsilon(run, meta["delta"]).epsilon
    assert meta["epsilon"] == pytest.approx(eps, rel=1e-9)
    assert eps < get_accountant("pld").epsilon(run.with_batching("shuffle"), meta["delta"]).epsilon


def test_cli_train_offers_both_spellings():
    from cli.train import train as cmd

    opts = {o.name: o for o in cmd.params}
    assert {"balls-in-bins", "balls_in_bins"} <= set(opts["batching"].type.choices)
