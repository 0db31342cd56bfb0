"""Model inversion: MI-FACE (Fredrikson, Jha, Ristenpart, "Model Inversion Attacks that
Exploit Confidence Information and Basic Countermeasures", CCS 2015, Sec. 5.2, Alg. 1).

For each class ``l`` the attack minimises the cost ``c(x) = 1 - softmax(f(x))_l`` (AuxTerm =
0) by gradient descent on the input, ``x_i = Process(x_{i-1} - lambda * grad c(x_{i-1}))``
with ``Process`` = clipping to the valid pixel range [0, 1], starting from ``x_0 = 0``, and
the paper's stopping rule: stop after ``alpha`` iterations, or when ``c(x_i) >= max(c(x_{i-1}),
..., c(x_{i-beta}))`` (no progress over a window of ``beta``), or when ``c(x_i) <= gamma``;
return the iterate with the lowest cost.  Paper values: alpha = 5000, beta = 100,
lambda = 0.1 (kept as defaults).  The paper's gamma = 0.99 was set for its face models; on a
10-class model it would stop at the start (confidence 1/10 already gives c < 0.99), so the
default here is gamma = 0.01 (stop at 99% confidence) — a parameter, recorded in the result.

Metrics (how much of the training data the reconstructions reveal):
* ``eval_accuracy``: accuracy of an *independent* classifier (multinomial logistic regression,
  scikit-learn, trained on held-out data the target never saw) on the reconstructions, i.e.
  do they look like their class to another model;
* ``mse`` / ``ssim`` to the per-class mean image of the target's training members (SSIM of
  Wang, Bovik, Sheikh, Simoncelli 2004, Eq. 13, Gaussian window sigma = 1.5, K1 = 0.01,
  K2 = 0.03, data range 1; :func:`ssim`).  As a reference, the same metrics are reported for
  the mean of *all* held-out images ("baseline"): a reconstruction that beats the baseline
  carries class-specific information.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from dpaudit.errors import InvalidParameterError


@dataclass(frozen=True)
class InversionConfig:
    """MI-FACE parameters: ``max_iter`` (alpha), ``patience`` (beta), ``gamma`` (cost at which
    to stop), ``lr`` (lambda, step on the input in pixel units)."""

    max_iter: int = 5000
    patience: int = 100
    gamma: float = 0.01
    lr: float = 0.1

    def __post_init__(self) -> None:
        if self.max_iter < 1 or self.patience < 1:
            raise InvalidParameterError("max_iter and patience must be >= 1")
        if not (0 <= self.gamma < 1) or not (self.lr > 0 and math.isfinite(self.lr)):
            raise InvalidParameterError("need 0 <= gamma < 1 and lr > 0")


def mi_face(
    model,
    labels: list[int] | np.ndarray,
    input_shape: tuple[int, ...],
    config: InversionConfig = InversionConfig(),
    device: str = "cpu",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """Run Alg. 1 for every label in ``labels`` at once (one batch row per label; rows are
    independent because the model is evaluated per example in eval mode).

    Returns (reconstructions (L, C, H, W) float32 in [0, 1], best cost per row, iterations per
    row, stop reason per row: "max_iter" | "no_progress" | "gamma").  Iterate ``i`` is the
    input after ``i`` gradient steps; the rule is checked on each new iterate, and a stopped
    row is frozen while the others go on.
    """
    import torch

    dev = torch.device(device)
    lab = torch.as_tensor(np.asarray(labels, dtype=np.int64), device=dev)
    n = int(lab.numel())
    model.eval()
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.zeros((n, *input_shape), dtype=torch.float32, device=dev)
    history = np.full((config.max_iter + 1, n), np.nan)
    best_x = x.clone()
    best_c = np.full(n, np.inf)
    active = np.ones(n, dtype=bool)
    iters = np.zeros(n, dtype=np.int64)
    reasons = ["max_iter"] * n
    rows = torch.arange(n, device=dev)
    try:
        for i in range(config.max_iter + 1):
            x.requires_grad_(True)
            cost = 1.0 - torch.softmax(model(x), dim=1)[rows, lab]
            (grad,) = torch.autograd.grad(cost.sum(), x)
            c = cost.detach().cpu().numpy().astype(np.float64)
            history[i] = c
            improved = active & (c < best_c)
            if improved.any():
                idx = torch.as_tensor(np.flatnonzero(improved), device=dev)
                best_x[idx] = x.detach()[idx]
                best_c[improved] = c[improved]
            if i > 0:
                lo = max(0, i - config.patience)
                window_max = np.max(history[lo:i], axis=0)
                stall = active & (c >= window_max) & (i >= config.patience)
                done = active & (c <= config.gamma)
                for r in np.flatnonzero(stall | done):
                    reasons[r] = "gamma" if done[r] else "no_progress"
                active &= ~(stall | done)
                iters[active | stall | done] = i
            if i == config.max_iter or not active.any():
                break
            step = torch.as_tensor(active, device=dev).view(-1, *([1] * len(input_shape)))
            with torch.no_grad():
                x = torch.where(step, x.detach() - config.lr * grad, x.detach()).clamp_(0.0, 1.0)
    finally:
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)
    return best_x.detach().cpu().numpy().astype(np.float32), best_c, iters, tuple(reasons)


# --------------------------------------------------------------------------- SSIM
def _gaussian_window(size: int, sigma: float) -> np.ndarray:
    ax = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(ax**2) / (2.0 * sigma**2))
    w = np.outer(g, g)
    return w / w.sum()


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 1.0, sigma: float = 1.5) -> float:
    """Mean SSIM (Wang et al. 2004, Eq. 13) of two images (H, W) or (C, H, W); channels are
    averaged.  Gaussian window of std ``sigma``, size min(11, H, W) (odd), 'valid' positions
    only; C1 = (0.01 L)^2, C2 = (0.03 L)^2 with L = ``data_range``.  Sample covariances use the
    window weights (as in the paper)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise InvalidParameterError(f"SSIM needs equal shapes, got {a.shape} and {b.shape}")
    if a.ndim == 2:
        a, b = a[None], b[None]
    if a.ndim != 3:
        raise InvalidParameterError("SSIM needs (H, W) or (C, H, W) images")
    size = min(11, a.shape[1], a.shape[2])
    size = size if size % 2 == 1 else size - 1
    w = _gaussian_window(size, sigma)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    from numpy.lib.stride_tricks import sliding_window_view

    vals = []
    for ca, cb in zip(a, b):
        pa = sliding_window_view(ca, (size, size))
        pb = sliding_window_view(cb, (size, size))
        mu_a = np.einsum("ijkl,kl->ij", pa, w)
        mu_b = np.einsum("ijkl,kl->ij", pb, w)
        var_a = np.einsum("ijkl,kl->ij", pa * pa, w) - mu_a**2
        var_b = np.einsum("ijkl,kl->ij", pb * pb, w) - mu_b**2
        cov = np.einsum("ijkl,kl->ij", pa * pb, w) - mu_a * mu_b
        num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
        den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
        vals.append(np.mean(num / den))
    return float(np.mean(vals))


