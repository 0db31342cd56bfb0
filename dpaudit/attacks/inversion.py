"""Model inversion: MI-FACE (Fredrikson, Jha, Ristenpart, "Model Inversion Attacks that
Exploit Confidence Information and Basic Countermeasures", CCS 2015, Sec. 5.2, Alg. 1).

For each class ``l`` gradient descent on the input, ``x_i = Process(x_{i-1} - lambda * grad
c(x_{i-1}))`` with ``Process`` = clipping to the valid pixel range [0, 1], and the paper's
stopping rule: stop after ``alpha`` iterations, or when the cost has not improved on the
last ``beta`` iterates (``c(x_i) >= max(c(x_{i-1}), ..., c(x_{i-beta}))``), or when the
confidence gap ``1 - p_l(x_i) <= gamma``; return the iterate with the lowest cost.  The
start is the paper's ``x_0 = 0`` and alpha = 5000, beta = 100, lambda = 0.1 are the paper's
values.  Departures, all parameters recorded in the result:

* the cost is ``c(x) = -z_l(x)``, minus the target's *unnormalised* score (logit) of class
  ``l`` -- the class-model visualisation of Simonyan, Vedaldi, Zisserman, "Deep Inside
  Convolutional Networks", ICLR 2014 workshop, Sec. 2 -- instead of the paper's ``1 - p_l(x)``.
  Simonyan et al.'s reason is the one we measured: the posterior ``p_l`` can be raised by
  *lowering the other classes' scores*, so a softmax cost is satisfied by faint, low-contrast
  inputs that say little about class ``l``, while the class score only rises with evidence
  for ``l``.  ``1 - p_l`` is also a dead zone at the all-zero start: its gradient is
  ``p_l * grad(-log p_l)`` and the MNIST CNN gives several classes p_l <= 4e-4 there (3 of 10
  classes recognised, the rest black).  ``cost="log_prob"`` (``-log p_l``, which has the
  paper's minimisers and a gradient of order one in the dead zone) and ``cost="paper"``
  (``1 - p_l``) remain available.  How the default was chosen: on a *development* model, a
  non-private Fashion-MNIST CNN (never the MNIST or digits models the results report, nor
  their judge), -z_l recognised 6, 8, 8 of 10 classes (jitter seeds 0, 1, 2) against 3, 4, 3
  for -log p_l (docs/attacks.md, "How the defaults were chosen"); the clip to [0, 1] bounds the score, so
  the paper's stopping rule still ends the descent;
* ``gamma = 0`` (stop on alpha or beta only) instead of the paper's 0.99, which was set for its
  face models: on a 10-class model any gamma stops as soon as the class wins, long before the
  image has formed (the confidence passes 99 % within a few steps on a CNN); ``gamma`` is
  always tested on ``1 - p_l``, whatever the cost;
* ``jitter = 1``: each step's gradient is taken at the image translated by a random shift of
  at most one pixel (transformation robustness, Mordvintsev, Olah, Tyka 2015 "Inceptionism";
  Olah, Mordvintsev, Schubert 2017 "Feature Visualization"), a data-independent prior. Plain
  descent on a CNN finds high-frequency patterns that fool the target but look like nothing
  (development model, jitter seeds 0, 1, 2: 4, 4, 4 of 10 classes without jitter; 6, 8, 8 with
  jitter 1; 6, 8, 6 with jitter 2);
  the stopping rule and the returned iterate use the cost of the untranslated image.

Metrics that cannot be gamed (how much of the training data the reconstructions reveal):

* ``eval_accuracy``: the fraction of classes whose reconstruction an *independent* classifier
  (multinomial logistic regression, scikit-learn -- another model family than the target --
  trained on held-out images the target never saw) assigns to its class, where a blank or
  near-constant reconstruction (pixel standard deviation below :data:`MIN_CONTRAST`) never
  counts: otherwise a black image that the classifier happens to call "5" would count as
  recognising class 5. ``raw_eval_accuracy`` is the classifier's plain accuracy, for
  comparison; ``baseline_eval_accuracy`` is its plain accuracy on the uninformative baseline
  images (a blank image and the mean held-out image, each offered for every class) -- what
  any classifier "recognises" without the attack. The classifier's own test accuracy and
  confusion matrix say how far to trust it.
* ``mse`` / ``ssim`` per class to the mean image of the target's training members of that
  class (SSIM of Wang, Bovik, Sheikh, Simoncelli 2004, Eq. 13, Gaussian window sigma = 1.5,
  K1 = 0.01, K2 = 0.03, data range 1; :func:`ssim`), beside the same metrics for the mean
  held-out image ("baseline"): a reconstruction that beats the baseline carries
  class-specific information.
* ``member_nearer_classes``: in how many classes the reconstruction's nearest *training
  member* of that class (Euclidean distance in pixel space) is nearer than its nearest
  *held-out* image of that class, with both pools subsampled (seeded) to the same size per
  class.  Members and held-out images are random halves of one population (the target's
  member split), so if the reconstruction carries nothing about *which* images were trained
  on, each pool is equally likely to hold the nearer image: ``member_nearer_p_value`` =
  P[Binomial(K', 1/2) >= j] over the K' classes present in both pools.  This is the question
  differential privacy answers (does the attack reveal members?), unlike recognition, which
  measures class appearance -- a population property DP does not hide.  For third-party
  models the non-members are the user's, and the test is only as fair as their draw.
* ``verdict``: ``reveals class appearance`` when the count of recognised classes is
  significant against chance (one-sided binomial test at 5 %: k recognised of K classes with
  P[Binomial(K, 1/K) >= k] < 0.05), else ``nothing recognisable``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dpaudit.errors import InvalidParameterError

#: Below this pixel standard deviation (data range 1) a reconstruction is "near-constant"
#: and never counts as recognised. A blank image has 0; the MNIST / digits class means have
#: about 0.3; 0.05 is a 1/20 of the range, below any stroke drawn on a flat background.
MIN_CONTRAST = 0.05


#: The costs :func:`mi_face` descends: name -> what it is (see the module docstring).
COSTS = {
    "logit": "-z_l, minus the class score (Simonyan et al. 2014)",
    "log_prob": "-log p_l",
    "paper": "1 - p_l (Fredrikson et al. 2015)",
}


@dataclass(frozen=True)
class InversionConfig:
    """MI-FACE parameters: ``max_iter`` (alpha), ``patience`` (beta), ``gamma`` (stop when
    1 - p_l <= gamma; 0 = never, run until no progress), ``lr`` (lambda, step on the input in
    pixel units), ``start`` (the constant value of the starting image, in [0, 1]; the paper's
    0), ``jitter`` (each step's gradient is taken at the image translated by a random shift of
    up to this many pixels; 0 = plain gradient descent), ``seed`` (of those shifts), ``cost``
    (one of :data:`COSTS`)."""

    max_iter: int = 5000
    patience: int = 100
    gamma: float = 0.0
    lr: float = 0.1
    start: float = 0.0
    jitter: int = 1
    seed: int = 0
    cost: str = "logit"

    def __post_init__(self) -> None:
        if self.max_iter < 1 or self.patience < 1:
            raise InvalidParameterError("max_iter and patience must be >= 1")
        if not (0 <= self.gamma < 1) or not (self.lr > 0 and math.isfinite(self.lr)):
            raise InvalidParameterError("need 0 <= gamma < 1 and lr > 0")
        if not 0.0 <= self.start <= 1.0:
            raise InvalidParameterError(f"the starting pixel value must be in [0, 1], got {self.start!r}")
        if int(self.jitter) != self.jitter or self.jitter < 0:
            raise InvalidParameterError(f"jitter must be a non-negative number of pixels, got {self.jitter!r}")
        if self.cost not in COSTS:
            raise InvalidParameterError(f"unknown inversion cost {self.cost!r}; choose from {', '.join(COSTS)}")


def _shift(x: Any, dy: int, dx: int) -> Any:
    """``x`` (N, C, H, W) translated by (dy, dx) pixels, the uncovered border set to 0."""
    import torch

    if dy == 0 and dx == 0:
        return x
    out = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
    h, w = x.shape[2], x.shape[3]
    keep = torch.ones((h, w), dtype=x.dtype, device=x.device)
    if dy > 0:
        keep[:dy] = 0
    elif dy < 0:
        keep[h + dy:] = 0
    if dx > 0:
        keep[:, :dx] = 0
    elif dx < 0:
        keep[:, w + dx:] = 0
    return out * keep


def _costs(logits: Any, labels: Any, kind: str) -> Any:
    """Per-row cost of :data:`COSTS` ``kind`` from the target's logits (N, K)."""
    import torch

    if kind == "logit":
        return -logits.gather(1, labels.view(-1, 1)).view(-1)
    log_p = -torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    return -log_p if kind == "log_prob" else -torch.expm1(log_p)


