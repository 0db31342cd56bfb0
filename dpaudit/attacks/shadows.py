"""LiRA's shadow models: a recipe that matches the target, the population they train on, the
query augmentations, and training them through an executor.

Carlini, Chien, Nasr, Song, Terzis, Tramer, "Membership Inference Attacks From First
Principles", IEEE S&P 2022, Sec. IV-A/B and VI: shadow models are trained *like the target*
-- same architecture, training procedure and number of training points -- each on a random
half of a population that contains the target's candidates, so every candidate is IN for about
half of the shadows and OUT for the rest.

* :func:`shadow_recipe` reads the recipe from the model's metadata: the architecture with its
  resolved options, epochs, batch size and batching, learning rate, momentum, lr schedule, EMA,
  clipping norm, screening, training augmentation and its multiplicity, fixed features and
  private input statistics, and the *recorded* noise -- the target's own plan (its sigma per
  epoch, replayed verbatim) or its constant noise multiplier; never a new plan solved for
  another training-set size (a larger N would plan a smaller sigma, a smaller N a larger one).
  Evaluation inside shadow training is switched off (shadows are scored by their caller).
* :func:`choose_population` keeps the target's members and as many of its non-members (a
  seeded random subset when there are more), and :func:`shadow_assignment` gives every shadow
  exactly the target's training-set size: with as many non-members as members (population 2N)
  shadows come in complementary pairs of random halves, so each shadow trains on exactly N
  points and each candidate is IN for exactly K/2 shadows; with fewer non-members each
  candidate is IN for round(K N / P) shadows (at least one OUT) and a shadow holds about N.
* :func:`query_augmentations`: the inputs each model is queried on (Sec. VI-A "augmented
  queries"): the image itself and, where the data set has them, its one-pixel shifts (digits,
  MNIST, Fashion-MNIST) and horizontal flips (Fashion-MNIST; never for digits).
* :func:`train_shadows` runs one picklable :class:`ShadowTask` per shadow through any
  :class:`concurrent.futures.Executor` (process pool by default, or a distributed one) with a
  tqdm progress bar (elapsed < remaining) and returns a :class:`ShadowSet`.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dpaudit.errors import InvalidParameterError
from dpaudit.executors import InlineExecutor, make_executor, share, shares_objects  # noqa: F401  (InlineExecutor re-exported)

#: With ``workers=None``, data sets with fewer train images than this train their shadows
#: in-process: bench/attacks.py measured 4 digits shadows at 1.9 s in-process vs 29 s in a
#: 2-process spawn pool on a 2-core machine (per-worker start-up: interpreter, torch, data).
POOL_MIN_TRAIN = 10_000

#: Data sets loaded in this process, keyed (name, data folder, pooled with the test split?).
_DATASETS: dict[tuple[str, str | None, bool], Any] = {}

#: One query: (horizontal flip?, shift down in pixels, shift right in pixels).
Augmentation = tuple[bool, int, int]

_SHIFTS: tuple[Augmentation, ...] = ((False, 0, 0), (False, 1, 0), (False, -1, 0), (False, 0, 1), (False, 0, -1))
#: Query augmentations per data set: one-pixel shifts for 28x28 handwriting (no flips: a
#: flipped digit is another symbol), shifts and flips for Fashion-MNIST (garments are
#: mirror-symmetric; likewise CIFAR-10). None for the 8x8 digits: a one-pixel shift moves a third of the stroke
#: width and the shifted queries carried no membership signal (online AUC 0.51 per shifted
#: query vs 0.595 for the image itself, 64 shadows, default non-private digits model), so
#: averaging them in only diluted the score.
QUERY_AUGMENTATIONS: dict[str, tuple[Augmentation, ...]] = {
    "digits": ((False, 0, 0),),
    "mnist": _SHIFTS,
    "fashion-mnist": _SHIFTS + tuple((True, dy, dx) for _, dy, dx in _SHIFTS),
    "cifar10": _SHIFTS + tuple((True, dy, dx) for _, dy, dx in _SHIFTS),
}


def query_augmentations(dataset: str | None, enabled: bool | None = True,
                        trained_with: str | None = None) -> tuple[Augmentation, ...]:
    """The queries for ``dataset`` (identity only when the data set has no entry in
    :data:`QUERY_AUGMENTATIONS`).

    ``enabled``: True -- the data set's queries; False -- the image alone; None ("auto") --
    the data set's queries only if the target trained with an augmentation
    (``trained_with``, its recorded ``augment``: flips only if that augmentation flips),
    else the image alone. Carlini et al.'s augmented queries are the target's *training*
    augmentations; on a target trained without any, shifted queries are inputs it never saw
    in either role and dilute the score (non-private MNIST CNN, 8/16/32 matched shadows:
    online AUC 0.533/0.535/0.543 with the one-pixel shifts vs 0.547/0.553/0.557 without,
    docs/attacks.md)."""
    identity: tuple[Augmentation, ...] = ((False, 0, 0),)
    if enabled is False or dataset is None:
        return identity
    augs = QUERY_AUGMENTATIONS.get(str(dataset).lower(), identity)
    if enabled is None:
        if trained_with in (None, "none"):
            return identity
        if trained_with == "shift":
            augs = tuple(a for a in augs if not a[0])
    return augs


def augment(x: np.ndarray, aug: Augmentation) -> np.ndarray:
    """Images ``x`` (N, C, H, W) flipped left-right (if asked) then shifted by (dy, dx)
    pixels, the uncovered border filled with 0 (the background of these data sets)."""
    flip, dy, dx = aug
    out = x[..., ::-1] if flip else x
    if dy == 0 and dx == 0:
        return np.ascontiguousarray(out)
    h, w = out.shape[-2:]
    if abs(dy) >= h or abs(dx) >= w:
        raise InvalidParameterError(f"shift ({dy}, {dx}) does not fit {h}x{w} images")
    res = np.zeros_like(out)
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    res[..., yd, xd] = out[..., ys, xs]
    return res


# --------------------------------------------------------------------------- the recipe
@dataclass(frozen=True)
class ShadowRecipe:
    """How every shadow trains: ``config`` (TrainConfig fields, without seed), ``plan`` (the
    target's recorded noise plan as a dict, replayed verbatim; None: ``config`` carries a
    constant noise multiplier or no privacy), ``train_size`` (the target's N) and ``notes``."""

    config: dict
    plan: dict | None
    train_size: int
    notes: tuple[str, ...] = ()


#: TrainConfig fields a shadow takes from the target's recorded configuration.
_RECIPE_FIELDS = ("dataset", "data_dir", "epochs", "batch_size", "batching", "clip", "lr", "momentum",
                  "lr_schedule", "ema_decay", "delta", "accountant", "screening", "screen_clip",
                  "screen_sigma", "screen_batch_size", "screen_beta", "sa_k", "sa_max_rejects",
                  "reproducible", "no_privacy", "seed", "augment", "augment_multiplicity", "features",
                  "norm_sigma", "norm_clip")


def shadow_recipe(metadata: dict, *, data_dir: str | None = None) -> ShadowRecipe:
    """The target's training recipe from its model-file metadata (see the module docstring).

    Noise, in order of preference: the recorded plan (``metadata["plan"]``: the per-epoch
    sigma the target used, for its N, which the shadows share); a constant recorded noise
    multiplier with the recorded target epsilon as the stopping budget (the same N stops at
    the same epoch); else a constant recorded sigma per epoch. Model files written before the
    trainer recorded resolved configurations (a plan path *and* an epsilon in ``config``) are
    handled the same way: the noise comes from the recorded fields, not from re-planning.
    Raises :class:`InvalidParameterError` when no recipe can be derived (no configuration, a
    custom architecture, varying recorded noise without its plan).
    """
    cfg = metadata.get("config")
    split = metadata.get("split") or {}
    n = len(split.get("member_indices") or ())
    if not isinstance(cfg, dict) or n == 0:
        raise InvalidParameterError("the model file records no training configuration or members; "
                                    "shadow models cannot be trained like it")
    arch = metadata.get("arch") or cfg.get("arch")
    if arch in (None, "custom"):
        raise InvalidParameterError("the model has a custom architecture; shadow models need a reference one")
    out: dict[str, Any] = {k: cfg[k] for k in _RECIPE_FIELDS if k in cfg}
    out.update(arch=arch, arch_kwargs=dict(metadata.get("arch_kwargs") or cfg.get("arch_kwargs") or {}),
               evaluate=False, threads=1, member_fraction=1.0, schedule="constant",
               epsilon=None, plan_path=None, noise_multiplier=None)
    if data_dir is not None:
        out["data_dir"] = data_dir
    notes: list[str] = []
    plan = None
    private = bool(metadata.get("private", not cfg.get("no_privacy", False)))
    out["no_privacy"] = not private
    if private:
        plan, note = _recorded_noise(metadata, cfg, out)
        notes += note
    return ShadowRecipe(config=out, plan=plan, train_size=n, notes=tuple(notes))


def _recorded_noise(metadata: dict, cfg: dict, out: dict) -> tuple[dict | None, list[str]]:
    """Fill ``out``'s noise from the recorded fields; returns (plan dict or None, notes)."""
    plan = metadata.get("plan")
    if isinstance(plan, dict) and plan.get("noise_multipliers"):
        return plan, [f"shadows replay the target's noise plan (sigma {_sigma_text(plan['noise_multipliers'])})"]
    sigmas = [float(s) for s in metadata.get("noise_multipliers") or ()]
    if cfg.get("noise_multiplier") is not None:
        out["noise_multiplier"] = float(cfg["noise_multiplier"])
        stop = cfg.get("epsilon")
        out["epsilon"] = None if stop is None else float(stop)
        return None, [f"shadows use the target's noise multiplier {out['noise_multiplier']:.4g}"
                      + ("" if stop is None else f", stopping at its budget epsilon = {float(stop):.4g}")]
    if sigmas and max(sigmas) - min(sigmas) <= 1e-12 * max(sigmas):
        out["noise_multiplier"] = sigmas[0]
        out["epochs"] = len(sigmas)
        return None, [f"shadows use the target's recorded noise multiplier {sigmas[0]:.4g} for its "
                      f"{len(sigmas)} epochs"]
    raise InvalidParameterError("the model file records neither its noise plan nor a constant noise "
                                "multiplier; shadow models cannot repeat its noise")


def _sigma_text(sigmas: Sequence[float]) -> str:
    lo, hi = min(sigmas), max(sigmas)
    return f"{lo:.4g}" if hi - lo <= 1e-12 * hi else f"{lo:.4g}..{hi:.4g}"


# --------------------------------------------------------------------------- population
def choose_population(member_idx: np.ndarray, nonmember_idx: np.ndarray, rng: np.random.Generator
                      ) -> tuple[np.ndarray, int]:
    """(population, number of members): the target's members first, then its non-members --
    all of them, or a random subset of as many as there are members when there are more (a
    population of 2N, Carlini et al.'s setting)."""
    mem = np.asarray(member_idx, dtype=np.int64)
    non = np.asarray(nonmember_idx, dtype=np.int64)
    if mem.size == 0 or non.size == 0:
        raise InvalidParameterError("LiRA needs both members and non-members of the target")
    if non.size > mem.size:
        non = np.sort(rng.choice(non, size=mem.size, replace=False))
    return np.concatenate([mem, non]), int(mem.size)


def shadow_assignment(n_shadows: int, n_population: int, rng: np.random.Generator,
                      train_size: int | None = None) -> np.ndarray:
    """Boolean (K, P) IN-mask for K shadows over a population of P candidates.

    ``train_size`` None or P/2 (P even): complementary pairs of random halves -- shadow 2j
    trains on a random half and shadow 2j+1 on the other -- so every shadow holds exactly P/2
    points and every candidate is IN for exactly K/2 shadows (an odd K's last shadow takes a
    random half). Any other ``train_size`` N: every candidate is IN for exactly
    k = round(K N / P) shadows, clamped to [1, K-1], chosen at random (Carlini et al.'s
    column-balanced assignment); shadows then hold about N points each."""
    k, p = int(n_shadows), int(n_population)
    if k < 1 or p < 1:
        raise InvalidParameterError("need at least one shadow model and one example")
    half = train_size is None or (p % 2 == 0 and int(train_size) * 2 == p)
    if half and p >= 2:
        mask = np.zeros((k, p), dtype=bool)
        for j in range(0, k, 2):
            perm = rng.permutation(p)
            mask[j, perm[: p // 2]] = True
            if j + 1 < k:
                mask[j + 1, perm[p // 2:]] = True
        return mask
    n = p // 2 if train_size is None else int(train_size)
    k_in = min(max(int(round(k * n / p)), 1), max(k - 1, 1))
    order = np.argsort(rng.random((k, p)), axis=0)
    return order < k_in


# --------------------------------------------------------------------------- training
@dataclass(frozen=True)
class ShadowTask:
    """Train one shadow and score the population.

    ``config``: TrainConfig fields (the recipe, with this shadow's seed); ``plan``: the noise
    plan to replay (or None); ``members``: indices into the train split it trains on;
    ``population``: indices whose ``phi`` it returns (same order for every shadow);
    ``augmentations``: the queries (:func:`query_augmentations`).
    """

    index: int
    config: dict
    members: np.ndarray
    population: np.ndarray
    device: str = "cpu"
    pool_test: bool = False
    plan: dict | None = None
    augmentations: tuple[Augmentation, ...] = ((False, 0, 0),)


def pooled(ds: Any) -> Any:
    """The data set with its test split appended to the train split.

    Used when the target trained on its whole train split, so its non-members are test
    images: indices ``>= len(ds.x_train)`` then name test images, and shadows train on random
    halves of train + test (the attacker's population, as in Carlini et al. 2022)."""
    return dataclasses.replace(
        ds,
        x_train=np.concatenate([ds.x_train, ds.x_test]),
        y_train=np.concatenate([ds.y_train, ds.y_test]),
    )


def dataset_for(config: dict, pool_test: bool = False) -> Any:
    """The data set ``config`` names, loaded once per process (pooled with its test split
    when ``pool_test``)."""
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


def remember_dataset(config: dict, dataset: Any) -> None:
    """Let this process's shadows use the already loaded ``dataset`` for ``config``'s data set
    (it replaces what was loaded before; worker processes load their own copy)."""
    key = (str(config.get("dataset", "digits")), config.get("data_dir"), False)
    if _DATASETS.get(key) is not dataset:
        _DATASETS[key] = dataset
        _DATASETS.pop((key[0], key[1], True), None)


def query_phi(model: Any, x: np.ndarray, y: np.ndarray, augmentations: Sequence[Augmentation],
              device: str = "cpu") -> np.ndarray:
    """Logit-scaled confidences (A, N) of ``model`` on every augmentation of ``x``."""
    from dpaudit.attacks.membership import logit_confidence, predict_logits

    return np.stack([logit_confidence(predict_logits(model, augment(x, a), device), y) for a in augmentations])


def shadow_train_config(task: ShadowTask, folder: str) -> Any:
    """The :class:`~dpaudit.training.TrainConfig` of ``task``; a replayed plan is written to
    ``folder`` (the trainer reads plans from files) and fixes epochs, batch size and delta."""
    from pathlib import Path

    from dpaudit.training import TrainConfig

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in task.config.items() if k in fields})
    cfg = dataclasses.replace(cfg, device=task.device)
    if task.plan is not None and int(task.plan.get("dataset_size") or 0) != len(task.members):
        return _rescaled_plan_config(cfg, task.plan, len(task.members))
    if task.plan is not None:
        from dpaudit.allocation import Plan

        path = Path(folder) / "plan.json"
        Plan.from_dict(task.plan).save(path)
        cfg = dataclasses.replace(cfg, plan_path=str(path), epochs=None, batch_size=None, delta=None)
    return cfg


def _rescaled_plan_config(cfg: Any, plan: dict, n: int) -> Any:
    """A shadow of ``n`` points (not the target's N, e.g. when the population holds fewer than
    2N candidates) repeats the target's *mechanism*: the batch size scaled to keep the
    sampling rate q = B/N, hence the steps per epoch, and the same noise -- the constant
    sigma itself, or a varying schedule re-solved for the same target epsilon (which, at the
    same q, epochs and schedule, gives the same sigmas up to the solver's tolerance)."""
    sigmas = [float(v) for v in plan["noise_multipliers"]]
    b = max(1, round(float(plan["batch_size"]) * n / float(plan["dataset_size"])))
    common = {"batch_size": b, "epochs": len(sigmas), "delta": float(plan["delta"]), "plan_path": None}
    if max(sigmas) - min(sigmas) <= 1e-12 * max(sigmas):
        return dataclasses.replace(cfg, noise_multiplier=sigmas[0], epsilon=None, **common)
    return dataclasses.replace(cfg, epsilon=float(plan.get("target_epsilon") or plan["epsilon"]),
                               schedule=str(plan["schedule"]), noise_multiplier=None, **common)


def train_shadow(task: ShadowTask, dataset: Any = None) -> np.ndarray:
    """Run one :class:`ShadowTask` (module-level so process pools can pickle it) on
    ``dataset`` (the data as the task's indices see it, e.g. shared by :func:`run_shadows`),
    else on the data set named by its configuration, loaded once per worker; returns the
    (A, P) confidences of the population under each query augmentation."""
    import tempfile

    from dpaudit.training import train

    ds = dataset_for(task.config, task.pool_test) if dataset is None else dataset
    with tempfile.TemporaryDirectory(prefix="dpaudit-shadow-") as tmp:
        cfg = shadow_train_config(task, tmp)
        res = train(cfg, dataset=ds, members=task.members, progress=False)
    from dpaudit.training.features import image_model

    x, y = ds.x_train[task.population], ds.y_train[task.population]
    # a shadow trained on fixed features is queried on images, as the target is
    return query_phi(image_model(res.model, res.metadata), x, y, task.augmentations, task.device)


def default_executor(workers: int | None = None) -> cf.Executor:
    """``workers <= 1`` -> :class:`InlineExecutor`; else a spawn-context process pool with one
    torch thread per worker (``workers=None``: :func:`dpaudit.runtime.default_workers`)."""
    from dpaudit.runtime import default_workers

    n = default_workers(1) if workers is None else int(workers)
    return make_executor("inline" if n <= 1 else "process", n, threads_per_worker=1)


def run_shadows(
    tasks: Sequence[ShadowTask],
    executor: cf.Executor | None = None,
    *,
    workers: int | None = None,
    progress: bool = False,
    dataset: Any = None,
    on_result: Callable[[int, np.ndarray], None] | None = None,
) -> np.ndarray:
    """Run the tasks through ``executor`` (default :func:`default_executor`); returns the
    (K, A, P) array of ``phi`` in task order. With ``progress``, a tqdm bar on stderr shows
    shadows done, elapsed and remaining time. ``on_result(i, phi)`` is called in this process
    as each task finishes (e.g. to save partial results of a long run). ``dataset`` (the data the tasks' indices refer
    to) goes to executors that share objects (:func:`dpaudit.executors.shares_objects`:
    in-process, Ray's object store) once for all tasks; process pools' workers load it
    themselves."""
    own = executor is None
    ex = default_executor(workers) if executor is None else executor
    out: list[np.ndarray] = [np.empty(0)] * len(tasks)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(tasks), desc="shadow models", unit="model", leave=False, dynamic_ncols=True)
    try:
        data = (share(ex, dataset),) if dataset is not None and shares_objects(ex) else ()
        futures = {ex.submit(train_shadow, t, *data): i for i, t in enumerate(tasks)}
        for fut in cf.as_completed(futures):
            out[futures[fut]] = fut.result()
            if on_result is not None:
                on_result(futures[fut], out[futures[fut]])
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        if own:
            ex.shutdown(wait=True, cancel_futures=True)
    return np.stack(out)


def _prefix_reporter(checkpoint: Callable[[ShadowSet], None], in_mask: np.ndarray,
                     make: Callable[[np.ndarray, int], ShadowSet]) -> Callable[[int, np.ndarray], None]:
    """An ``on_result`` for :func:`run_shadows` that calls ``checkpoint`` with the finished
    prefix (``make(phi, k)``) whenever it grows to an even length below the total."""
    done: dict[int, np.ndarray] = {}
    state = {"prefix": 0, "reported": 0}

    def on_result(i: int, phi: np.ndarray) -> None:
        done[i] = phi
        k = state["prefix"]
        while k in done:
            k += 1
        state["prefix"] = k
        even = k - k % 2
        if state["reported"] < even < in_mask.shape[0]:
            state["reported"] = even
            checkpoint(make(np.stack([done[j] for j in range(even)]), even))

    return on_result


@dataclass(frozen=True)
class ShadowSet:
    """Trained shadows, as their confidences on the population.

    ``population``: candidate indices (members of the target first, ``n_members`` of them);
    ``in_mask`` (K, P): which candidates each shadow trained on; ``phi`` (K, A, P): each
    shadow's logit-scaled confidence per query augmentation; ``recipe``: how they trained."""

    population: np.ndarray
    n_members: int
    in_mask: np.ndarray
    phi: np.ndarray
    augmentations: tuple[Augmentation, ...]
    recipe: ShadowRecipe
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def n_shadows(self) -> int:
        return int(self.in_mask.shape[0])

    def first(self, k: int) -> ShadowSet:
        """The first ``k`` shadows (with the paired assignment, an even ``k`` keeps every
        candidate IN for exactly k/2 of them): for shadow-count curves."""
        k = int(k)
        if not 1 <= k <= self.n_shadows:
            raise InvalidParameterError(f"need 1 <= k <= {self.n_shadows} shadows, got {k}")
        return dataclasses.replace(self, in_mask=self.in_mask[:k], phi=self.phi[:k])


def train_shadows(
    recipe: ShadowRecipe,
    member_idx: np.ndarray,
    nonmember_idx: np.ndarray,
    n_shadows: int,
    *,
    seed: int = 0,
    device: str = "cpu",
    executor: cf.Executor | None = None,
    workers: int | None = None,
    progress: bool = False,
    dataset: Any = None,
    pool_test: bool = False,
    augment_queries: bool | None = None,
    checkpoint: Callable[[ShadowSet], None] | None = None,
) -> ShadowSet:
    """Train ``n_shadows`` shadows with ``recipe`` on the population of the target's
    candidates (:func:`choose_population`, :func:`shadow_assignment`) and score it.

    ``seed``: of the population subset, the assignment and the shadows' seeds (shadow k:
    recipe seed + 1000 (seed + 1) + k; its batch sampling and noise
    follow the seed too, so the shadows do not depend on the executor or worker). ``dataset``: the data set already loaded here (reused
    by in-process shadows). ``pool_test``: indices refer to :func:`pooled` data (train split,
    then test split), for targets trained on their whole train split whose non-members are
    test images. ``augment_queries``: see :func:`query_augmentations` (None: queries follow
    the target's training augmentation). ``workers=None`` with no ``executor``: in-process below
    :data:`POOL_MIN_TRAIN` train images, else :func:`dpaudit.runtime.default_workers`.
    ``checkpoint(shadows)``: called with the first k shadows (:meth:`ShadowSet.first`) each
    time the finished prefix grows to an even k < ``n_shadows`` -- a long run keeps what it
    has if it is interrupted."""
    if int(n_shadows) < 2:
        raise InvalidParameterError("LiRA needs at least 2 shadow models")
    rng = np.random.default_rng(seed)
    population, n_mem = choose_population(member_idx, nonmember_idx, rng)
    if dataset is not None:
        remember_dataset(recipe.config, dataset)
    ds = dataset_for(recipe.config, pool_test)
    in_mask = shadow_assignment(int(n_shadows), population.size, rng, train_size=recipe.train_size)
    augs = query_augmentations(recipe.config.get("dataset"), augment_queries, recipe.config.get("augment"))
    base = int(recipe.config.get("seed", 0) or 0) + 1000 * (int(seed) + 1)
    tasks = [ShadowTask(index=k, config={**recipe.config, "seed": base + k, "threads": 1,
                                                                  "reproducible": True}, members=population[in_mask[k]],
                        population=population, device=device, pool_test=pool_test, plan=recipe.plan,
                        augmentations=augs)
             for k in range(int(n_shadows))]
    if executor is None and workers is None and len(ds.y_train) < POOL_MIN_TRAIN:
        workers = 1  # small data: spawning workers costs more than the shadows (measured)
    notes = list(recipe.notes)
    on_result = None if checkpoint is None else _prefix_reporter(
        checkpoint, in_mask, lambda phi, k: ShadowSet(population=population, n_members=n_mem, in_mask=in_mask[:k],
                                                      phi=phi, augmentations=augs, recipe=recipe,
                                                      notes=tuple(notes)))
    phi = run_shadows(tasks, executor, workers=workers, progress=progress, dataset=ds, on_result=on_result)
    sizes = in_mask.sum(1)
    if sizes.min() == sizes.max() == recipe.train_size:
        notes.append(f"every shadow trained on {recipe.train_size} points, as the target")
    else:
        notes.append(f"shadows trained on {int(sizes.min())}-{int(sizes.max())} points (target: "
                     f"{recipe.train_size}); {population.size - n_mem} non-members for {n_mem} members"
                     + ("; batch size scaled to keep the target's sampling rate, same noise" if recipe.plan else ""))
    if len(augs) == 1 and augment_queries is None and len(query_augmentations(recipe.config.get("dataset"))) > 1:
        notes.append("queries: the image alone (the target trained without augmentation; shifted "
                     "queries can be forced)")
    if len(augs) > 1:
        notes.append(f"{len(augs)} queries per example (identity, one-pixel shifts"
                     f"{', flips' if any(a[0] for a in augs) else ''})")
    return ShadowSet(population=population, n_members=n_mem, in_mask=in_mask, phi=phi,
                     augmentations=augs, recipe=recipe, notes=tuple(notes))
