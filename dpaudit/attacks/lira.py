"""LiRA, the likelihood-ratio membership attack (Carlini, Chien, Nasr, Song, Terzis, Tramer,
"Membership Inference Attacks From First Principles", IEEE S&P 2022, Sec. IV, Alg. 1).

Shadow models are trained by the reference trainer (:func:`dpaudit.training.train`) with the
target's recorded configuration, each on a random half of the population (the target's
members and non-members together); every example is IN for exactly ``K//2`` shadows (the
paper's balanced assignment).  For an example (x, y) the statistic is the logit-scaled
confidence ``phi`` (:func:`dpaudit.attacks.membership.logit_confidence`); across shadows it is
modelled as ``N(mu_in, s_in^2)`` when x was trained on and ``N(mu_out, s_out^2)`` when not.

* online:  score = log N(phi_target; mu_in, s_in^2) - log N(phi_target; mu_out, s_out^2)
  (Alg. 1, the likelihood ratio Lambda, in log form).
* offline: the paper's one-sided test ``1 - Pr[Z > phi_target]``, Z ~ N(mu_out, s_out^2) (uses
  only OUT shadows), reported as the z-score ``(phi_target - mu_out) / s_out`` — a strictly
  increasing function of it, so the ROC is the same, but it does not saturate (1 - Pr[Z > phi]
  rounds to 1 in floating point beyond z ~ 8, which would create false ties at the top).
* global variance: with few shadows, per-example variances are too noisy, and the paper
  uses one variance shared by all examples; here the pooled within-example variance
  (default when ``K < 64``; with K = 2 it is the only option).

Shadow training goes through a standard :class:`concurrent.futures.Executor` — a process
pool by default — so a distributed executor can be plugged in; tasks are small picklable
:class:`ShadowTask` values and a worker returns only the ``phi`` vector.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dpaudit.errors import InvalidParameterError
from dpaudit.executors import InlineExecutor, make_executor, share, shares_objects  # noqa: F401  (InlineExecutor re-exported)
from dpaudit.runtime import available_cpus

#: Below this many shadows the variance is pooled over examples (Carlini et al. 2022, Sec. IV).
GLOBAL_VARIANCE_BELOW = 64

#: With ``workers=None``, data sets with fewer train images than this train their shadows
#: in-process: bench/attacks.py measured 4 digits shadows at 1.9 s in-process vs 29 s in a
#: 2-process spawn pool on a 2-core machine (per-worker start-up: interpreter, torch, data).
POOL_MIN_TRAIN = 10_000

#: Data sets loaded in this process, keyed (name, data folder, pooled with the test split?).
_DATASETS: dict[tuple[str, str | None, bool], Any] = {}


# --------------------------------------------------------------------------- executors
def default_executor(workers: int | None = None) -> cf.Executor:
    """``workers <= 1`` -> :class:`InlineExecutor`; else a spawn-context process pool with one
    torch thread per worker (``workers=None``: min(cpu count, 4))."""
    n = min(available_cpus(), 4) if workers is None else int(workers)
    return make_executor("inline" if n <= 1 else "process", n, threads_per_worker=1)


# --------------------------------------------------------------------------- shadow models
@dataclass(frozen=True)
class ShadowTask:
    """Train one shadow model and score the population.

    ``config``: TrainConfig fields (the target's recorded configuration, new seed);
    ``members``: indices into the train split it trains on; ``population``: indices whose
    ``phi`` it returns (same order for every shadow).
    """

    index: int
    config: dict
    members: np.ndarray
    population: np.ndarray
    device: str = "cpu"
    pool_test: bool = False


def pooled(ds):
    """The data set with its test split appended to the train split.

    Used when the target trained on its whole train split, so its non-members are test
    images: indices ``>= len(ds.x_train)`` then name test images, and shadows train on random
    halves of train + test (the attacker's population, as in Carlini et al. 2022)."""
    return dataclasses.replace(
        ds,
        x_train=np.concatenate([ds.x_train, ds.x_test]),
        y_train=np.concatenate([ds.y_train, ds.y_test]),
    )


def _dataset_for(config: dict, pool_test: bool = False):
    from dpaudit.training import load_dataset

    name, data_dir = str(config.get("dataset", "digits")), config.get("data_dir")
    key = (name, data_dir, False)
    if key not in _DATASETS:
        _DATASETS[key] = load_dataset(name, data_dir)
    if not pool_test:
        return _DATASETS[key]
    pkey = (name, data_dir, True)
    if pkey not in _DATASETS:
        _DATASETS[pkey] = pooled(_DATASETS[key])
    return _DATASETS[pkey]


def train_shadow(task: ShadowTask, dataset=None) -> np.ndarray:
    """Run one :class:`ShadowTask` (module-level so process pools can pickle it) on
    ``dataset`` (the data as the task's indices see it, e.g. shared by :func:`run_shadows`),
    else on the data set named by its configuration, loaded once per worker."""
    from dpaudit.attacks.membership import logit_confidence, predict_logits
    from dpaudit.training import TrainConfig, train

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in task.config.items() if k in fields})
    cfg = dataclasses.replace(cfg, device=task.device)
    ds = _dataset_for(task.config, task.pool_test) if dataset is None else dataset
    res = train(cfg, dataset=ds, members=task.members, progress=False)
    x, y = ds.x_train[task.population], ds.y_train[task.population]
    return logit_confidence(predict_logits(res.model, x, task.device), y)


