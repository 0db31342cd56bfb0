"""LiRA's shadows: the matched recipe, the population, the query augmentations."""

from __future__ import annotations

import copy
import tempfile

import numpy as np
import pytest

from dpaudit.attacks.lira import lira_scores
from dpaudit.attacks.shadows import (
    ShadowTask,
    augment,
    choose_population,
    query_augmentations,
    shadow_assignment,
    shadow_recipe,
    shadow_train_config,
)
from dpaudit.errors import InvalidParameterError

pytest.importorskip("torch")


def test_recipe_of_a_non_private_model(overfit_model):
    r = shadow_recipe(overfit_model.metadata)
    c = r.config
    assert r.plan is None and r.train_size == 60
    assert c["no_privacy"] and c["epsilon"] is None and c["noise_multiplier"] is None
    assert c["evaluate"] is False and c["threads"] == 1
    meta_cfg = overfit_model.metadata["config"]
    for k in ("epochs", "batch_size", "lr", "momentum", "lr_schedule", "ema_decay", "clip", "arch"):
        assert c[k] == meta_cfg[k], k
    assert c["arch_kwargs"] == overfit_model.metadata["arch_kwargs"]


def test_recipe_replays_the_targets_noise(dp_model, digits):
    # The target's own plan (sigma for ITS N) is replayed; no epsilon is left to re-plan from.
    meta = dp_model.metadata
    r = shadow_recipe(meta)
    assert r.plan == meta["plan"] and r.config["epsilon"] is None
    assert r.config["plan_path"] is None and r.config["schedule"] == "constant"
    # A shadow trained from the recipe on other members of the same size uses the same sigma.
    from dpaudit.training import train

    others = np.setdiff1d(np.arange(len(digits.y_train)), meta["split"]["member_indices"])[:60]
    task = ShadowTask(index=0, config={**r.config, "seed": 99}, members=others, population=others, plan=r.plan)
    with tempfile.TemporaryDirectory() as tmp:
        res = train(shadow_train_config(task, tmp), dataset=digits, members=others, progress=False)
    assert res.metadata["noise_multipliers"] == meta["noise_multipliers"]
    assert res.metadata["epochs_trained"] == meta["epochs_trained"]


def test_recipe_from_recorded_sigma_when_no_plan(dp_model):
    # Model files written before plans were recorded: a constant recorded sigma is used; a plan
    # path and an epsilon in the old config are ignored rather than replayed (replaying them is
    # refused by the trainer).
    meta = copy.deepcopy(dp_model.metadata)
    meta["plan"] = None
    meta["config"].update(plan_path="/gone/plan.json", epsilon=2.0)
    r = shadow_recipe(meta)
    assert r.plan is None and r.config["epsilon"] is None and r.config["plan_path"] is None
    assert r.config["noise_multiplier"] == meta["noise_multipliers"][0]
    assert r.config["epochs"] == len(meta["noise_multipliers"])
    meta["noise_multipliers"] = [1.0, 2.0]
    with pytest.raises(InvalidParameterError, match="noise"):
        shadow_recipe(meta)
    meta["config"]["noise_multiplier"] = 1.5  # an explicit constant sigma with a stopping budget
    r = shadow_recipe(meta)
    assert r.config["noise_multiplier"] == 1.5 and r.config["epsilon"] == 2.0


def test_recipe_covers_every_training_field(overfit_model):
    """Every TrainConfig field is either taken from the target or set on purpose, so a field
    added to the trainer later (e.g. an augmentation) cannot silently differ in the shadows."""
    import dataclasses

    from dpaudit.training import TrainConfig

    meta = copy.deepcopy(overfit_model.metadata)
    meta["config"].update(augment="shift", augment_multiplicity=2, features="none", norm_clip=[1.0, 2.0])
    r = shadow_recipe(meta)
    assert r.config["augment"] == "shift" and r.config["augment_multiplicity"] == 2
    assert r.config["norm_clip"] == [1.0, 2.0]
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    # the caller's device, evaluation size (evaluation is off), a cache path: not the recipe
    assert fields - set(r.config) == {"device", "eval_size", "feature_cache"}
    assert query_augmentations("cifar10")[5] == (True, 0, 0)


def test_recipe_refusals(overfit_model):
    meta = copy.deepcopy(overfit_model.metadata)
    meta["arch"] = "custom"
    with pytest.raises(InvalidParameterError, match="custom"):
        shadow_recipe(meta)
    with pytest.raises(InvalidParameterError, match="configuration"):
        shadow_recipe({"split": {"member_indices": [1]}})


def test_population_keeps_members_and_as_many_non_members():
    rng = np.random.default_rng(0)
    pop, n = choose_population(np.arange(10), np.arange(10, 100), rng)
    assert n == 10 and pop.size == 20 and np.array_equal(pop[:10], np.arange(10))
    assert np.all(pop[10:] >= 10) and np.unique(pop).size == 20
    pop, n = choose_population(np.arange(10), np.arange(10, 15), rng)
    assert pop.size == 15 and n == 10