# --------------------------------------------------------------------------- the attack
@dataclass(frozen=True)
class InversionResult:
    """Per-class reconstructions (K, C, H, W), the members' class means, and the metrics.

    ``eval_accuracy``: fraction of reconstructions the independent classifier labels with
    their target class (chance = 1/K); ``eval_classifier_accuracy``: that classifier's own
    accuracy on held-out test images (how far to trust it).  ``mse``/``ssim``: per class and
    mean, against the members' class mean; ``baseline_mse``/``baseline_ssim``: the same for
    the overall held-out mean image (what no model access gives).  NaN for classes without
    members.
    """

    reconstructions: np.ndarray
    class_means: np.ndarray
    eval_accuracy: float
    eval_classifier_accuracy: float
    eval_predictions: np.ndarray
    mse: np.ndarray
    ssim: np.ndarray
    baseline_mse: float
    baseline_ssim: float
    confidences: np.ndarray
    iterations: np.ndarray
    stop_reasons: tuple[str, ...]
    config: InversionConfig
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        return {
            "eval_accuracy": self.eval_accuracy,
            "eval_classifier_accuracy": self.eval_classifier_accuracy,
            "mse": float(np.nanmean(self.mse)),
            "ssim": float(np.nanmean(self.ssim)),
            "baseline_mse": self.baseline_mse,
            "baseline_ssim": self.baseline_ssim,
            "per_class": {
                "mse": self.mse.tolist(),
                "ssim": self.ssim.tolist(),
                "target_confidence": self.confidences.tolist(),
                "predicted": self.eval_predictions.tolist(),
                "iterations": self.iterations.tolist(),
                "stop_reason": list(self.stop_reasons),
            },
            "config": {
                "max_iter": self.config.max_iter,
                "patience": self.config.patience,
                "gamma": self.config.gamma,
                "lr": self.config.lr,
            },
            "notes": list(self.notes),
        }