def mi_face(
    model: Any,
    labels: list[int] | np.ndarray,
    input_shape: tuple[int, ...],
    config: InversionConfig = InversionConfig(),
    device: str = "cpu",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """Run Alg. 1 (with ``config.cost``, see the module docstring) for every label in
    ``labels`` at once (one batch row per label; rows are independent because the model is
    evaluated per example in eval mode).

    Returns (reconstructions (L, C, H, W) float32 in [0, 1], ``1 - p_l`` at each row's best
    iterate, iterations per row, stop reason per row: "max_iter" | "no_progress" | "gamma").
    Iterate ``i`` is the input after ``i`` gradient steps; the rule is checked on each new
    iterate, and a stopped row is frozen while the others go on.
    """
    import torch

    dev = torch.device(device)
    lab = torch.as_tensor(np.asarray(labels, dtype=np.int64), device=dev)
    n = int(lab.numel())
    model.eval()
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.full((n, *input_shape), float(config.start), dtype=torch.float32, device=dev)
    history = np.full((config.max_iter + 1, n), np.nan)
    best_x = x.clone()
    best_c = np.full(n, np.inf)
    best_gap = np.ones(n)
    active = np.ones(n, dtype=bool)
    iters = np.zeros(n, dtype=np.int64)
    reasons = ["max_iter"] * n
    gen = np.random.default_rng(config.seed)
    try:
        for i in range(config.max_iter + 1):
            x.requires_grad_(True)
            logits = model(x)
            cost = _costs(logits, lab, config.cost)
            if config.jitter:
                dy, dx = (int(v) for v in gen.integers(-config.jitter, config.jitter + 1, size=2))
                moved = _costs(model(_shift(x, dy, dx)), lab, config.cost).sum()
                (grad,) = torch.autograd.grad(moved, x)
            else:
                (grad,) = torch.autograd.grad(cost.sum(), x)
            c = cost.detach().cpu().numpy().astype(np.float64)
            gap = -np.expm1(-torch.nn.functional.cross_entropy(logits.detach().double(), lab, reduction="none")
                            .cpu().numpy().astype(np.float64))
            history[i] = c
            improved = active & (c < best_c)
            if improved.any():
                idx = torch.as_tensor(np.flatnonzero(improved), device=dev)
                best_x[idx] = x.detach()[idx]
                best_c[improved] = c[improved]
                best_gap[improved] = gap[improved]
            if i > 0:
                _apply_stopping_rule(i, c, gap, history, config, active, iters, reasons)
            if i == config.max_iter or not active.any():
                break
            step = torch.as_tensor(active, device=dev).view(-1, *([1] * len(input_shape)))
            with torch.no_grad():
                x = torch.where(step, x.detach() - config.lr * grad, x.detach()).clamp_(0.0, 1.0)
    finally:
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)
    return best_x.detach().cpu().numpy().astype(np.float32), best_gap, iters, tuple(reasons)


