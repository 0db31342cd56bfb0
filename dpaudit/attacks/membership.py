"""Membership-inference scores and their evaluation.

* Loss-threshold attack (Yeom, Giacomelli, Fredrikson, Jha 2018, Sec. 3.2 "Adversary 2"):
  an example is called a member when its cross-entropy loss under the target model is low;
  the score is ``-loss`` so that higher means "member".  Sweeping the threshold gives the ROC.
* Logit-scaled confidence (Carlini, Chien, Nasr, Song, Terzis, Tramer 2022, Sec. 4.2 / Eq. 4):
  ``phi = log p_y - log sum_{y' != y} p_{y'}``, computed from logits as
  ``z_y - logsumexp_{y' != y} z_{y'}`` (the softmax normaliser cancels), which is
  approximately Gaussian across training runs and is what LiRA models.

:func:`evaluate_scores` turns any member / non-member scores into a
:class:`MembershipResult`: ROC metrics, the empirical epsilon lower bound with a valid
threshold choice (:mod:`dpaudit.stats`), the caps the claimed (eps, delta) allows, and
the verdict.  Scores, metrics and bounds are numpy; only the model evaluation uses torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.special import logsumexp

from dpaudit import stats
from dpaudit.errors import InvalidParameterError


# --------------------------------------------------------------------------- model outputs
def predict_logits(model, x: np.ndarray, device: str = "cpu", batch_size: int = 512) -> np.ndarray:
    """Logits (float64, shape (N, num_classes)) of ``model`` on images ``x`` (N, C, H, W).

    The model is put in eval mode and run without gradients on ``device``.
    """
    import torch

    if batch_size < 1:
        raise InvalidParameterError("batch_size must be >= 1")
    model.eval()
    dev = torch.device(device)
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            xb = torch.as_tensor(np.asarray(x[i : i + batch_size]), dtype=torch.float32, device=dev)
            out.append(model(xb).detach().to("cpu", torch.float64).numpy())
    if not out:
        return np.zeros((0, 0))
    logits = np.concatenate(out)
    if logits.ndim != 2:
        raise InvalidParameterError(f"model output must be (N, classes) logits, got {logits.shape}")
    return logits


def _check_labels(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    y = np.asarray(y).astype(np.int64).ravel()
    if logits.ndim != 2 or logits.shape[0] != y.shape[0]:
        raise InvalidParameterError(
            f"need one label per row of logits; got logits {logits.shape}, labels {y.shape}"
        )
    if y.size and (y.min() < 0 or y.max() >= logits.shape[1]):
        raise InvalidParameterError(
            f"labels must be in [0, {logits.shape[1]}) for a {logits.shape[1]}-class model"
        )
    return y


def cross_entropy(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-example cross-entropy (nats): ``logsumexp(z) - z_y``."""
    logits = np.asarray(logits, dtype=np.float64)
    y = _check_labels(logits, y)
    return logsumexp(logits, axis=-1) - logits[np.arange(y.size), y]


