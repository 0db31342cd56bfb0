"""Update screening (SA-DPSGD, DPSUR): decision rules, the charged validation mechanism, the
budget with validation releases, the ledger of a screened run, and the EMA lever."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dpaudit.accounting.events import DpSgdRun, GaussianSegment
from dpaudit.errors import InvalidParameterError
from dpaudit.training import TrainConfig, load_dataset, train
from dpaudit.training.budget import account, plan_noise
from dpaudit.training.ledger import PrivacyLedger
from dpaudit.training.levers import ParamEMA
from dpaudit.training.screening import (
    Screener,
    ScreeningConfig,
    Snapshot,
    clipped_delta_sum,
    dpsur_accept,
    sa_accept,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


# ---------------------------------------------------------------- decision rules
@given(st.floats(-10, 0), st.integers(0, 10_000), st.floats(0, 1, exclude_max=True))
def test_sa_always_accepts_improvements(de, t, u):
    assert sa_accept(de, t, 0, u)


@given(st.floats(1e-6, 10), st.integers(0, 10_000), st.floats(0, 1, exclude_max=True))
def test_sa_forces_acceptance_after_max_rejects(de, t, u):
    assert sa_accept(de, t, 5, u, max_rejects=5)
    assert sa_accept(de, t, 7, u, max_rejects=5)


@given(st.floats(1e-4, 1), st.floats(1e-4, 1), st.integers(1, 500), st.integers(1, 500),
       st.floats(0, 1, exclude_max=True))
def test_sa_acceptance_is_monotone_in_worsening_and_time(d1, d2, t1, t2, u):
    """A worse update, or the same one later (lower temperature), is never more likely kept."""
    lo, hi = sorted((d1, d2))
    ta, tb = sorted((t1, t2))
    if sa_accept(hi, ta, 0, u):
        assert sa_accept(lo, ta, 0, u)
    if sa_accept(lo, tb, 0, u):
        assert sa_accept(lo, ta, 0, u)


def test_sa_acceptance_probability_is_the_metropolis_rule():
    de, t, k = 0.002, 30, 10.0
    us = np.random.default_rng(0).random(20_000)
    rate = np.mean([sa_accept(de, t, 0, u, k=k) for u in us])
    assert rate == pytest.approx(math.exp(-de * k * t), abs=0.015)


@given(st.floats(-5, 5), st.floats(-5, 5), st.floats(1e-3, 1), st.floats(-3, 3))
def test_dpsur_rule_is_a_threshold(s1, s2, c, beta):
    lo, hi = sorted((s1, s2))
    if dpsur_accept(hi, clip=c, beta=beta):
        assert dpsur_accept(lo, clip=c, beta=beta)
    assert dpsur_accept(beta * c - 1e-9, clip=c, beta=beta)
    assert not dpsur_accept(beta * c, clip=c, beta=beta)


# ---------------------------------------------------------------- the charged mechanism
@settings(max_examples=60)
@given(st.lists(st.floats(-50, 50), min_size=1, max_size=40), st.floats(-50, 50), st.floats(1e-3, 2))
def test_clipped_sum_has_add_remove_sensitivity_cv(diffs, extra, c):
    """Adding one validation example moves the released statistic by at most C_v."""
    new = torch.tensor(diffs, dtype=torch.float64)
    old = torch.zeros_like(new)
    s0 = clipped_delta_sum(new, old, c)
    s1 = clipped_delta_sum(torch.cat([new, torch.tensor([extra], dtype=torch.float64)]),
                           torch.zeros(len(diffs) + 1, dtype=torch.float64), c)
    assert abs(s1 - s0) <= c * (1 + 1e-9)


def test_noisy_sum_noise_has_std_sigma_v_times_cv():
    cfg = ScreeningConfig(rule="dpsur", clip=0.05, noise_multiplier=1.7, batch_size=10)
    gen = torch.Generator().manual_seed(0)
    s = Screener(cfg, 100, np.random.default_rng(0), gen, None)
    z = torch.zeros(3)
    vals = np.array([s.noisy_sum(z, z) for _ in range(20_000)])
    assert s.releases == 20_000
    assert vals.mean() == pytest.approx(0.0, abs=4 * 0.085 / math.sqrt(20_000))
    assert vals.std() == pytest.approx(1.7 * 0.05, rel=0.03)


def test_validation_batch_is_poisson_with_rate_qv():
    cfg = ScreeningConfig(rule="sa", batch_size=50)
    s = Screener(cfg, 1000, np.random.default_rng(1), torch.Generator().manual_seed(1), None)
    sizes = [len(s.sample()) for _ in range(2000)]
    assert s.q == pytest.approx(0.05)
    assert np.mean(sizes) == pytest.approx(50, rel=0.02)
    assert np.var(sizes) == pytest.approx(1000 * 0.05 * 0.95, rel=0.15)  # binomial, not fixed


@pytest.mark.parametrize("kw", [
    {"rule": "metropolis"}, {"clip": 0.0}, {"noise_multiplier": -1.0}, {"batch_size": 0},
    {"beta": float("nan")}, {"max_rejects": 0},
])
def test_bad_screening_config_is_refused(kw):
    with pytest.raises(InvalidParameterError):
        ScreeningConfig(**{"rule": "sa", **kw})


# ---------------------------------------------------------------- budget with validation releases
def test_plan_with_releases_spends_the_target_and_charges_validation():
    kw = dict(dataset_size=6000, batch_size=128, epochs=4, batching="poisson", accountant="pld")
    rel = ((64 / 6000, 1.5),)
    p = plan_noise(2.0, 1e-5, per_step_releases=rel, **kw)
    base = plan_noise(2.0, 1e-5, schedule="constant", **kw)
    assert p.epsilon <= 2.0 and p.epsilon > 1.98
    assert p.noise_multipliers[0] > base.noise_multipliers[0]  # validation is paid for
    seg = p.run.extra_segments
    assert seg == (GaussianSegment(64 / 6000, 1.5, p.run.total_steps),)
    # the same run without the validation releases is strictly cheaper
    cheaper = account(dataclasses.replace(p.run, extra_segments=()), 1e-5, "pld").epsilon
    assert cheaper < p.epsilon - 0.02
    # cumulative curve is increasing and ends at the total
    assert all(a < b for a, b in zip(p.cumulative_epsilon, p.cumulative_epsilon[1:]))
    assert p.cumulative_epsilon[-1] == pytest.approx(p.epsilon, rel=1e-9)


def test_noisier_validation_buys_a_smaller_gradient_sigma():
    kw = dict(dataset_size=6000, batch_size=128, epochs=3, batching="poisson", accountant="rdp")
    s = [plan_noise(3.0, 1e-5, per_step_releases=((0.01, sv),), **kw).noise_multipliers[0]
         for sv in (1.0, 2.0, 4.0)]
    assert s[0] > s[1] > s[2]


def test_plan_refuses_when_validation_alone_exceeds_the_budget():
    with pytest.raises(InvalidParameterError, match="validation releases alone"):
        plan_noise(0.2, 1e-5, dataset_size=1000, batch_size=100, epochs=10,
                                 batching="poisson", accountant="rdp",
                                 per_step_releases=((0.2, 0.6),))


def test_extra_segments_agree_with_dp_accounting_rdp():
    dp = pytest.importorskip("dp_accounting")
    run = dataclasses.replace(
        DpSgdRun.create(noise_multiplier=1.3, dataset_size=10000, batch_size=200, epochs=3),
        extra_segments=(GaussianSegment(0.01, 1.1, 150),))
    orders = [1 + x / 10.0 for x in range(1, 100)] + list(range(11, 64)) + [128, 256, 512]
    acc = dp.rdp.RdpAccountant(orders)
    acc.compose(dp.SelfComposedDpEvent(dp.PoissonSampledDpEvent(0.02, dp.GaussianDpEvent(1.3)), 150))
    acc.compose(dp.SelfComposedDpEvent(dp.PoissonSampledDpEvent(0.01, dp.GaussianDpEvent(1.1)), 150))
    ref = acc.get_epsilon(1e-5)
    ours = account(run, 1e-5, "rdp").epsilon
    assert ours == pytest.approx(ref, rel=0.03)
    assert ours >= ref * 0.999 or ours == pytest.approx(ref, rel=1e-3)
    assert account(run, 1e-5, "pld").epsilon <= ours * 1.001


# ---------------------------------------------------------------- screened training runs
@pytest.fixture(scope="module")
def screened(digits):
    cfg = TrainConfig(dataset="digits", epsilon=3.0, epochs=4, screening="sa", ema_decay=0.9,
                      reproducible=True, threads=1)
    return train(cfg, dataset=digits, progress=False)


def test_screened_run_charges_every_step_and_every_validation_query(screened):
    m = screened.metadata
    led = PrivacyLedger.from_dict(m["ledger"])
    sc = m["screening"]
    assert led.steps == 4 * led.steps_per_epoch  # all candidates, kept or not
    assert sc["accepted"] + sc["rejected"] == sc["validation_releases"] == led.steps
    assert sum(x["count"] for x in led.extra) == led.steps
    assert {x["noise_multiplier"] for x in led.extra} == {sc["noise_multiplier"]}
    run = led.to_run()
    eps = account(run, m["delta"], "pld").epsilon
    assert eps == pytest.approx(m["epsilon"], rel=1e-6)
    assert eps <= 3.0 * (1 + 1e-9)
    assert account(dataclasses.replace(run, extra_segments=()), m["delta"], "pld").epsilon < eps - 0.005
    assert any("screening sa" in n for n in m["notes"])
    assert all("accept_rate" in row for row in m["history"])


def test_ema_is_recorded_and_published(screened):
    m = screened.metadata
    assert m["levers"]["ema_decay"] == 0.9
    assert m["test_accuracy"] > 0.5 and m["test_accuracy_raw"] > 0.5


def test_always_rejected_candidates_leave_the_model_untouched(digits):
    """beta = -1e9: DPSUR rejects every candidate, so the weights and the momentum stay at
    their initial values -- the restore is exact -- while every step is still charged."""
    cfg = TrainConfig(dataset="digits", epsilon=3.0, epochs=1, screening="dpsur", screen_beta=-1e9,
                      momentum=0.9, reproducible=True, threads=1)
    res = train(cfg, dataset=digits, progress=False)
    torch.manual_seed(cfg.seed)
    from dpaudit.training.models import build_model, resolve_arch_kwargs

    init = build_model("mlp", digits.input_shape, digits.num_classes,
                       **resolve_arch_kwargs("mlp", digits.input_shape))
    for a, b in zip(init.state_dict().values(), res.model.state_dict().values()):
        assert torch.equal(a, b)
    sc = res.metadata["screening"]
    assert sc["accepted"] == 0 and sc["rejected"] == sc["validation_releases"] > 0
    assert res.metadata["epsilon"] > 0


def test_snapshot_restores_parameters_and_momentum():
    lin = torch.nn.Linear(3, 2)
    params = list(lin.parameters())
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    snap = Snapshot(params, opt)
    before = [p.detach().clone() for p in params]
    bufs = [opt.state[p]["momentum_buffer"].clone() for p in params]
    opt.step()
    snap.restore()
    for p, b, m in zip(params, before, bufs):
        assert torch.equal(p.detach(), b)
        assert torch.equal(opt.state[p]["momentum_buffer"], m)


@pytest.mark.parametrize("kw, match", [
    ({"screening": "sa", "no_privacy": True, "epsilon": None}, "without privacy"),
    ({"screening": "anneal"}, "screening must be one of"),
    ({"screening": "dpsur", "schedule": "exp"}, "constant schedule"),
    ({"screening": "sa", "screen_clip": -1.0}, "clip"),
    ({"ema_decay": 1.0}, "EMA decay"),
])
def test_bad_screening_options_give_clear_errors(digits, kw, match):
    with pytest.raises(InvalidParameterError, match=match):
        train(TrainConfig(dataset="digits", epochs=1, **kw), dataset=digits, progress=False)


# ---------------------------------------------------------------- EMA
@given(st.floats(0, 0.999), st.integers(1, 30))
@settings(max_examples=30, deadline=None)
def test_ema_matches_the_recursion(decay, steps):
    p = torch.nn.Parameter(torch.zeros(2))
    ema = ParamEMA([p], decay)
    ref = torch.zeros(2)
    rng = np.random.default_rng(steps)
    for t in range(steps):
        with torch.no_grad():
            p.copy_(torch.from_numpy(rng.normal(size=2)).float())
        ema.update()
        d = min(decay, (1 + t) / (10 + t))
        ref = d * ref + (1 - d) * p.detach()
    assert torch.allclose(ema.shadow[0], ref, atol=1e-6)
    live = p.detach().clone()
    ema.swap()
    assert torch.allclose(p.detach(), ref, atol=1e-6)
    ema.swap()
    assert torch.equal(p.detach(), live)


# ---------------------------------------------------------------- CLI
def test_cli_screening_json(tmp_path, capsys):
    import json

    from cli.main import main

    main(["train", "--epsilon", "3", "--epochs", "1", "--screening", "dpsur", "--ema", "0.9",
          "--threads", "1", "--out", str(tmp_path / "m.pt"), "--json"])
    d = json.loads(capsys.readouterr().out)
    sc = d["screening"]
    assert sc["rule"] == "dpsur" and sc["accepted"] + sc["rejected"] == sc["validation_releases"] > 0
    assert 0 < d["epsilon"] <= 3 and d["levers"]["ema_decay"] == 0.9


def test_cli_screening_error_is_one_line(tmp_path, capsys):
    from cli.main import main

    with pytest.raises(SystemExit) as e:
        main(["train", "--screening", "sa", "--screen-sigma", "-1", "--out", str(tmp_path / "m.pt")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("dpaudit: error:") and "Traceback" not in err