def test_augment_shifts_and_flips():
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    down = augment(x, (False, 1, 0))
    assert np.array_equal(down[0, 0, 1:], x[0, 0, :3]) and np.all(down[0, 0, 0] == 0)
    left = augment(x, (False, 0, -1))
    assert np.array_equal(left[0, 0, :, :3], x[0, 0, :, 1:]) and np.all(left[0, 0, :, 3] == 0)
    assert np.array_equal(augment(x, (True, 0, 0))[0, 0], x[0, 0, :, ::-1])
    assert np.array_equal(augment(x, (False, 0, 0)), x)
    with pytest.raises(InvalidParameterError):
        augment(x, (False, 4, 0))
    assert query_augmentations("digits") == ((False, 0, 0),)  # 8x8: no shifts
    assert len(query_augmentations("mnist")) == 5 and not any(a[0] for a in query_augmentations("mnist"))
    assert any(a[0] for a in query_augmentations("fashion-mnist"))
    assert query_augmentations("mnist", enabled=False) == ((False, 0, 0),)
    # auto: the queries follow the target's training augmentation
    assert query_augmentations("mnist", None, None) == ((False, 0, 0),)
    assert query_augmentations("fashion-mnist", None, "none") == ((False, 0, 0),)
    assert query_augmentations("mnist", None, "shift") == query_augmentations("mnist")
    shifted = query_augmentations("fashion-mnist", None, "shift")
    assert len(shifted) == 5 and not any(a[0] for a in shifted)
    assert query_augmentations("cifar10", None, "flip-crop") == query_augmentations("cifar10")


def test_augmented_score_is_mean_of_per_query_scores():
    rng = np.random.default_rng(0)
    k, a, n = 8, 3, 50
    m = shadow_assignment(k, n, rng)
    s = rng.normal(size=(k, a, n)) + m[:, None, :]
    t = rng.normal(size=(a, n))
    for online in (True, False):
        got = lira_scores(t, s, m, online=online)
        ref = np.mean([lira_scores(t[i], s[:, i], m, online=online) for i in range(a)], axis=0)
        assert np.allclose(got, ref)
    with pytest.raises(InvalidParameterError):
        lira_scores(t[:2], s, m)


def test_shadow_set_first_keeps_balance(overfit_model, digits, small_split):
    import dataclasses

    from dpaudit.attacks.lira import lira_from_shadows
    from dpaudit.attacks.shadows import InlineExecutor, train_shadows

    r = shadow_recipe(overfit_model.metadata)
    r = dataclasses.replace(r, config={**r.config, "epochs": 5})
    saved = []
    sh = train_shadows(r, small_split[0], small_split[1], 4, executor=InlineExecutor(), dataset=digits,
                       checkpoint=saved.append)
    # any finished prefix handed out (k = 2 at most: k = 4 is the result) is the final set's prefix
    assert [s.n_shadows for s in saved] in ([], [2])
    for part in saved:
        assert np.array_equal(part.phi, sh.phi[:2]) and np.array_equal(part.in_mask, sh.in_mask[:2])
    assert sh.population.size == 120 and np.all(sh.in_mask.sum(1) == 60)  # the target's N
    assert any("as the target" in n for n in sh.notes)
    two = sh.first(2)
    assert np.all(two.in_mask.sum(0) == 1)
    res = lira_from_shadows(overfit_model.model, two, dataset=digits)
    assert res.n_shadows == 2 and res.online_members.shape == (60,)


def test_checkpoint_hands_out_even_prefixes_in_any_completion_order():
    from dpaudit.attacks.shadows import _prefix_reporter

    def run(order, total=6):
        got = []
        rep = _prefix_reporter(got.append, np.zeros((total, 3), bool), lambda phi, k: (k, phi[:, 0].tolist()))
        for i in order:
            rep(i, np.array([float(i)]))
        return got

    assert run([1, 0, 3, 2, 5, 4]) == [(2, [0.0, 1.0]), (4, [0.0, 1.0, 2.0, 3.0])]
    assert run([0, 1, 2, 3, 4, 5]) == [(2, [0.0, 1.0]), (4, [0.0, 1.0, 2.0, 3.0])]  # not at 6: the result
    assert run([0, 2, 1, 4, 3, 5]) == [(2, [0.0, 1.0]), (4, [0.0, 1.0, 2.0, 3.0])]  # 0 -> 3: even part 2
    assert run([5, 4, 3, 2, 1, 0]) == []


def test_queries_follow_the_targets_training_augmentation(overfit_model, digits, small_split, monkeypatch):
    import dataclasses

    from dpaudit.attacks import shadows as sh_mod

    # pretend digits had shifted queries: a target trained without augmentation gets the image alone
    monkeypatch.setitem(sh_mod.QUERY_AUGMENTATIONS, "digits", sh_mod._SHIFTS)
    r = shadow_recipe(overfit_model.metadata)
    r = dataclasses.replace(r, config={**r.config, "epochs": 1})
    auto = sh_mod.train_shadows(r, small_split[0], small_split[1], 2, executor=sh_mod.InlineExecutor(),
                                dataset=digits)
    assert auto.augmentations == ((False, 0, 0),) and auto.phi.shape[1] == 1
    assert any("the image alone" in n for n in auto.notes)
    forced = sh_mod.train_shadows(r, small_split[0], small_split[1], 2, executor=sh_mod.InlineExecutor(),
                                  dataset=digits, augment_queries=True)
    assert forced.phi.shape[1] == 5 and np.allclose(forced.phi[:, 0], auto.phi[:, 0])