def logit_confidence(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Carlini et al. 2022's ``phi = log p_y - log sum_{y' != y} p_y'`` (nats), from logits.

    Computed as ``z_y - logsumexp_{y' != y} z_y'``, exact and overflow-free for any logits.
    """
    logits = np.asarray(logits, dtype=np.float64)
    y = _check_labels(logits, y)
    if logits.shape[1] < 2:
        raise InvalidParameterError("logit-scaled confidence needs at least 2 classes")
    idx = np.arange(y.size)
    others = logits.copy()
    others[idx, y] = -np.inf
    return logits[idx, y] - logsumexp(others, axis=-1)


def loss_scores(model, x: np.ndarray, y: np.ndarray, device: str = "cpu") -> np.ndarray:
    """Yeom et al. 2018 loss-threshold scores: ``-cross_entropy`` (higher = "member")."""
    return -cross_entropy(predict_logits(model, x, device), y)


# --------------------------------------------------------------------------- evaluation
@dataclass(frozen=True)
class MembershipResult:
    """One membership attack's outcome against one target.

    ``roc``: descriptive metrics (:class:`~dpaudit.stats.RocMetrics`).
    ``bound``: the empirical epsilon lower bound (:class:`~dpaudit.stats.EpsilonLowerBound`)
    at ``bound.confidence`` and the claimed delta (0 when there is no claim).
    ``caps``: what the claimed (eps, delta) allows (``None`` without a claim).
    ``verdict``: ``consistent`` / ``violation`` / ``no-claim``.
    """

    attack: str
    member_scores: np.ndarray
    nonmember_scores: np.ndarray
    roc: stats.RocMetrics
    bound: stats.EpsilonLowerBound
    claimed_epsilon: float | None
    claimed_delta: float | None
    caps: dict | None
    verdict: str
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self, curve: bool = False) -> dict:
        """JSON-able summary; the keys are a public interface (``dpaudit attack --json``)."""
        roc = self.roc.to_dict(curve=curve)
        return {
            "attack": self.attack,
            "auc": roc["auc"],
            "tpr_at_fpr": roc["tpr_at_fpr"],
            "balanced_accuracy": roc["balanced_accuracy"],
            "advantage": roc["advantage"],
            "epsilon_lower_bound": self.bound.epsilon,
            "confidence": self.bound.confidence,
            "claimed_epsilon": self.claimed_epsilon,
            "claimed_delta": self.claimed_delta,
            "verdict": self.verdict,
            "caps": self.caps,
            "bound": self.bound.to_dict(),
            "n_members": roc["n_members"],
            "n_nonmembers": roc["n_nonmembers"],
            "notes": list(self.notes) + roc["notes"] + list(self.bound.notes),
            **({"roc": {"fpr": roc["fpr"], "tpr": roc["tpr"]}} if curve else {}),
        }


def evaluate_scores(
    attack: str,
    member_scores: np.ndarray,
    nonmember_scores: np.ndarray,
    *,
    claimed_epsilon: float | None = None,
    claimed_delta: float | None = None,
    confidence: float = 0.95,
    method: str = "bonferroni",
    rng: np.random.Generator | int | None = 0,
    notes: tuple[str, ...] = (),
) -> MembershipResult:
    """ROC metrics, epsilon lower bound (at the claimed delta, else 0), caps and verdict.

    The verdict compares the bound (valid with probability >= ``confidence``) with the claim:
    ``violation`` means the model leaks more than its claimed epsilon allows, at that
    confidence; ``consistent`` means this attack found no evidence against the claim (it is
    not a proof of privacy).
    """
    eps_c = None if claimed_epsilon is None else float(claimed_epsilon)
    if eps_c is not None and (math.isnan(eps_c) or eps_c < 0):
        raise InvalidParameterError(f"claimed epsilon must be >= 0, got {claimed_epsilon!r}")
    delta = 0.0 if claimed_delta is None else float(claimed_delta)
    roc = stats.roc_metrics(member_scores, nonmember_scores)
    bound = stats.epsilon_lower_bound_from_scores(
        member_scores, nonmember_scores, delta=delta, confidence=confidence, method=method, rng=rng
    )
    caps = stats.dp_caps(eps_c, claimed_delta) if eps_c is not None else None
    return MembershipResult(
        attack=attack,
        member_scores=np.asarray(member_scores, dtype=np.float64),
        nonmember_scores=np.asarray(nonmember_scores, dtype=np.float64),
        roc=roc,
        bound=bound,
        claimed_epsilon=eps_c,
        claimed_delta=None if claimed_delta is None else float(claimed_delta),
        caps=caps,
        verdict=stats.verdict(bound.epsilon, eps_c),
        notes=tuple(notes),
    )


def bound_explanation(bound: stats.EpsilonLowerBound) -> str:
    """Which tail of the trade-off produced ``bound`` and why the bound is valid (one
    paragraph for people).

    The bound is ``max(ln((1 - delta - FNR̄)/FPR̄), ln((1 - delta - FPR̄)/FNR̄))`` (Kairouz,
    Oh, Viswanath 2015, Thm 2.1): the first term is the *member tail* (few non-members score
    above the threshold while many members do), the second the *non-member tail* (almost no
    member scores below the threshold while many non-members do -- e.g. examples the model
    gets wrong are almost surely not members). Both are tests of the same (eps, delta)
    region, so either is a valid lower bound."""
    if bound.epsilon <= 0:
        return "no threshold separates members from non-members well enough to bound epsilon above 0"
    d = bound.delta
    member_tail = math.log(max(1 - d - bound.fnr_upper, 1e-300)) - math.log(max(bound.fpr_upper, 1e-300))
    nonmember_tail = math.log(max(1 - d - bound.fpr_upper, 1e-300)) - math.log(max(bound.fnr_upper, 1e-300))
    n_mem, n_non = bound.tp + bound.fn, bound.fp + bound.tn
    if member_tail >= nonmember_tail:
        tail = (f"member tail: {bound.tp} of {n_mem} members but only {bound.fp} of {n_non} non-members "
                f"have {bound.rule} = {bound.threshold:.4g}; eps_lb = ln((1 - delta - FNR_up)/FPR_up) "
                f"with FPR_up = {bound.fpr_upper:.3g}, FNR_up = {bound.fnr_upper:.3g}")
    else:
        tail = (f"non-member tail: only {bound.fn} of {n_mem} members but {bound.tn} of {n_non} "
                f"non-members fall below the threshold {bound.threshold:.4g} (calling them non-members "
                f"is almost never wrong); eps_lb = ln((1 - delta - FPR_up)/FNR_up) with "
                f"FNR_up = {bound.fnr_upper:.3g}, FPR_up = {bound.fpr_upper:.3g}")
    if bound.method == "bonferroni":
        why = (f"valid because the threshold is an order statistic whose rank was fixed before the "
               f"scores were seen, and the confidence {bound.confidence:.4g} is split over all "
               f"{bound.n_thresholds} such rules (Clopper-Pearson upper bounds)")
    else:
        why = ("valid because the threshold was chosen on one random half of the scores and the "
               "Clopper-Pearson bounds use only the other half")
    return f"{tail}; {why}"
