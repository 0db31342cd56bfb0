"""Descriptive ROC metrics of a membership attack (point estimates, no confidence):
AUC (Mann-Whitney), TPR at fixed FPR (Carlini et al. 2022, "Membership Inference Attacks From
First Principles", S&P, Sec. 3), balanced accuracy and advantage (Yeom et al. 2018, CSF, Def. 4).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from dpaudit.errors import InvalidParameterError
from dpaudit.stats._validate import check_scores
from dpaudit.stats.bounds import counts_at

#: FPR levels at which TPR is reported (LiRA's low-FPR regime; Carlini et al. 2022, Sec. 3).
FPR_LEVELS: tuple[float, ...] = (0.1, 0.01, 0.001)


@dataclass(frozen=True)
class RocMetrics:
    """Descriptive ROC summary of an attack (point estimates; no confidence attached).

    ``fpr``/``tpr``: the empirical ROC curve (rule "member iff score >= threshold", from the
    strictest threshold to the loosest, starting at (0, 0) and ending at (1, 1)).
    ``auc``: area under it = P(member score > non-member score) + 0.5 P(tie) (Mann-Whitney).
    ``tpr_at_fpr``: best TPR among thresholds with FPR <= level.  ``balanced_accuracy``:
    max over thresholds of (TPR + TNR)/2; ``advantage``: max(TPR - FPR) (Yeom et al. 2018,
    Def. 4), = 2 * balanced_accuracy - 1.  Maxima are taken over thresholds on the same data,
    so they are optimistic descriptions, not bounds; the epsilon bound is the calibrated number.
    """

    auc: float
    tpr_at_fpr: dict[float, float]
    balanced_accuracy: float
    advantage: float
    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    n_members: int
    n_nonmembers: int
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self, curve: bool = False) -> dict:
        out = {
            "auc": self.auc,
            "tpr_at_fpr": {str(k): v for k, v in self.tpr_at_fpr.items()},
            "balanced_accuracy": self.balanced_accuracy,
            "advantage": self.advantage,
            "n_members": self.n_members,
            "n_nonmembers": self.n_nonmembers,
            "notes": list(self.notes),
        }
        if curve:
            out["fpr"] = self.fpr.tolist()
            out["tpr"] = self.tpr.tolist()
        return out


def roc_metrics(
    member_scores: Sequence[float] | np.ndarray,
    nonmember_scores: Sequence[float] | np.ndarray,
    fpr_levels: Sequence[float] = FPR_LEVELS,
) -> RocMetrics:
    """ROC curve, AUC, TPR at the given FPR levels, balanced accuracy and advantage."""
    m = check_scores(member_scores, "member_scores")
    nm = check_scores(nonmember_scores, "nonmember_scores")
    ms, ns = np.sort(m), np.sort(nm)
    taus = np.unique(np.concatenate([ms, ns]))[::-1]  # strict -> loose
    tp, fp = counts_at(ms, ns, taus)
    tpr = np.concatenate([[0.0], tp / m.size])
    fpr = np.concatenate([[0.0], fp / nm.size])
    thresholds = np.concatenate([[np.inf], taus])
    auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))
    notes = []
    tpr_at = {}
    for level in fpr_levels:
        lv = float(level)
        if not 0.0 <= lv <= 1.0:
            raise InvalidParameterError(f"FPR level must be in [0, 1], got {level!r}")
        tpr_at[lv] = float(tpr[fpr <= lv + 1e-12].max())
        if lv * nm.size < 1.0:
            notes.append(
                f"FPR {lv:g} is below the resolution 1/{nm.size} of the non-member set: "
                f"TPR there is measured at FPR = 0"
            )
    adv = float(np.max(tpr - fpr))
    return RocMetrics(
        auc=auc,
        tpr_at_fpr=tpr_at,
        balanced_accuracy=(1.0 + adv) / 2.0,
        advantage=adv,
        fpr=fpr,
        tpr=tpr,
        thresholds=thresholds,
        n_members=int(m.size),
        n_nonmembers=int(nm.size),
        notes=tuple(notes),
    )
