"""Private data normalisation: per-member sensitivity, noise scale, the layer, and the charge
in the budget (cross-checked with dp-accounting)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dpaudit.errors import InvalidParameterError
from dpaudit.training.budget import PrivacyBudget
from dpaudit.training.datanorm import (
    clipped_moment_sums,
    exact_channel_stats,
    ledger_release,
    private_channel_stats,
)
from dpaudit.training.models import DataStandardize


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 12), k=st.integers(1, 5), scale=st.floats(0.01, 50.0),
       c_m=st.floats(0.05, 3.0), c_s=st.floats(0.05, 3.0), seed=st.integers(0, 2**16))
def test_one_member_moves_each_sum_by_at_most_its_bound(n, k, scale, c_m, c_s, seed):
    """Add/remove sensitivity of both released sums (module docstring): removing any one
    member changes each by an L2 norm <= its clip bound."""
    x = torch.from_numpy(np.random.default_rng(seed).normal(0, scale, (n, k, 3, 3)))
    sm, ss, _ = clipped_moment_sums(x, c_m, c_s)
    for i in range(n):
        rest = torch.cat([x[:i], x[i + 1:]])
        sm2, ss2, _ = clipped_moment_sums(rest, c_m, c_s)
        assert float((sm - sm2).norm()) <= c_m * (1 + 1e-9)
        assert float((ss - ss2).norm()) <= c_s * (1 + 1e-9)


def test_exact_statistics_and_rows():
    rng = np.random.default_rng(0)
    x = rng.normal(1.0, 2.0, (50, 3, 4, 4)).astype(np.float32)
    rows = np.arange(0, 50, 2)
    mean, var = exact_channel_stats(x, rows=rows)
    sub = x[rows].transpose(1, 0, 2, 3).reshape(3, -1).astype(np.float64)
    # per-example spatial means, then averaged over examples: the channel mean
    assert np.allclose(mean.numpy(), sub.mean(1), atol=1e-5)
    expect_var = (x[rows].reshape(25, 3, -1) ** 2).mean(2).mean(0) - sub.mean(1) ** 2
    assert np.allclose(var.numpy(), expect_var, atol=1e-4)


def test_noise_has_the_stated_scale():
    """Unclipped data, many draws: std of the released mean is sigma C_m / N."""
    x = torch.full((20, 2, 2, 2), 0.1, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([private_channel_stats(x, noise_multiplier=2.0, clip_mean=0.5, clip_sq=0.25,
                                               generator=g)[0] for _ in range(1000)]).double()
    sd = 2.0 * 0.5 / 20  # sigma C_m / N
    assert (draws.mean(0) - 0.1).abs().max() < 4 * sd / math.sqrt(1000)
    assert (draws.std(0) / sd - 1).abs().max() < 0.1


def test_bad_parameters_refused():
    x = torch.zeros(3, 2, 2, 2)
    g = torch.Generator()
    for kw in ({"noise_multiplier": 0.0}, {"clip_mean": -1.0}, {"clip_sq": 0.0}):
        args = {"noise_multiplier": 1.0, "clip_mean": 1.0, "clip_sq": 1.0, **kw}
        with pytest.raises(InvalidParameterError):
            private_channel_stats(x, generator=g, **args)
    with pytest.raises(InvalidParameterError):
        private_channel_stats(torch.zeros(0, 2, 2, 2), noise_multiplier=1.0, clip_mean=1.0,
                              clip_sq=1.0, generator=g)


def test_standardize_layer():
    layer = DataStandardize(3)
    x = torch.randn(4, 3, 2, 2)
    assert torch.allclose(layer(x), x / math.sqrt(1 + 1e-5))  # identity statistics
    layer.set_statistics(torch.tensor([1.0, 0.0, -1.0]), torch.tensor([4.0, 0.0, 1.0]))
    y = layer(x)
    assert torch.allclose(y[:, 0], (x[:, 0] - 1) / math.sqrt(4 + 1e-5))
    assert torch.equal(y[:, 1], torch.zeros_like(y[:, 1]))  # zero variance: channel dropped
    assert set(layer.state_dict()) == {"mean", "var"}  # saved with the model
    with pytest.raises(InvalidParameterError):
        layer.set_statistics(torch.zeros(2), torch.ones(2))


def _dp_accounting_epsilon(q, sigma, steps, sigma_norm, delta):
    import dp_accounting
    from dp_accounting.pld import pld_privacy_accountant

    acc = pld_privacy_accountant.PLDAccountant(value_discretization_interval=1e-3)
    acc.compose(dp_accounting.GaussianDpEvent(sigma_norm), 2)
    acc.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps)
    return acc.get_epsilon(delta)


def test_budget_charges_the_release_and_matches_dp_accounting():
    pytest.importorskip("dp_accounting")
    n, b, epochs, delta = 6000, 600, 3, 1e-5
    plain = PrivacyBudget.for_target(2.0, delta, dataset_size=n, batch_size=b, epochs=epochs,
                                     batching="poisson", accountant="pld", clip=1.0)
    charged = PrivacyBudget.for_target(2.0, delta, dataset_size=n, batch_size=b, epochs=epochs,
                                       batching="poisson", accountant="pld", clip=1.0,
                                       initial_releases=(ledger_release(8.0),))
    s_plain = plain.sigma_for_epoch(0)
    s_charged = charged.sigma_for_epoch(0)
    assert s_charged > s_plain  # the statistics cost budget: more gradient noise
    assert charged.ledger.extra == [{"sample_rate": 1.0, "noise_multiplier": 8.0, "count": 2,
                                     "note": ledger_release(8.0)[3]}]
    for e in range(epochs):
        assert charged.may_run_epoch(e, s_charged)
        charged.ledger.record_epoch(s_charged, 1.0)
        charged.end_epoch()
    final = charged.final_report()
    assert final is not None and final.epsilon <= 2.0 + 1e-9
    ref = _dp_accounting_epsilon(b / n, s_charged, epochs * 10, 8.0, delta)
    assert abs(final.epsilon - ref) < 0.02, (final.epsilon, ref)
    # the same sigma without the charge spends visibly less
    assert _dp_accounting_epsilon(b / n, s_charged, epochs * 10, 1e9, delta) < ref - 0.05


def test_saved_plan_is_followed_with_the_ledger_accounted():
    """A plan solved without the release: epochs are accounted from the ledger (which holds
    the release), so the run stops before the target is exceeded."""
    from dpaudit.training.budget import plan_noise

    plan = plan_noise(1.0, 1e-5, dataset_size=6000, batch_size=600, epochs=3, batching="poisson",
                      accountant="pld")
    b = PrivacyBudget.from_plan(plan, clip=1.0, initial_releases=(ledger_release(8.0),))
    assert not b.plan_has_initial
    ran = 0
    for e in range(3):
        if not b.may_run_epoch(e, b.sigma_for_epoch(e)):
            break
        b.ledger.record_epoch(b.sigma_for_epoch(e), 1.0)
        b.end_epoch()
        ran += 1
    assert 1 <= ran < 3 and "stopped before epoch" in b.stop_reason
    assert b.final_report().epsilon <= 1.0
