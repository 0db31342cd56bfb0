"""LiRA, the likelihood-ratio membership attack (Carlini, Chien, Nasr, Song, Terzis, Tramer,
"Membership Inference Attacks From First Principles", IEEE S&P 2022, Sec. IV, Alg. 1).

Shadow models (:mod:`dpaudit.attacks.shadows`) are trained like the target -- its recorded
recipe and noise, its training-set size -- each on a random half of a population of the
target's candidates.  For an example (x, y) the statistic is the logit-scaled confidence
``phi`` (:func:`dpaudit.attacks.membership.logit_confidence`); across shadows it is modelled
as ``N(mu_in, s_in^2)`` when x was trained on and ``N(mu_out, s_out^2)`` when not, one
Gaussian per query augmentation (Sec. VI-A).

* online:  score = log N(phi_target; mu_in, s_in^2) - log N(phi_target; mu_out, s_out^2)
  (Alg. 1, the likelihood ratio Lambda, in log form).
* offline: the paper's one-sided test ``1 - Pr[Z > phi_target]``, Z ~ N(mu_out, s_out^2) (uses
  only OUT shadows), reported as the z-score ``(phi_target - mu_out) / s_out`` -- a strictly
  increasing function of it, so the ROC is the same, but it does not saturate (1 - Pr[Z > phi]
  rounds to 1 in floating point beyond z ~ 8, which would create false ties at the top).
* augmented queries: with A queries per example the score is the mean over queries of the
  per-query score (the paper's averaging of per-augmentation log-likelihood ratios, which
  treats the queries as independent).
* global variance: with few shadows per-example variances are too noisy, and the paper
  uses one variance shared by all examples (the pooled within-example variance here) below
  :data:`GLOBAL_VARIANCE_BELOW` shadows; per-example variances from there on.
"""

from __future__ import annotations

import concurrent.futures as cf
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from dpaudit.attacks.shadows import (  # noqa: F401  (re-exported: the historical home)
    POOL_MIN_TRAIN,
    InlineExecutor,
    ShadowRecipe,
    ShadowSet,
    ShadowTask,
    dataset_for,
    default_executor,
    pooled,
    query_phi,
    run_shadows,
    shadow_assignment,
    shadow_recipe,
    train_shadow,
    train_shadows,
)
from dpaudit.errors import InvalidParameterError

#: From this many shadows on, per-example variances (Carlini et al. 2022, Sec. IV: "per-example
#: variance ... once there are enough shadows"; global variance below, Sec. VI-B).
GLOBAL_VARIANCE_BELOW = 64