def shadow_assignment(n_shadows: int, n_population: int, rng: np.random.Generator) -> np.ndarray:
    """Boolean (K, N) IN-mask: each example is IN for exactly ``K//2`` random shadows, so each
    shadow trains on about half of the population (Carlini et al. 2022's assignment)."""
    if n_shadows < 1 or n_population < 1:
        raise InvalidParameterError("need at least one shadow model and one example")
    order = np.argsort(rng.random((n_shadows, n_population)), axis=0)
    return order < (n_shadows // 2)


def run_shadows(
    tasks: Sequence[ShadowTask],
    executor: cf.Executor | None = None,
    *,
    workers: int | None = None,
    progress: bool = False,
    dataset=None,
) -> np.ndarray:
    """Run the tasks through ``executor`` (default :func:`default_executor`); returns the
    (K, N) array of ``phi`` in task order.  Shows a tqdm bar on stderr when ``progress``.
    ``dataset`` (the data the tasks' indices refer to) goes to executors that share objects
    (:func:`dpaudit.executors.shares_objects`: in-process, Ray's object store) once for all
    tasks; process pools' workers load it themselves."""
    own = executor is None
    ex = default_executor(workers) if executor is None else executor
    out: list[np.ndarray] = [np.empty(0)] * len(tasks)
    try:
        data = (share(ex, dataset),) if dataset is not None and shares_objects(ex) else ()
        futures = {ex.submit(train_shadow, t, *data): i for i, t in enumerate(tasks)}
        done = cf.as_completed(futures)
        if progress:
            from tqdm.auto import tqdm

            done = tqdm(done, total=len(tasks), desc="shadow models", unit="model", leave=False)
        for fut in done:
            out[futures[fut]] = fut.result()
    finally:
        if own:
            ex.shutdown(wait=True, cancel_futures=True)
    return np.stack(out)


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

    ``target_phi`` (N,), ``shadow_phi`` (K, N), ``in_mask`` (K, N) bool.  Online needs at least
    one IN and one OUT shadow per example; offline at least one OUT.  ``global_variance=None``
    pools the variance when K < :data:`GLOBAL_VARIANCE_BELOW` or when some example has fewer
    than 2 shadows on a side.  Standard deviations are floored at 1e-6; with a single shadow
    per side (K = 2) the pooled scale is set to 1 (with equal in/out variances the ranking of
    the scores does not depend on it).
    """
    t = np.asarray(target_phi, dtype=np.float64)
    s = np.asarray(shadow_phi, dtype=np.float64)
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
        pooled = global_variance
        if pooled is None:
            pooled = s.shape[0] < GLOBAL_VARIANCE_BELOW or bool(np.any(count < 2))
        if pooled:
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


def lira(
    target_model,
    config: dict,
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
    dataset=None,
    pool_test: bool = False,
) -> LiraScores:
    """Train ``n_shadows`` shadows with ``config`` (TrainConfig fields of the target) on random
    halves of ``member_idx`` + ``nonmember_idx`` and score the target's members/non-members.

    ``dataset`` (optional) is the already loaded train/test data matching ``config``; it is
    reused in this process (worker processes load their own copy).  ``executor`` / ``workers``:
    see :func:`run_shadows`; with neither given, small data sets (< :data:`POOL_MIN_TRAIN`
    train images) train in-process and larger ones in a process pool.  Seeds: the assignment
    uses ``seed``; shadow k trains with seed ``config["seed"] + 1000 * (seed + 1) + k``, which
    also drives its batch sampling and noise (``reproducible=True``), so the scores do not
    depend on the executor or the worker that trains it.
    ``pool_test=True``: indices refer to :func:`pooled` data (train split, then test split),
    for targets trained on their whole train split whose non-members are test images.
    """
    from dpaudit.attacks.membership import logit_confidence, predict_logits

    if int(n_shadows) < 2:
        raise InvalidParameterError("LiRA needs at least 2 shadow models")
    mem = np.asarray(member_idx, dtype=np.int64)
    non = np.asarray(nonmember_idx, dtype=np.int64)
    if mem.size == 0 or non.size == 0:
        raise InvalidParameterError("LiRA needs both members and non-members of the target")
    population = np.concatenate([mem, non])
    if dataset is not None:
        _DATASETS.setdefault((str(config.get("dataset", "digits")), config.get("data_dir"), False), dataset)
    ds = _dataset_for(config, pool_test) if dataset is None or pool_test else dataset
    rng = np.random.default_rng(seed)
    in_mask = shadow_assignment(int(n_shadows), population.size, rng)
    base_seed = int(config.get("seed", 0) or 0) + 1000 * (int(seed) + 1)
    tasks = [
        ShadowTask(
            index=k,
            # reproducible: sampling and noise from the seed too (a shadow is the attacker's
            # own model), so every executor gives the same shadows for the same seed
            config={**config, "seed": base_seed + k, "threads": 1, "reproducible": True},
            members=population[in_mask[k]],
            population=population,
            device=device,
            pool_test=pool_test,
        )
        for k in range(int(n_shadows))
    ]
    if executor is None and workers is None and len(ds.y_train) < POOL_MIN_TRAIN:
        workers = 1  # small data: spawning workers costs more than the shadows (measured)
    shadow_phi = run_shadows(tasks, executor, workers=workers, progress=progress, dataset=ds)
    x, y = ds.x_train[population], ds.y_train[population]
    target_phi = logit_confidence(predict_logits(target_model, x, device), y)
    gv = global_variance
    if gv is None:
        gv = int(n_shadows) < GLOBAL_VARIANCE_BELOW or int(n_shadows) // 2 < 2
    on = lira_scores(target_phi, shadow_phi, in_mask, online=True, global_variance=gv)
    off = lira_scores(target_phi, shadow_phi, in_mask, online=False, global_variance=gv)
    k = mem.size
    return LiraScores(on[:k], on[k:], off[:k], off[k:], int(n_shadows), bool(gv))
