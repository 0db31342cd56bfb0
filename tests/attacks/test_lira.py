"""LiRA: the Gaussian likelihood-ratio test on synthetic shadows, and shadow training."""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses

import numpy as np
import pytest
from scipy.stats import norm

from dpaudit.attacks.lira import InlineExecutor, lira, lira_scores, shadow_assignment, shadow_recipe
from dpaudit.errors import InvalidParameterError
from dpaudit.stats import roc_metrics

pytest.importorskip("torch")


def test_assignment_balanced():
    # Paired halves: every shadow holds exactly half, every example is IN for exactly K/2.
    m = shadow_assignment(8, 1000, np.random.default_rng(0))
    assert m.shape == (8, 1000) and np.all(m.sum(0) == 4) and np.all(m.sum(1) == 500)
    assert np.all(m[0] != m[1])  # complementary pair
    # Other training-set sizes: column-balanced, rows about the size asked for.
    m = shadow_assignment(8, 1000, np.random.default_rng(1), train_size=750)
    assert np.all(m.sum(0) == 6) and 650 < m.sum(1).min() and m.sum(1).max() < 850
    m = shadow_assignment(4, 100, np.random.default_rng(2), train_size=99)
    assert np.all((~m).sum(0) >= 1)  # always at least one OUT shadow


def _synthetic(k=64, n=400, seed=0):
    rng = np.random.default_rng(seed)
    mu_out = rng.normal(0, 2, n)
    gap = 1.5
    mask = shadow_assignment(k, n, rng)
    shadow = mu_out + gap * mask + rng.normal(0, 0.5, (k, n))
    member = np.arange(n) < n // 2
    target = mu_out + gap * member + rng.normal(0, 0.5, n)
    return target, shadow, mask, member


def test_online_matches_gaussian_likelihood_ratio():
    t, s, m, _ = _synthetic()
    got = lira_scores(t, s, m, online=True, global_variance=False)
    i = 7
    sin, sout = s[m[:, i], i], s[~m[:, i], i]
    ref = norm.logpdf(t[i], sin.mean(), sin.std(ddof=1)) - norm.logpdf(
        t[i], sout.mean(), sout.std(ddof=1)
    )
    assert got[i] == pytest.approx(ref, rel=1e-9)
    off = lira_scores(t, s, m, online=False, global_variance=False)
    assert off[i] == pytest.approx((t[i] - sout.mean()) / sout.std(ddof=1), rel=1e-9)



def test_offline_does_not_saturate():
    # Far-out target confidences: Pr[Z < phi] rounds to 1 for all of them (false ties), the
    # z-score keeps them apart and in the same order.
    t, s, m, _ = _synthetic(k=8)
    t = t + 100.0 + np.arange(t.size) * 0.01
    off = lira_scores(t, s, m, online=False)
    assert np.unique(norm.cdf(off)).size == 1
    assert np.unique(off).size == t.size


def test_global_variance_is_pooled_within_example():
    t, s, m, _ = _synthetic(k=4)
    g = lira_scores(t, s, m, online=False, global_variance=True)
    out = np.where(~m, s, np.nan)
    resid = out - np.nanmean(out, 0)
    sd = np.sqrt(np.nansum(resid**2) / (np.sum(~m) - s.shape[1]))
    i = 3
    assert g[i] == pytest.approx((t[i] - np.nanmean(out[:, i])) / sd, rel=1e-9)


def test_lira_beats_uncalibrated_score():
    # Per-example difficulty (mu_out varies) hides membership from a global threshold on phi;
    # LiRA calibrates it away (the point of Carlini et al. 2022).
    t, s, m, member = _synthetic()
    raw = roc_metrics(t[member], t[~member]).auc
    for online in (True, False):
        sc = lira_scores(t, s, m, online=online)
        assert roc_metrics(sc[member], sc[~member]).auc > max(raw + 0.2, 0.9)


def test_lira_input_checks():
    t, s, m, _ = _synthetic(k=4)
    with pytest.raises(InvalidParameterError):
        lira_scores(t[:-1], s, m)
    with pytest.raises(InvalidParameterError):
        lira_scores(t, s, np.ones_like(m))  # no OUT shadows