def _apply_stopping_rule(i: int, c: np.ndarray, gap: np.ndarray, history: np.ndarray, config: InversionConfig,
                         active: np.ndarray, iters: np.ndarray, reasons: list[str]) -> None:
    """The paper's rule on iterate ``i`` (costs ``c``, confidence gaps ``gap`` = 1 - p_l): no
    improvement on the last ``patience`` iterates, or ``1 - p_l <= gamma``; updates
    ``active``/``iters``/``reasons``."""
    lo = max(0, i - config.patience)
    window_max = np.max(history[lo:i], axis=0)
    stall = active & (c >= window_max) & (i >= config.patience)
    done = active & (gap <= config.gamma) if config.gamma > 0 else np.zeros_like(active)  # 0 = never
    for r in np.flatnonzero(stall | done):
        reasons[r] = "gamma" if done[r] else "no_progress"
    active &= ~(stall | done)
    iters[active | stall | done] = i


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
    """Per-class reconstructions (K, C, H, W), the members' class means, and the metrics
    (see the module docstring).

    ``recognised``: per class, the evaluation classifier labels the reconstruction with its
    class *and* it is not near-constant (``contrast`` >= :data:`MIN_CONTRAST`);
    ``eval_accuracy``: their fraction (the honest recognition rate); ``raw_eval_accuracy``:
    the classifier's plain accuracy on the reconstructions; ``baseline_eval_accuracy``: its
    plain accuracy on the baseline images (``baseline_predictions``: label of the blank and
    of the mean held-out image); ``eval_classifier``: what the classifier is, with its test
    accuracy ``eval_classifier_accuracy`` and ``eval_classifier_confusion`` (rows: true class,
    columns: predicted). ``mse``/``ssim``: per class against the members' class mean;
    ``baseline_mse``/``baseline_ssim``: per class for the mean held-out image. NaN for classes
    without members. ``nearest_member_distance``/``nearest_heldout_distance``: per class, see
    :func:`nearest_distances` (``member_nearer``, ``member_nearer_p_value``).
    """

    reconstructions: np.ndarray
    class_means: np.ndarray
    eval_accuracy: float
    raw_eval_accuracy: float
    baseline_eval_accuracy: float
    baseline_predictions: dict[str, int]
    eval_classifier: str
    eval_classifier_accuracy: float
    eval_classifier_confusion: np.ndarray
    eval_predictions: np.ndarray
    recognised: np.ndarray
    contrast: np.ndarray
    mse: np.ndarray
    ssim: np.ndarray
    baseline_mse: np.ndarray
    baseline_ssim: np.ndarray
    nearest_member_distance: np.ndarray
    nearest_heldout_distance: np.ndarray
    confidences: np.ndarray
    iterations: np.ndarray
    stop_reasons: tuple[str, ...]
    config: InversionConfig
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def n_recognised(self) -> int:
        return int(np.sum(self.recognised))

    @property
    def p_value(self) -> float:
        """P[Binomial(K, 1/K) >= recognised]: chance of this many hits without information."""
        from scipy.stats import binom

        k = len(self.recognised)
        return float(binom.sf(self.n_recognised - 1, k, 1.0 / k))

    @property
    def member_nearer(self) -> np.ndarray:
        """Per class: the nearest member is nearer than the nearest held-out image (False where
        a pool lacks the class)."""
        return np.less(self.nearest_member_distance, self.nearest_heldout_distance)  # NaN compares False

    @property
    def member_nearer_p_value(self) -> float:
        """P[Binomial(K', 1/2) >= member_nearer classes], K' = classes present in both pools."""
        from scipy.stats import binom

        k = int(np.sum(np.isfinite(self.nearest_member_distance) & np.isfinite(self.nearest_heldout_distance)))
        return float(binom.sf(int(np.sum(self.member_nearer)) - 1, k, 0.5)) if k else 1.0

    @property
    def verdict(self) -> str:
        return "reveals class appearance" if self.p_value < 0.05 else "nothing recognisable"

    def verdict_line(self) -> str:
        """One sentence for people (report.md, the command's summary)."""
        k = len(self.recognised)
        return (f"MI-FACE: {self.n_recognised} of {k} classes recognisable to an independent classifier "
                f"(chance {1 / k:.2f} a class, p = {self.p_value:.2g}; blank/mean images score "
                f"{self.baseline_eval_accuracy:.2f}) -> {self.verdict}; nearest training member nearer "
                f"than the nearest held-out image in {int(np.sum(self.member_nearer))} of {k} classes "
                f"(p = {self.member_nearer_p_value:.2g})")

    def to_dict(self) -> dict:
        return {
            "verdict": self.verdict,
            "recognised_classes": self.n_recognised,
            "eval_accuracy": self.eval_accuracy,
            "raw_eval_accuracy": self.raw_eval_accuracy,
            "baseline_eval_accuracy": self.baseline_eval_accuracy,
            "baseline_predictions": dict(self.baseline_predictions),
            "p_value": self.p_value,
            "eval_classifier": self.eval_classifier,
            "eval_classifier_accuracy": self.eval_classifier_accuracy,
            "eval_classifier_confusion": self.eval_classifier_confusion.tolist(),
            "min_contrast": MIN_CONTRAST,
            "mse": float(np.nanmean(self.mse)),
            "ssim": float(np.nanmean(self.ssim)),
            "baseline_mse": float(np.nanmean(self.baseline_mse)),
            "baseline_ssim": float(np.nanmean(self.baseline_ssim)),
            "member_nearer_classes": int(np.sum(self.member_nearer)),
            "member_nearer_p_value": self.member_nearer_p_value,
            "per_class": {
                "recognised": self.recognised.tolist(),
                "predicted": self.eval_predictions.tolist(),
                "contrast": self.contrast.tolist(),
                "mse": self.mse.tolist(),
                "ssim": self.ssim.tolist(),
                "baseline_mse": self.baseline_mse.tolist(),
                "baseline_ssim": self.baseline_ssim.tolist(),
                "nearest_member_distance": _nan_to_none(self.nearest_member_distance),
                "nearest_heldout_distance": _nan_to_none(self.nearest_heldout_distance),
                "target_confidence": self.confidences.tolist(),
                "iterations": self.iterations.tolist(),
                "stop_reason": list(self.stop_reasons),
            },
            "config": {
                "max_iter": self.config.max_iter,
                "patience": self.config.patience,
                "gamma": self.config.gamma,
                "lr": self.config.lr,
                "start": self.config.start,
                "jitter": self.config.jitter,
                "cost": self.config.cost,
            },
            "notes": list(self.notes),
        }