#: The evaluation classifier trains on at most this many held-out images (seeded subsample).
EVAL_MAX_TRAIN = 10_000


def train_eval_classifier(x: np.ndarray, y: np.ndarray, seed: int = 0, max_train: int = EVAL_MAX_TRAIN):
    """Independent evaluation classifier: multinomial logistic regression on flattened pixels
    (scikit-learn, L2, C = 1), trained on held-out images only (a seeded subsample of at most
    ``max_train`` of them, to bound the time on MNIST-sized data)."""
    from sklearn.linear_model import LogisticRegression

    x, y = np.asarray(x), np.asarray(y)
    if len(x) > max_train:
        keep = np.random.default_rng(seed).choice(len(x), size=max_train, replace=False)
        x, y = x[keep], y[keep]
    clf = LogisticRegression(max_iter=2000, random_state=seed)
    clf.fit(np.asarray(x, dtype=np.float64).reshape(len(x), -1), y)
    return clf


def model_inversion(
    model,
    members: tuple[np.ndarray, np.ndarray],
    heldout: tuple[np.ndarray, np.ndarray],
    num_classes: int,
    *,
    test: tuple[np.ndarray, np.ndarray] | None = None,
    config: InversionConfig = InversionConfig(),
    device: str = "cpu",
    seed: int = 0,
) -> InversionResult:
    """MI-FACE for every class, scored against the members' class means.

    ``members``: the target's training images and labels (only their class means are used);
    ``heldout``: images the target never trained on, for the evaluation classifier and the
    baseline; ``test`` (optional): where the evaluation classifier's own accuracy is measured
    (default: ``heldout``, which overstates it).
    """
    xm, ym = np.asarray(members[0]), np.asarray(members[1]).astype(np.int64)
    xh, yh = np.asarray(heldout[0]), np.asarray(heldout[1]).astype(np.int64)
    if xm.ndim != 4 or xh.ndim != 4 or xm.shape[1:] != xh.shape[1:]:
        raise InvalidParameterError("member and held-out images must be (N, C, H, W) of one shape")
    if len(xh) < 2 or len(np.unique(yh)) < 2:
        raise InvalidParameterError("model inversion needs held-out images of at least 2 classes")
    shape = tuple(int(s) for s in xm.shape[1:])
    rec, best_cost, iters, reasons = mi_face(model, np.arange(int(num_classes)), shape, config, device)
    conf = 1.0 - best_cost
    means = np.stack(
        [
            xm[ym == k].mean(0) if np.any(ym == k) else np.full(shape, np.nan, np.float32)
            for k in range(int(num_classes))
        ]
    ).astype(np.float32)
    clf = train_eval_classifier(xh, yh, seed)
    pred = clf.predict(rec.reshape(len(rec), -1).astype(np.float64))
    xt, yt = test if test is not None else (xh, yh)
    clf_acc = float(np.mean(clf.predict(np.asarray(xt, np.float64).reshape(len(xt), -1)) == yt))
    mse = np.array([float(np.mean((rec[k] - means[k]) ** 2)) for k in range(len(rec))])
    ss = np.array(
        [ssim(rec[k], means[k]) if np.all(np.isfinite(means[k])) else np.nan for k in range(len(rec))]
    )
    overall = xh.mean(0)
    base_mse = float(np.nanmean([np.mean((overall - means[k]) ** 2) for k in range(len(rec))]))
    base_ssim = float(
        np.nanmean([ssim(overall, means[k]) if np.all(np.isfinite(means[k])) else np.nan
                    for k in range(len(rec))])
    )
    notes = []
    if test is None:
        notes.append("evaluation classifier accuracy measured on its own training data")
    return InversionResult(
        reconstructions=rec,
        class_means=means,
        eval_accuracy=float(np.mean(pred == np.arange(len(rec)))),
        eval_classifier_accuracy=clf_acc,
        eval_predictions=np.asarray(pred, dtype=np.int64),
        mse=mse,
        ssim=ss,
        baseline_mse=base_mse,
        baseline_ssim=base_ssim,
        confidences=np.asarray(conf),
        iterations=np.asarray(iters, dtype=np.int64),
        stop_reasons=tuple(reasons),
        config=config,
        notes=tuple(notes),
    )