def test_lira_with_trainer_shadows(digits, small_split, overfit_model):
    mem, non = small_split[0], small_split[1][:60]
    recipe = shadow_recipe(overfit_model.metadata)
    recipe = dataclasses.replace(recipe, config={**recipe.config, "epochs": 40})
    res = lira(
        overfit_model.model, recipe, mem, non, n_shadows=4, executor=InlineExecutor(),
        dataset=digits,
    )
    assert res.global_variance and res.n_shadows == 4
    auc = roc_metrics(res.online_members, res.online_nonmembers).auc
    assert auc > 0.6
    assert np.all(np.isfinite(res.offline_members))


def test_inline_executor_propagates_errors():
    fut = InlineExecutor().submit(lambda: 1 / 0)
    assert isinstance(fut, cf.Future)
    with pytest.raises(ZeroDivisionError):
        fut.result()


@pytest.mark.slow
def test_lira_process_pool(digits, small_split, overfit_model):
    mem, non = small_split[0], small_split[1][:60]
    recipe = shadow_recipe(overfit_model.metadata)
    recipe = dataclasses.replace(recipe, config={**recipe.config, "epochs": 20})
    res = lira(overfit_model.model, recipe, mem, non, n_shadows=2, workers=2, dataset=digits)
    assert res.online_members.shape == (60,)


def test_lira_on_dp_model_is_consistent(digits, small_split, dp_model):
    from dpaudit.attacks.membership import evaluate_scores

    mem, non = small_split[0], small_split[1][:60]
    meta = dp_model.metadata
    res = lira(
        dp_model.model, shadow_recipe(meta), mem, non, n_shadows=4, executor=InlineExecutor(),
        dataset=digits, seed=3,
    )
    for ms, ns in ((res.online_members, res.online_nonmembers),
                   (res.offline_members, res.offline_nonmembers)):
        r = evaluate_scores("lira", ms, ns, claimed_epsilon=meta["epsilon"],
                            claimed_delta=meta["delta"])
        assert r.verdict == "consistent", r.bound


def test_two_shadows_scale_free():
    # K = 2: one shadow per side, no variance estimate; scores stay finite and moderate and
    # rank by "closer to the IN mean than to the OUT mean".
    t, s, m, member = _synthetic(k=2)
    on = lira_scores(t, s, m, online=True)
    assert np.all(np.isfinite(on)) and np.abs(on).max() < 1e6
    mu_in = np.where(m, s, 0).sum(0)
    mu_out = np.where(~m, s, 0).sum(0)
    closer = np.abs(t - mu_in) < np.abs(t - mu_out)
    assert np.array_equal(on > 0, closer)


def test_lira_when_target_trained_on_whole_train_split(digits):
    # Non-members are then test images: shadows train on halves of train + test (pooled).
    from dpaudit.attacks.lira import lira, pooled

    small = dataclasses.replace(digits, x_train=digits.x_train[:80], y_train=digits.y_train[:80],
                                x_test=digits.x_test[:80], y_test=digits.y_test[:80])
    pool = pooled(small)
    assert len(pool.y_train) == 160 and np.array_equal(pool.x_train[80:], small.x_test)
    from dpaudit.training import TrainConfig, train

    cfg = TrainConfig(arch="mlp", arch_kwargs={"hidden": [256]}, batch_size=16, threads=1,
                      no_privacy=True, epochs=60, lr=0.1, momentum=0.9, seed=3)
    target = train(cfg, dataset=small, members=np.arange(80), progress=False)
    res = lira(target.model, shadow_recipe(target.metadata), np.arange(80), 80 + np.arange(80),
               n_shadows=4, dataset=small, pool_test=True)
    assert res.online_members.shape == (80,) and res.online_nonmembers.shape == (80,)
    assert roc_metrics(res.online_members, res.online_nonmembers).auc > 0.6  # an overfit target leaks: the pooled population is used correctly
