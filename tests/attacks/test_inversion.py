"""MI-FACE (Fredrikson et al. 2015) and the numpy SSIM (Wang et al. 2004)."""

from __future__ import annotations

import numpy as np
import pytest

from dpaudit.attacks.inversion import (
    InversionConfig,
    mi_face,
    model_inversion,
    nearest_distances,
    ssim,
)
from dpaudit.errors import InvalidParameterError

torch = pytest.importorskip("torch")


def test_ssim_identity_symmetry_and_noise():
    rng = np.random.default_rng(0)
    a = rng.random((1, 16, 16))
    assert ssim(a, a) == pytest.approx(1.0)
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1)
    c = np.clip(a + rng.normal(0, 0.3, a.shape), 0, 1)
    assert ssim(a, b) == pytest.approx(ssim(b, a))
    assert 1 > ssim(a, b) > ssim(a, c)
    with pytest.raises(InvalidParameterError):
        ssim(a, a[:, :8])


def test_ssim_single_window_by_hand():
    # 7x7 images -> one 7x7 Gaussian window: Eq. 13 of Wang et al. with weighted moments.
    rng = np.random.default_rng(1)
    x, y = rng.random((7, 7)), rng.random((7, 7))
    ax = np.arange(7) - 3.0
    g = np.exp(-(ax**2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    mx, my = (w * x).sum(), (w * y).sum()
    vx, vy = (w * (x - mx) ** 2).sum(), (w * (y - my) ** 2).sum()
    cxy = (w * (x - mx) * (y - my)).sum()
    c1, c2 = 0.01**2, 0.03**2
    ref = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    assert ssim(x, y) == pytest.approx(ref, rel=1e-10)


def _linear_model(weight, bias=None):
    m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(weight.shape[1], weight.shape[0]))
    with torch.no_grad():
        m[1].weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
        m[1].bias.zero_() if bias is None else m[1].bias.copy_(torch.as_tensor(bias))
    return m


def test_mi_face_reaches_gamma_on_linear_model():
    # Class l scores pixel l: the reconstruction must light up pixel l (and reach 1-gamma).
    w = np.eye(4) * 20.0
    m = _linear_model(w)
    rec, cost, iters, why = mi_face(m, [0, 1, 2, 3], (1, 2, 2), InversionConfig(gamma=0.05, lr=1.0, start=0.0, jitter=0))
    assert why == ("gamma",) * 4 and np.all(cost <= 0.05)
    flat = rec.reshape(4, -1)
    assert np.all(flat.argmax(1) == np.arange(4))
    assert rec.min() >= 0 and rec.max() <= 1  # Process = clip to [0, 1]
    assert all(p.requires_grad for p in m.parameters())  # parameters restored


def test_mi_face_stops_without_progress_and_at_max_iter():
    flat = _linear_model(np.zeros((3, 4)))  # constant model: cost never improves
    _, cost, iters, why = mi_face(flat, [0, 1], (1, 2, 2), InversionConfig(patience=10))
    assert why == ("no_progress",) * 2 and np.all(iters == 10)
    assert np.allclose(cost, 2 / 3)
    slow = _linear_model(np.eye(4)[:3] * 0.01)
    _, _, iters, why = mi_face(slow, [0], (1, 2, 2), InversionConfig(max_iter=7, lr=1e-4))
    assert why == ("max_iter",) and iters[0] == 7


def test_model_inversion_end_to_end(digits, small_split, overfit_model):
    mem, non = small_split
    res = model_inversion(
        overfit_model.model,
        (digits.x_train[mem], digits.y_train[mem]),
        (digits.x_train[non], digits.y_train[non]),
        10,
        test=(digits.x_test, digits.y_test),
        config=InversionConfig(max_iter=300),
    )
    assert res.reconstructions.shape == (10, 1, 8, 8)
    assert res.class_means.shape == (10, 1, 8, 8)
    assert 0 <= res.eval_accuracy <= 1 and res.eval_classifier_accuracy > 0.8
    d = res.to_dict()
    assert np.isfinite(d["mse"]) and -1 <= d["ssim"] <= 1
    assert np.all(res.confidences > 0.5)  # the target model is fooled into its class


def test_log_cost_leaves_the_dead_zone():
    # Class 1 starts with p_1 ~ e^-10: the paper's 1 - p_1 has gradient p_1 p_0 * 30 ~ 1e-3;
    # -log p_1 has gradient p_0 * 30 ~ 30 and reaches the class at once.
    w = np.array([[30.0, 0.0], [0.0, 30.0]])
    m = _linear_model(w, bias=np.array([0.0, -10.0]))
    x0 = torch.ones((1, 1, 1, 2), requires_grad=True)
    (g_paper,) = torch.autograd.grad(1 - torch.softmax(m(x0), 1)[0, 1], x0)
    assert g_paper.abs().max() < 2e-3
    cfg = InversionConfig(lr=1.0, start=1.0, max_iter=200, gamma=0.01, jitter=0, cost="log_prob")
    rec, gap, iters, why = mi_face(m, [1], (1, 1, 2), cfg)
    assert gap[0] <= 0.01 and why == ("gamma",) and iters[0] < 5
    assert rec[0, 0, 0, 0] < 0.5  # pixel 0 (evidence for class 0) switched off


def test_logit_cost_builds_contrast_where_the_softmax_settles_for_a_faint_image():
    # Two classes with opposite templates: the class score of class 1 is maximised over the box
    # [0, 1]^4 by x = 1[w_1 > 0] (Simonyan et al. 2014); -log p_1 is already ~0 once the image is
    # faintly tilted towards class 1 and stops there.
    w = np.array([[4.0, 4.0, -4.0, -4.0], [-4.0, -4.0, 4.0, 4.0]])
    m = _linear_model(w)
    common = dict(lr=0.1, start=0.5, max_iter=2000, patience=50, jitter=0)
    logit, gap, _, why = mi_face(m, [1], (1, 2, 2), InversionConfig(cost="logit", **common))
    assert np.array_equal(logit.ravel(), [0.0, 0.0, 1.0, 1.0]) and why == ("no_progress",)
    assert gap[0] == pytest.approx(1 / (1 + np.exp(16.0)), rel=1e-3)  # 1 - p_1 at the saturated image
    soft, _, _, _ = mi_face(m, [1], (1, 2, 2), InversionConfig(cost="paper", **common))
    assert np.ptp(soft) < np.ptp(logit)  # the softmax cost leaves a fainter image
    with pytest.raises(InvalidParameterError):
        InversionConfig(cost="hinge")


def test_gamma_zero_never_stops_on_round_off():
    # Margin 800: 1 - p is exactly 0 even in float64; gamma = 0 means "never", so only beta stops it.
    m = _linear_model(np.array([[800.0], [0.0]]))
    _, gap, iters, why = mi_face(m, [0], (1, 1, 1), InversionConfig(start=1.0, patience=5, jitter=0))
    assert why == ("no_progress",) and iters[0] == 5


def _blocks_data(rng, n_per_class=40):
    # 4 classes of 1x4x4 images: class c > 0 lights quadrant c, class 0 is (nearly) blank.
    quads = [(slice(0, 2), slice(0, 2)), (slice(0, 2), slice(2, 4)), (slice(2, 4), slice(0, 2)),
             (slice(2, 4), slice(2, 4))]
    xs, ys = [], []
    for c in range(4):
        for _ in range(n_per_class):
            img = rng.uniform(0, 0.05, (1, 4, 4))
            if c > 0:
                img[0][quads[c]] = rng.uniform(0.7, 1.0, (2, 2))
            xs.append(img)
            ys.append(c)
    return np.asarray(xs, np.float32), np.asarray(ys, np.int64), quads


def test_blank_reconstruction_never_counts():
    # The target pushes class 0 to a blank image; the evaluation classifier calls blank "0", so
    # the plain accuracy counts it; the honest rate must not.
    rng = np.random.default_rng(0)
    x, y, quads = _blocks_data(rng)
    w = np.zeros((4, 16))
    w[0] = -5.0
    for c in range(1, 4):
        mask = np.zeros((4, 4))
        mask[quads[c]] = 1
        w[c] = 10 * mask.ravel() - 2
    res = model_inversion(_linear_model(w), (x, y), (x, y), 4, config=InversionConfig(max_iter=300, lr=1.0))
    assert res.eval_predictions[0] == 0 and res.contrast[0] < 0.05
    assert not res.recognised[0] and res.recognised[1:].all()
    assert res.eval_accuracy == pytest.approx(0.75) and res.raw_eval_accuracy == pytest.approx(1.0)
    # baseline: blank and mean image each offered for every class, one hit at most each
    hits = sum(int(p == c) for p in res.baseline_predictions.values() for c in range(4))
    assert res.baseline_predictions["blank"] == 0
    assert res.baseline_eval_accuracy == pytest.approx(hits / 8)
    d = res.to_dict()
    assert np.array(d["eval_classifier_confusion"]).sum() == len(y)
    assert d["per_class"]["recognised"] == [False, True, True, True]
    assert len(d["per_class"]["baseline_ssim"]) == 4
    # 3 of 4 by chance: P[Bin(4, 1/4) >= 3] = 13/256 = 0.0508, just above 5 %
    assert d["recognised_classes"] == 3 and d["p_value"] == pytest.approx(13 / 256)
    assert d["verdict"] == "nothing recognisable"
    assert "3 of 4 classes" in res.verdict_line()


def test_jitter_shift_and_determinism():
    from dpaudit.attacks.inversion import _shift

    x = torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4)
    s = _shift(x, 1, -1)
    assert torch.equal(s[0, 0, 1:, :3], x[0, 0, :3, 1:]) and s[0, 0, 0].abs().sum() == 0
    assert s[0, 0, :, 3].abs().sum() == 0
    with pytest.raises(InvalidParameterError):
        InversionConfig(jitter=-1)
    m = _linear_model(np.eye(4)[:3] * 3.0)
    a = mi_face(m, [0, 1], (1, 2, 2), InversionConfig(max_iter=50, jitter=1, seed=5))
    b = mi_face(m, [0, 1], (1, 2, 2), InversionConfig(max_iter=50, jitter=1, seed=5))
    assert np.array_equal(a[0], b[0])