#: The evaluation classifier trains on at most this many held-out images (seeded subsample).
EVAL_MAX_TRAIN = 10_000


def train_eval_classifier(x: np.ndarray, y: np.ndarray, seed: int = 0, max_train: int = EVAL_MAX_TRAIN) -> Any:
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


def _flat(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).reshape(len(x), -1)


def _image_metrics(rec: np.ndarray, means: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per class (MSE, SSIM) of ``rec[k]`` and of the single image ``other`` to ``means[k]``."""
    def pair(img: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
        if not np.all(np.isfinite(ref)):
            return math.nan, math.nan
        return float(np.mean((img - ref) ** 2)), ssim(img, ref)

    got = np.array([pair(rec[k], means[k]) for k in range(len(rec))])
    base = np.array([pair(other, means[k]) for k in range(len(rec))])
    return got[:, 0], got[:, 1], base[:, 0], base[:, 1]


def _nan_to_none(a: np.ndarray) -> list[float | None]:
    return [float(v) if np.isfinite(v) else None for v in np.asarray(a, dtype=np.float64)]


def nearest_distances(rec: np.ndarray, members: tuple[np.ndarray, np.ndarray],
                      heldout: tuple[np.ndarray, np.ndarray], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per class k: Euclidean distance (pixel space) from ``rec[k]`` to its nearest member of
    class k and to its nearest held-out image of class k, both pools subsampled (seeded) to
    n_k = the smaller pool's count of class k, so that each is equally likely to hold the
    nearer image when ``rec`` says nothing about membership. NaN where a pool lacks class k."""
    rng = np.random.default_rng(seed)
    out = np.full((2, len(rec)), np.nan)
    pools = [(np.asarray(x), np.asarray(y)) for x, y in (members, heldout)]
    for k in range(len(rec)):
        idx = [np.flatnonzero(y == k) for _, y in pools]
        n = min(len(i) for i in idx)
        if n == 0:
            continue
        target = np.asarray(rec[k], dtype=np.float64).ravel()
        for j, ((x, _), i) in enumerate(zip(pools, idx)):
            pick = rng.choice(i, size=n, replace=False) if len(i) > n else i
            diff = np.asarray(x[pick], dtype=np.float64).reshape(n, -1) - target
            out[j, k] = float(np.sqrt(np.min(np.einsum("ij,ij->i", diff, diff))))
    return out[0], out[1]


def model_inversion(
    model: Any,
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
    baseline; ``test`` (optional): where the evaluation classifier's own accuracy and
    confusion are measured (default: ``heldout``, which overstates it).
    """
    xm, ym = np.asarray(members[0]), np.asarray(members[1]).astype(np.int64)
    xh, yh = np.asarray(heldout[0]), np.asarray(heldout[1]).astype(np.int64)
    if xm.ndim != 4 or xh.ndim != 4 or xm.shape[1:] != xh.shape[1:]:
        raise InvalidParameterError("member and held-out images must be (N, C, H, W) of one shape")
    if len(xh) < 2 or len(np.unique(yh)) < 2:
        raise InvalidParameterError("model inversion needs held-out images of at least 2 classes")
    k = int(num_classes)
    shape = tuple(int(s) for s in xm.shape[1:])
    rec, gap, iters, reasons = mi_face(model, np.arange(k), shape, config, device)
    means = np.stack([xm[ym == c].mean(0) if np.any(ym == c) else np.full(shape, np.nan, np.float32)
                      for c in range(k)]).astype(np.float32)
    clf = train_eval_classifier(xh, yh, seed)
    n_clf = min(len(xh), EVAL_MAX_TRAIN)
    pred = np.asarray(clf.predict(_flat(rec)), dtype=np.int64)
    contrast = rec.reshape(k, -1).std(axis=1).astype(np.float64)
    recognised = (pred == np.arange(k)) & (contrast >= MIN_CONTRAST)
    xt, yt = test if test is not None else (xh, yh)
    pred_t = np.asarray(clf.predict(_flat(xt)), dtype=np.int64)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (np.asarray(yt, dtype=np.int64), pred_t), 1)
    overall = xh.mean(0)
    baselines = {"blank": np.zeros(shape, np.float32), "mean": overall.astype(np.float32)}
    base_pred = {name: int(clf.predict(_flat(img[None]))[0]) for name, img in baselines.items()}
    # each baseline image offered as the reconstruction of every class: one hit at most
    base_acc = float(np.mean([np.mean(np.full(k, p) == np.arange(k)) for p in base_pred.values()]))
    mse, ss, base_mse, base_ss = _image_metrics(rec, means, overall)
    d_mem, d_out = nearest_distances(rec, (xm, ym), (xh, yh), seed)
    notes = []
    if test is None:
        notes.append("evaluation classifier accuracy measured on its own training data")
    return InversionResult(
        reconstructions=rec,
        class_means=means,
        eval_accuracy=float(np.mean(recognised)),
        raw_eval_accuracy=float(np.mean(pred == np.arange(k))),
        baseline_eval_accuracy=base_acc,
        baseline_predictions=base_pred,
        eval_classifier=(f"logistic regression on pixels (scikit-learn; another model family than the "
                         f"target), trained on {n_clf} held-out images the target never trained on"),
        eval_classifier_accuracy=float(np.mean(pred_t == np.asarray(yt))),
        eval_classifier_confusion=confusion,
        eval_predictions=pred,
        recognised=recognised,
        contrast=contrast,
        mse=mse,
        ssim=ss,
        baseline_mse=base_mse,
        baseline_ssim=base_ss,
        nearest_member_distance=d_mem,
        nearest_heldout_distance=d_out,
        confidences=1.0 - np.asarray(gap),
        iterations=np.asarray(iters, dtype=np.int64),
        stop_reasons=tuple(reasons),
        config=config,
        notes=tuple(notes),
    )
