"""Shadows whose training-set size differs from the target's (a population of fewer than 2N
candidates, e.g. a target trained on its whole train split): same sampling rate and noise."""

from __future__ import annotations

import tempfile

import numpy as np
import pytest

pytest.importorskip("torch")


def test_shadow_of_another_size_keeps_the_targets_rate_and_sigma(dp_model):
    from dpaudit.attacks.shadows import ShadowTask, shadow_recipe, shadow_train_config

    meta = dp_model.metadata
    r = shadow_recipe(meta)
    plan = r.plan
    assert plan is not None
    n_target, b_target = int(plan["dataset_size"]), int(plan["batch_size"])
    members = np.arange(n_target // 2)  # half the target's size
    task = ShadowTask(index=0, config={**r.config, "seed": 7}, members=members, population=members, plan=plan)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = shadow_train_config(task, tmp)
    assert cfg.plan_path is None and cfg.epsilon is None
    assert cfg.noise_multiplier == pytest.approx(plan["noise_multipliers"][0], rel=0, abs=0)
    assert cfg.epochs == len(plan["noise_multipliers"])
    assert cfg.batch_size == max(1, round(b_target * len(members) / n_target))
    # the same sampling rate, up to the batch size's rounding
    assert cfg.batch_size / len(members) == pytest.approx(b_target / n_target, abs=0.5 / len(members))


def test_shadow_of_the_targets_size_replays_the_plan_file(dp_model):
    from dpaudit.attacks.shadows import ShadowTask, shadow_recipe, shadow_train_config

    r = shadow_recipe(dp_model.metadata)
    members = np.arange(int(r.plan["dataset_size"]))
    task = ShadowTask(index=0, config={**r.config, "seed": 7}, members=members, population=members, plan=r.plan)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = shadow_train_config(task, tmp)
        assert cfg.plan_path is not None and cfg.plan_path.startswith(tmp)
    assert cfg.noise_multiplier is None


def test_lira_on_a_model_trained_on_its_whole_train_split(digits):
    # The README's flow: `dpaudit train` uses every train image, non-members are the test
    # split, the population holds fewer than 2N candidates, shadows are smaller than the target.
    from dpaudit.attacks.lira import lira
    from dpaudit.attacks.shadows import shadow_recipe
    from dpaudit.training import TrainConfig, train

    res = train(TrainConfig(dataset="digits", epsilon=2.0, epochs=3, threads=1, evaluate=False),
                dataset=digits, progress=False)
    meta = res.metadata
    mem = np.asarray(meta["split"]["member_indices"])
    assert mem.size == len(digits.y_train)
    non = len(digits.y_train) + np.arange(len(digits.y_test))
    out = lira(res.model, shadow_recipe(meta), mem, non, n_shadows=2, dataset=digits, pool_test=True,
               augment_queries=False)
    assert out.online_members.size == mem.size and out.online_nonmembers.size == non.size
    assert np.isfinite(out.offline_members).all()


def test_a_model_trained_on_scatternet_features_is_attacked_on_images(tmp_path, digits):
    pytest.importorskip("kymatio")
    import torch

    from dpaudit.attacks.shadows import ShadowTask, shadow_recipe, train_shadow
    from dpaudit.attacks.target import target_from_model_file
    from dpaudit.training import TrainConfig, save_model, train

    res = train(TrainConfig(dataset="digits", features="scatternet", epsilon=2.0, epochs=1, threads=1,
                            evaluate=False, feature_cache=str(tmp_path / "cache")), dataset=digits, progress=False)
    path = tmp_path / "sc.pt"
    save_model(path, res.model, res.metadata)
    target = target_from_model_file(path)
    x = torch.as_tensor(digits.x_test[:5])
    assert target.model(x).shape == (5, digits.num_classes)  # images in, through the feature map
    r = shadow_recipe(res.metadata)
    assert r.config["features"] == "scatternet"
    pop = np.arange(40)
    phi = train_shadow(ShadowTask(index=0, config={**r.config, "seed": 3, "epochs": 1, "batch_size": 8}, members=pop[:20],
                                  population=pop, plan=None), digits)
    assert phi.shape == (1, pop.size) and np.isfinite(phi).all()
