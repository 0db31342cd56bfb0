"""The reference DP-SGD trainer (Abadi et al. 2016, Alg. 1), with a privacy ledger.

:func:`train` runs named phases, each owned by its module:

1. configuration -- :func:`~dpaudit.training.config.resolve_config` (defaults, value and
   budget rules; torch-free);
2. runtime -- threads and device (:mod:`dpaudit.runtime`);
3. data and split -- :mod:`dpaudit.training.data`, :mod:`dpaudit.training.split`; fixed
   features of the images if asked (:mod:`dpaudit.training.features`);
4. model -- :mod:`dpaudit.training.models` (or the caller's module);
5. budget -- :class:`~dpaudit.training.budget.PrivacyBudget`: noise per epoch from a saved
   plan, a plan solved from the target epsilon, or a constant sigma; before every epoch the
   ledger *with that epoch added* is accounted and the run stops rather than exceed the target;
   private input statistics (:mod:`dpaudit.training.datanorm`) are charged before the first
   step;
6. the step loop -- :class:`~dpaudit.training.loop.StepLoop` (sampler, clipping, noise,
   screening, EMA);
7. evaluation -- a bounded held-out subset per epoch, the test split at the end
   (:mod:`dpaudit.training.evaluation`);
8. metadata -- :func:`~dpaudit.training.metadata.build_metadata`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from dpaudit.errors import InvalidParameterError
from dpaudit.runtime import configure_threads, resolve_device
from dpaudit.training.budget import PrivacyBudget
from dpaudit.training.clipping import LossFn, check_model, default_loss
from dpaudit.training.config import (  # noqa: F401  (re-exported: the historical home)
    DATASET_DEFAULTS,
    DEFAULT_DELTA,
    DEFAULT_EPSILON,
    DEFAULT_NORM_SIGMA,
    NONPRIVATE_DEFAULTS,
    SCHEDULES,
    TrainConfig,
    load_plan,
    resolve_config,
)
from dpaudit.training.data import Dataset, load_dataset
from dpaudit.training.datanorm import ledger_release
from dpaudit.training.evaluation import Validator, accuracy_on_test_split, evaluate  # noqa: F401
from dpaudit.training.loop import Callback, StepLoop, TrainState
from dpaudit.training.memory import set_mmap_threshold
from dpaudit.training.metadata import RunRecord, build_metadata
from dpaudit.training.models import DataStandardize, build_model, resolve_arch_kwargs
from dpaudit.training.sampling import make_sampler
from dpaudit.training.screening import Screener
from dpaudit.training.split import Split, member_split  # noqa: F401

__all__ = ["Callback", "TrainConfig", "TrainResult", "TrainState", "evaluate", "member_split",
           "resolve_config", "train"]


@dataclass
class TrainResult:
    """A trained model, its JSON-able metadata (see :mod:`dpaudit.training.metadata`) and
    per-epoch history."""

    model: nn.Module
    metadata: dict
    history: list[dict]


def train(
    config: TrainConfig,
    *,
    dataset: Dataset | None = None,
    members: np.ndarray | Sequence[int] | None = None,
    progress: bool = True,
    model: nn.Module | None = None,
    loss_fn: LossFn | None = None,
    callbacks: Sequence[Callback] = (),
) -> TrainResult:
    """Train with DP-SGD (or plain SGD with ``config.no_privacy``) and account the run.

    Args:
        config: see :class:`TrainConfig`.
        dataset: an already loaded data set (default: ``load_dataset(config.dataset, ...)``).
        members: explicit indices into ``dataset.x_train`` to train on (e.g. shadow models);
            the rest of the train split is the held-out part. Default: seeded split by
            ``config.member_fraction``.
        progress: show a progress bar on stderr (epoch, loss, accuracy, epsilon spent).
        model: a user's ``nn.Module`` (any per-example architecture) instead of ``config.arch``;
            its metadata then has ``arch = "custom"`` and ``load_model`` needs the module.
        loss_fn: per-example loss ``(logits, y) -> (B,)`` (default cross-entropy).
        callbacks: :class:`Callback` objects called after each step / epoch.
    """
    t_start = time.perf_counter()
    plan = load_plan(config)
    cfg = resolve_config(config, plan)
    threads = configure_threads(cfg.threads)
    set_mmap_threshold()  # glibc: large per-step temporaries mmapped, no heap growth (memory.py)
    device = resolve_device(cfg.device)
    data = dataset if dataset is not None else load_dataset(cfg.dataset, cfg.data_dir)
    data = _with_features(cfg, data, device, from_files=dataset is None)
    split = Split.make(len(data.y_train), seed=cfg.seed, fraction=cfg.member_fraction, members=members)
    notes = _split_notes(config, cfg, split)
    _check_members(cfg, split.size)

    torch.manual_seed(cfg.seed)
    net, arch, arch_kwargs = _build_network(cfg, data, model, device)
    scr_cfg = cfg.screening_config()
    budget = None
    norm_layers = [m for m in net.modules() if isinstance(m, DataStandardize)]
    if not cfg.no_privacy:
        query = None if scr_cfg is None else (scr_cfg.sample_rate(split.size), scr_cfg.noise_multiplier)
        initial = (ledger_release(float(cfg.norm_sigma or DEFAULT_NORM_SIGMA)),) if norm_layers else ()
        budget = PrivacyBudget.from_config(cfg, dataset_size=split.size, plan=plan, validation_query=query,
                                           initial_releases=initial)
        if budget.needs_validation and split.nonmembers.size == 0:
            raise InvalidParameterError("the validation schedule needs held-out data: member fraction < 1")
    input_stats = _fit_input_statistics(cfg, norm_layers, data, split, device, budget)

    loop, run_notes = _make_loop(cfg, net, data, split, device, budget, loss_fn, callbacks)
    validator = None
    if split.nonmembers.size and (cfg.evaluate or (budget is not None and budget.needs_validation)):
        validator = Validator(data, split.nonmembers, cfg.eval_size, cfg.seed, device)
    assert cfg.epochs is not None  # resolved
    with _ProgressBar(progress, cfg.epochs) as on_epoch:
        history = loop.fit(cfg.epochs, validator, on_epoch)
    final = budget.final_report() if budget is not None else None
    test_acc, test_acc_raw = _final_scores(cfg, loop, data, device)

    record = RunRecord(
        config=cfg, dataset=data, split=split, arch=arch, arch_kwargs=arch_kwargs, history=history,
        budget=budget, final=final, test_accuracy=test_acc, test_accuracy_raw=test_acc_raw,
        validation_examples=int(validator.indices.size) if validator is not None else None,
        screening=({**scr_cfg.to_dict(), **loop.screener.stats()}
                   if scr_cfg is not None and loop.screener is not None else None),
        ema_used=loop.ema is not None,
        features=data.features, input_statistics=input_stats,
        notes=notes + run_notes + (input_stats or {}).get("notes", [])
        + (budget.notes if budget is not None else []),
        device=str(device), threads=threads, seconds=time.perf_counter() - t_start,
    )
    return TrainResult(model=net, metadata=build_metadata(record), history=history)


# ----------------------------------------------------------------------------- phases
def _split_notes(given: TrainConfig, cfg: TrainConfig, split: Split) -> list[str]:
    if split.kind == "seeded" and cfg.member_fraction != given.member_fraction:
        return ["validation schedule: held out 10% of the train split for validation"]
    return []


def _with_features(cfg: TrainConfig, data: Dataset, device: torch.device, from_files: bool = False) -> Dataset:
    """``data`` with its images replaced by the configured fixed features (cached; keyed on
    the data files when the trainer read them itself, else on the arrays)."""
    if cfg.features == "none" or data.features is not None:
        return data
    from dpaudit.training.features import scatternet_dataset

    return scatternet_dataset(data, cfg.data_dir, cache_dir=cfg.feature_cache, device=str(device),
                              from_files=from_files)


def _fit_input_statistics(
    cfg: TrainConfig, layers: list[DataStandardize], data: Dataset, split: Split,
    device: torch.device, budget: PrivacyBudget | None,
) -> dict[str, Any] | None:
    """Fill the model's data-normalisation layers with the members' per-channel statistics:
    privately (charged: the budget's ledger already holds the release) or, without privacy,
    exactly. Refuses, before releasing anything, a budget that cannot also pay for one epoch."""
    if not layers:
        return None
    from dpaudit.training.datanorm import exact_channel_stats, private_channel_stats

    if budget is None:
        mean, var = exact_channel_stats(data.x_train, rows=split.members)
        info: dict[str, Any] = {"private": False, "members": split.size}
    else:
        if not budget.may_run_epoch(0, budget.sigma_for_epoch(0)):
            raise InvalidParameterError(
                "the budget does not cover the private normalisation statistics and one epoch of "
                "training; raise the target epsilon or the normalisation noise multiplier")
        gen = torch.Generator(device=device)
        gen.manual_seed(cfg.seed + 4 if cfg.reproducible else int.from_bytes(os.urandom(8), "little") >> 1)
        assert cfg.norm_clip is not None and cfg.norm_sigma is not None  # resolved
        c_m, c_s = cfg.norm_clip
        mean, var = private_channel_stats(data.x_train, rows=split.members, noise_multiplier=cfg.norm_sigma,
                                          clip_mean=c_m, clip_sq=c_s, generator=gen)
        info = {"private": True, "members": split.size, "noise_multiplier": cfg.norm_sigma,
                "clip": [c_m, c_s], "releases": 2, "sample_rate": 1.0,
                "notes": [f"data normalisation: per-channel mean and mean square of the {split.size} "
                          f"members released with sigma_norm = {cfg.norm_sigma:g}, C_m = {c_m:g}, "
                          f"C_s = {c_s:g}; charged in the ledger (2 releases, q = 1)"]}
    for layer in layers:
        layer.set_statistics(mean.to(layer.mean.device), var.to(layer.var.device))
    return info


def _check_members(cfg: TrainConfig, n: int) -> None:
    """The members must hold a batch, and delta must stay below 1/N."""
    assert cfg.batch_size is not None and cfg.delta is not None  # resolved
    if cfg.batch_size > n:
        raise InvalidParameterError(f"batch size {cfg.batch_size} exceeds the {n} training members")
    if not cfg.no_privacy and cfg.delta >= 1.0 / n:
        raise InvalidParameterError(
            f"delta = {cfg.delta:g} >= 1/N = {1.0 / n:.3g} allows releasing an example outright; "
            "choose delta < 1/N"
        )


def _build_network(
    cfg: TrainConfig, data: Dataset, model: nn.Module | None, device: torch.device
) -> tuple[nn.Module, str, dict[str, Any]]:
    """The model on ``device`` in training mode, its arch name and resolved options."""
    if model is None:
        arch = str(cfg.arch)
        arch_kwargs = resolve_arch_kwargs(arch, data.input_shape, **cfg.arch_kwargs)
        model = build_model(arch, data.input_shape, data.num_classes, **arch_kwargs)
    else:
        arch, arch_kwargs = "custom", {}
    model = model.to(device)
    model.train()
    if not cfg.no_privacy:
        check_model(model)
    return model, arch, arch_kwargs


def _make_loop(
    cfg: TrainConfig, model: nn.Module, data: Dataset, split: Split, device: torch.device,
    budget: PrivacyBudget | None, loss_fn: LossFn | None, callbacks: Sequence[Callback],
) -> tuple[StepLoop, list[str]]:
    """The step loop with its secret randomness: batch sampling (numpy) and noise (torch)
    from OS entropy, or from the seed when ``reproducible`` (or without privacy)."""
    notes: list[str] = []
    # every example a member (sorted indices = all of them): share the data set's arrays
    # instead of copying the whole train split (188 MB of float32 for MNIST)
    whole = split.members.size == len(data.y_train) and data.x_train.flags.writeable
    x = torch.from_numpy(np.ascontiguousarray(data.x_train if whole else data.x_train[split.members])).to(device)
    y = torch.from_numpy(data.y_train if whole else data.y_train[split.members]).to(device)
    if cfg.no_privacy or cfg.reproducible:
        sample_rng = np.random.default_rng(cfg.seed + 1)
    else:
        sample_rng = np.random.default_rng()  # OS entropy
    if cfg.reproducible and not cfg.no_privacy:
        notes.append("reproducible=True: sampling and noise derive from the recorded seed; "
                     "the guarantee does not hold against anyone who knows it")
    assert cfg.batch_size is not None  # resolved
    sampler = make_sampler(cfg.batching, split.size, cfg.batch_size, rng=sample_rng)
    gen = torch.Generator(device=device)
    gen.manual_seed(cfg.seed + 2 if cfg.reproducible else int.from_bytes(os.urandom(8), "little") >> 1)
    scr_cfg = cfg.screening_config()
    screener = None
    if scr_cfg is not None:
        screener = Screener(scr_cfg, split.size, sample_rng, gen, loss_fn or default_loss, device)
        notes.append(
            f"screening {scr_cfg.rule}: every candidate update and every validation query "
            f"(q_v = {screener.q:.4g}, sigma_v = {scr_cfg.noise_multiplier:g}, C_v = {scr_cfg.clip:g}, "
            "drawn from the training members) is charged; no amplification from rejection")
    loop = StepLoop(cfg, model, x, y, sampler, gen, budget=budget, screener=screener,
                    loss_fn=loss_fn, callbacks=callbacks)
    return loop, notes


def _final_scores(
    cfg: TrainConfig, loop: StepLoop, data: Dataset, device: torch.device
) -> tuple[float | None, float | None]:
    """Publish the EMA weights (post-processing of the noisy updates) and score the test
    split: (accuracy of the published model, of the raw last iterate); ``None`` without
    ``evaluate``."""
    model, ema = loop.model, loop.ema
    raw = accuracy_on_test_split(model, data, device) if cfg.evaluate else None
    published = raw
    if ema is not None and ema.updates:
        ema.swap()
        published = accuracy_on_test_split(model, data, device) if cfg.evaluate else None
    model.eval()
    return published, raw


class _ProgressBar:
    """Context manager yielding an ``on_epoch(row)`` callback that updates a tqdm bar on
    stderr (or nothing when ``enabled`` is false)."""

    def __init__(self, enabled: bool, epochs: int) -> None:
        self.enabled, self.epochs = enabled, epochs
        self.bar: Any = None

    def __enter__(self) -> Callable[[dict], None] | None:
        if not self.enabled:
            return None
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.epochs, desc="train", unit="epoch", leave=True, dynamic_ncols=True)
        return self._show

    def _show(self, row: dict) -> None:
        post = {"loss": f"{row['loss']:.3f}", "acc": f"{row['train_accuracy']:.3f}"}
        if row.get("epsilon") is not None:
            post["eps"] = f"{row['epsilon']:.3f}"
        self.bar.set_postfix(post)
        self.bar.update(1)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()