# --------------------------------------------------------------------------- the test
def _log_normal_pdf(x: np.ndarray, mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
    return -0.5 * ((x - mu) / sd) ** 2 - np.log(sd) - 0.5 * math.log(2.0 * math.pi)


def lira_scores(
    target_phi: np.ndarray,
    shadow_phi: np.ndarray,
    in_mask: np.ndarray,
    *,
    online: bool = True,
    global_variance: bool | None = None,
) -> np.ndarray:
    """LiRA scores (higher = "member") for N examples from K shadows.

    ``target_phi`` (N,) or (A, N) for A query augmentations, ``shadow_phi`` (K, N) or
    (K, A, N), ``in_mask`` (K, N) bool.  With augmentations each query gets its own Gaussians
    and the score is the mean of the per-query scores.  Online needs at least one IN and one
    OUT shadow per example; offline at least one OUT.  ``global_variance=None`` pools the
    variance when K < :data:`GLOBAL_VARIANCE_BELOW` or when some example has fewer than 2
    shadows on a side.  Standard deviations are floored at 1e-6; with a single shadow per side
    (K = 2) the pooled scale is set to 1 (with equal in/out variances the ranking of the
    scores does not depend on it).
    """
    t = np.asarray(target_phi, dtype=np.float64)
    s = np.asarray(shadow_phi, dtype=np.float64)
    if t.ndim == 2 and s.ndim == 3:
        if t.shape[0] != s.shape[1]:
            raise InvalidParameterError(f"target has {t.shape[0]} queries, shadows {s.shape[1]}")
        return np.mean([_lira_scores_1q(t[a], s[:, a], in_mask, online, global_variance)
                        for a in range(t.shape[0])], axis=0)
    return _lira_scores_1q(t, s, in_mask, online, global_variance)


def _lira_scores_1q(t: np.ndarray, s: np.ndarray, in_mask: np.ndarray, online: bool,
                    global_variance: bool | None) -> np.ndarray:
    """:func:`lira_scores` for one query: ``t`` (N,), ``s`` (K, N)."""
    m = np.asarray(in_mask, dtype=bool)
    if s.ndim != 2 or s.shape != m.shape or s.shape[1] != t.shape[0]:
        raise InvalidParameterError(
            f"shapes do not match: target {t.shape}, shadows {s.shape}, mask {m.shape}"
        )
    n_in, n_out = m.sum(0), (~m).sum(0)
    if np.any(n_out < 1) or (online and np.any(n_in < 1)):
        raise InvalidParameterError(
            "every example needs OUT shadows (and IN shadows for online LiRA); use K >= 2"
        )
    if not (np.all(np.isfinite(s)) and np.all(np.isfinite(t))):
        raise InvalidParameterError("non-finite logit-scaled confidences")

    def side(mask: np.ndarray, count: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c = np.maximum(count, 1)
        mu = np.where(mask, s, 0.0).sum(0) / c
        resid2 = np.where(mask, (s - mu) ** 2, 0.0)
        pool_var = global_variance
        if pool_var is None:
            pool_var = s.shape[0] < GLOBAL_VARIANCE_BELOW or bool(np.any(count < 2))
        if pool_var:
            dof = int(count.sum()) - int((count > 0).sum())
            # dof = 0 (one shadow per side, K = 2): no variance can be estimated; a common
            # unit scale leaves the ranking (hence every metric) unchanged.
            sd = np.full_like(mu, math.sqrt(resid2.sum() / dof) if dof > 0 else 1.0)
        else:
            sd = np.sqrt(resid2.sum(0) / np.maximum(count - 1, 1))
        return mu, np.maximum(sd, 1e-6)

    mu_out, sd_out = side(~m, n_out)
    if online:
        mu_in, sd_in = side(m, n_in)
        return _log_normal_pdf(t, mu_in, sd_in) - _log_normal_pdf(t, mu_out, sd_out)
    return (t - mu_out) / sd_out


@dataclass(frozen=True)
class LiraScores:
    """Online and offline LiRA scores of the population, split by the target's membership."""

    online_members: np.ndarray
    online_nonmembers: np.ndarray
    offline_members: np.ndarray
    offline_nonmembers: np.ndarray
    n_shadows: int
    global_variance: bool
    notes: tuple[str, ...] = ()


def lira_from_shadows(
    target_model: Any,
    shadows: ShadowSet,
    *,
    device: str = "cpu",
    global_variance: bool | None = None,
    dataset: Any = None,
    pool_test: bool = False,
) -> LiraScores:
    """Score the target's candidates with already trained ``shadows`` (several targets on the
    same population can share one :class:`ShadowSet`). ``dataset``: the data the population
    indexes (default: the recipe's data set, :func:`dataset_for`)."""
    ds = dataset if dataset is not None and not pool_test else dataset_for(shadows.recipe.config, pool_test)
    pop = shadows.population
    target_phi = query_phi(target_model, ds.x_train[pop], ds.y_train[pop], shadows.augmentations, device)
    k = shadows.n_shadows
    gv = global_variance
    if gv is None:
        gv = k < GLOBAL_VARIANCE_BELOW or k // 2 < 2
    on = lira_scores(target_phi, shadows.phi, shadows.in_mask, online=True, global_variance=gv)
    off = lira_scores(target_phi, shadows.phi, shadows.in_mask, online=False, global_variance=gv)
    m = shadows.n_members
    return LiraScores(on[:m], on[m:], off[:m], off[m:], k, bool(gv), shadows.notes)


def lira(
    target_model: Any,
    recipe: ShadowRecipe,
    member_idx: np.ndarray,
    nonmember_idx: np.ndarray,
    *,
    n_shadows: int = 8,
    seed: int = 0,
    device: str = "cpu",
    executor: cf.Executor | None = None,
    workers: int | None = None,
    progress: bool = False,
    global_variance: bool | None = None,
    dataset: Any = None,
    pool_test: bool = False,
    augment_queries: bool | None = None,
) -> LiraScores:
    """Train ``n_shadows`` shadows with ``recipe`` (:func:`shadow_recipe` of the target's
    metadata) on random halves of the target's candidates and score them
    (:func:`train_shadows` then :func:`lira_from_shadows`; see both for the arguments).
    The members/non-members scored are those of the population: all members and (at most)
    as many non-members."""
    shadows = train_shadows(recipe, member_idx, nonmember_idx, n_shadows, seed=seed, device=device,
                            executor=executor, workers=workers, progress=progress, dataset=dataset,
                            pool_test=pool_test, augment_queries=augment_queries)
    return lira_from_shadows(target_model, shadows, device=device, global_variance=global_variance,
                             dataset=dataset, pool_test=pool_test)
