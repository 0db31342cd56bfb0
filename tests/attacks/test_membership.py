"""Membership scores (loss, logit-scaled confidence) and their evaluation on real models."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dpaudit.attacks.membership import (
    cross_entropy,
    evaluate_scores,
    logit_confidence,
    loss_scores,
)
from dpaudit.errors import InvalidParameterError

torch = pytest.importorskip("torch")


@given(arrays(np.float64, (5, 4), elements=st.floats(-30, 30)), st.integers(0, 3))
def test_logit_confidence_definition(z, label):
    y = np.full(5, label)
    phi = logit_confidence(z, y)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    py = p[:, label]
    # phi = log p_y - log sum_{y' != y} p_y' (Carlini et al. 2022) = logit of p_y
    with np.errstate(divide="ignore"):
        ref = np.log(py) - np.log(1 - py)
    ok = (py > 1e-12) & (py < 1 - 1e-12)
    assert np.allclose(phi[ok], ref[ok], atol=1e-6)
    assert np.all(np.isfinite(phi))


def test_logit_confidence_huge_logits_and_ce_vs_torch():
    z = np.array([[1000.0, -1000.0, 0.0], [0.0, 0.0, 0.0]])
    phi = logit_confidence(z, np.array([0, 1]))
    assert phi[0] == pytest.approx(1000.0) and phi[1] == pytest.approx(-math.log(2))
    zz = np.random.default_rng(0).normal(size=(7, 5)) * 5
    yy = np.arange(7) % 5
    ref = torch.nn.functional.cross_entropy(
        torch.tensor(zz), torch.tensor(yy), reduction="none"
    ).numpy()
    assert np.allclose(cross_entropy(zz, yy), ref, atol=1e-10)


def test_bad_labels():
    with pytest.raises(InvalidParameterError):
        cross_entropy(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(InvalidParameterError):
        logit_confidence(np.zeros((2, 3)), np.array([0]))


def test_evaluate_scores_can_report_violation():
    rng = np.random.default_rng(0)
    m, n = rng.normal(5, 1, 400), rng.normal(0, 1, 400)
    r = evaluate_scores("synthetic", m, n, claimed_epsilon=0.5, claimed_delta=1e-5)
    assert r.verdict == "violation" and r.bound.epsilon > 0.5
    d = r.to_dict()
    assert d["caps"]["auc"] < d["auc"]  # measured AUC beats what eps = 0.5 allows
    r2 = evaluate_scores("synthetic", m, n, claimed_epsilon=50.0, claimed_delta=1e-5)
    assert r2.verdict == "consistent"
    r3 = evaluate_scores("synthetic", m, n)
    assert r3.verdict == "no-claim" and r3.caps is None


def loss_attack(model, members, nonmembers, **kwargs):
    """Yeom et al.'s loss-threshold attack, evaluated (what run_attacks does for "loss")."""
    ms, ns = loss_scores(model, *members), loss_scores(model, *nonmembers)
    return evaluate_scores("loss", ms, ns, **kwargs)


def _sets(digits, split):
    mem, non = split
    return (digits.x_train[mem], digits.y_train[mem]), (digits.x_train[non], digits.y_train[non])


def test_overfit_model_leaks(digits, small_split, overfit_model):
    members, nonmembers = _sets(digits, small_split)
    for method in ("bonferroni", "split"):
        r = loss_attack(overfit_model.model, members, nonmembers, method=method, rng=0)
        assert r.roc.auc > 0.65
        assert r.bound.epsilon > 0.2
        assert r.verdict == "no-claim"
    # members' loss is lower: the attack, not chance, separates them
    assert np.median(r.member_scores) > np.median(r.nonmember_scores)


def test_dp_model_never_violates(digits, small_split, dp_model):
    meta = dp_model.metadata
    assert meta["epsilon"] <= 0.5 + 1e-6
    members, nonmembers = _sets(digits, small_split)
    for method, seed in (("bonferroni", 0), ("split", 0), ("split", 1), ("split", 2)):
        r = loss_attack(
            dp_model.model, members, nonmembers, claimed_epsilon=meta["epsilon"],
            claimed_delta=meta["delta"], method=method, rng=seed,
        )
        assert r.verdict == "consistent", (method, seed, r.bound)
        assert r.caps is not None and r.roc.auc <= r.caps["auc"] + 0.1


def test_bound_explanation_names_the_tail():
    from dpaudit.attacks.membership import bound_explanation
    from dpaudit.stats import epsilon_lower_bound_from_scores

    rng = np.random.default_rng(0)
    # Members with a far upper tail: the member tail gives the bound.
    m = np.r_[rng.normal(0, 1, 900), rng.normal(8, 0.1, 100)]
    n = rng.normal(0, 1, 1000)
    b = epsilon_lower_bound_from_scores(m, n)
    text = bound_explanation(b)
    assert b.epsilon > 0 and text.startswith("member tail") and "order statistic" in text
    # Non-members with a far lower tail (badly misclassified examples): the other tail.
    b = epsilon_lower_bound_from_scores(-n, -m)
    assert b.epsilon > 0 and bound_explanation(b).startswith("non-member tail")
    b = epsilon_lower_bound_from_scores(m, n, method="split", rng=0)
    assert "other half" in bound_explanation(b)
    b = epsilon_lower_bound_from_scores(n, n)
    assert bound_explanation(b).startswith("no threshold")
