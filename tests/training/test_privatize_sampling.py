"""Noise scale of the Gaussian step and the batch samplers' distributions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from dpaudit.errors import InvalidParameterError
from dpaudit.training.clipping import clipped_grad_sum
from dpaudit.training.models import build_model
from dpaudit.training.privatize import add_noise, noisy_gradient
from dpaudit.training.sampling import PoissonSampler, ShuffleSampler, make_sampler

torch.set_num_threads(1)


def _zero_loss(logits, y):
    return (logits * 0.0).sum(1)  # per-example gradients are exactly zero


@pytest.mark.parametrize("sigma,clip,eb", [(1.0, 1.0, 1.0), (2.5, 0.3, 64.0), (0.7, 4.0, 12.5)])
def test_noise_variance_on_zero_gradients_is_sigma2_c2(sigma, clip, eb):
    model = build_model("mlp", (1, 28, 28), 10, hidden=[256])  # ~200k parameters
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    gen = torch.Generator().manual_seed(0)
    g = noisy_gradient(model, x, y, clip=clip, noise_multiplier=sigma, expected_batch_size=eb,
                       generator=gen, loss_fn=_zero_loss)
    v = torch.cat([t.flatten() for t in g]).double() * eb  # undo the division: the noisy sum
    n = v.numel()
    target = (sigma * clip) ** 2
    # sample variance of n normals: relative sd sqrt(2/n) ~ 0.3%; allow 6 sd
    assert abs(float(v.var()) / target - 1) < 6 * (2 / n) ** 0.5
    assert abs(float(v.mean())) < 6 * sigma * clip / n**0.5
    # and it is Gaussian (Kolmogorov-Smirnov on a subsample)
    sub = v[:: max(1, n // 5000)].numpy() / (sigma * clip)
    assert stats.kstest(sub, "norm").pvalue > 1e-4


def test_zero_noise_divides_clipped_sum_by_expected_batch_size():
    model = build_model("logreg", (1, 8, 8), 10)
    x, y = torch.rand(5, 1, 8, 8), torch.randint(0, 10, (5,))
    sums, _ = clipped_grad_sum(model, x, y, 0.5)
    g = noisy_gradient(model, x, y, clip=0.5, noise_multiplier=0.0, expected_batch_size=7.0)
    for a, b in zip(g, sums):
        torch.testing.assert_close(a, b / 7.0)


def test_noise_is_added_once_to_the_sum_not_per_example():
    # Doubling the batch (same examples twice) doubles the signal but not the noise.
    model = build_model("logreg", (1, 8, 8), 10)
    x, y = torch.rand(3, 1, 8, 8), torch.randint(0, 10, (3,))
    gen = torch.Generator().manual_seed(1)
    z = add_noise([torch.zeros(100_000)], clip=2.0, noise_multiplier=1.5, expected_batch_size=1.0,
                  generator=gen)[0]
    assert abs(float(z.std()) - 3.0) < 0.05
    del model, x, y


@pytest.mark.parametrize("bad", [{"noise_multiplier": -1.0}, {"noise_multiplier": float("nan")},
                                 {"expected_batch_size": 0.0}])
def test_add_noise_rejects_bad_values(bad):
    kw = {"clip": 1.0, "noise_multiplier": 1.0, "expected_batch_size": 1.0, **bad}
    with pytest.raises(InvalidParameterError):
        add_noise([torch.zeros(2)], **kw)


def test_poisson_batch_sizes_follow_binomial():
    n, q, draws = 500, 0.03, 4000
    s = PoissonSampler(n, q, rng=0)
    sizes = np.array([len(s.sample()) for _ in range(draws)])
    # chi-square goodness of fit against Binomial(n, q), bins with expected count >= 5
    k = np.arange(0, n + 1)
    pmf = stats.binom.pmf(k, n, q)
    keep = pmf * draws >= 5
    lo, hi = k[keep].min(), k[keep].max()
    obs = np.array([(sizes <= lo).sum()] + [(sizes == v).sum() for v in range(lo + 1, hi)]
                   + [(sizes >= hi).sum()])
    exp = np.array([stats.binom.cdf(lo, n, q)] + [pmf[v] for v in range(lo + 1, hi)]
                   + [stats.binom.sf(hi - 1, n, q)]) * draws
    assert stats.chisquare(obs, exp).pvalue > 1e-4
    assert abs(sizes.mean() - n * q) < 5 * (n * q * (1 - q) / draws) ** 0.5


def test_poisson_each_example_included_with_probability_q_independently():
    n, q, draws = 50, 0.2, 4000
    s = PoissonSampler(n, q, rng=1)
    counts = np.zeros(n)
    both = 0
    for _ in range(draws):
        b = s.sample()
        counts[b] += 1
        both += (0 in b) and (1 in b)
    freq = counts / draws
    assert np.all(np.abs(freq - q) < 5 * (q * (1 - q) / draws) ** 0.5)
    assert abs(both / draws - q * q) < 5 * (q * q / draws) ** 0.5  # pairwise independence


def test_poisson_empty_batches_happen_and_are_arrays():
    s = PoissonSampler(10, 0.01, rng=0)
    batches = [s.sample() for _ in range(200)]
    assert any(len(b) == 0 for b in batches)
    assert all(b.dtype.kind == "i" for b in batches)
    assert len(list(s.epoch())) == s.steps_per_epoch == 100


@given(n=st.integers(1, 300), b=st.integers(1, 300), seed=st.integers(0, 1000))
def test_shuffle_batches_are_a_partition(n, b, seed):
    b = min(b, n)
    s = ShuffleSampler(n, b, rng=seed)
    batches = list(s.epoch())
    assert len(batches) == s.steps_per_epoch == -(-n // b)
    assert all(len(x) == b for x in batches[:-1]) and 1 <= len(batches[-1]) <= b
    assert sorted(np.concatenate(batches).tolist()) == list(range(n))


def test_make_sampler_matches_run_steps_per_epoch():
    from dpaudit.accounting import DpSgdRun

    for batching in ("poisson", "shuffle"):
        s = make_sampler(batching, 1000, 64, rng=0)
        run = DpSgdRun.create(noise_multiplier=1.0, dataset_size=1000, batch_size=64, epochs=1,
                              batching=batching)
        assert s.steps_per_epoch == run.steps_per_epoch
        assert s.expected_batch_size == pytest.approx(64)
    with pytest.raises(InvalidParameterError):
        make_sampler("random", 10, 2)
    with pytest.raises(InvalidParameterError):
        make_sampler("poisson", 10, 20)