def test_nearest_member_test_sees_a_copied_member_and_not_a_fresh_draw():
    rng = np.random.default_rng(3)
    x = rng.random((400, 1, 4, 4))
    y = np.repeat(np.arange(4), 100)
    mem = rng.permutation(400)[:200]
    non = np.setdiff1d(np.arange(400), mem)
    members, heldout = (x[mem], y[mem]), (x[non], y[non])
    # each reconstruction is one of the members of its class: the member pool always wins
    copies = np.stack([x[mem][y[mem] == k][0] for k in range(4)])
    d_mem, d_out = nearest_distances(copies, members, heldout)
    assert np.all(d_mem == 0) and np.all(d_out > 0)
    # a fresh draw from the same distribution: each pool wins about half the time
    wins = 0
    for s in range(50):
        fresh = rng.random((4, 1, 4, 4))
        a, b = nearest_distances(fresh, members, heldout, seed=s)
        wins += int(np.sum(a < b))
    assert 60 < wins < 140  # 200 fair coin flips; |wins - 100| > 40 has probability < 1e-8
    # a class missing from one pool is NaN in both (no comparison), never a win
    a, b = nearest_distances(copies, (x[mem][y[mem] != 3], y[mem][y[mem] != 3]), heldout)
    assert np.isnan(a[3]) and np.isnan(b[3]) and np.all(np.isfinite(a[:3]))
