"""The reference DP-SGD training loop (Abadi et al. 2016, Alg. 1), with a privacy ledger.

Each step: draw a batch (Poisson or shuffled, :mod:`dpaudit.training.sampling`), compute the
clipped per-example gradient sum (:mod:`dpaudit.training.clipping`), add N(0, sigma^2 C^2)
once and divide by the expected batch size (:mod:`dpaudit.training.privatize`), apply SGD
(with momentum: post-processing, free). Noise comes per epoch from a plan (a saved plan, one
solved on the fly from ``epsilon``, or an explicit ``noise_multiplier``); the validation
schedule's runtime rule picks each epoch's sigma from held-out accuracy. Before every epoch
the ledger *with that epoch added* is accounted; if it would exceed the target epsilon, the
run stops, so the spent epsilon never exceeds the budget.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from dpaudit.errors import InvalidParameterError
from dpaudit.runtime import configure_threads, resolve_device
from dpaudit.training.budget import (
    Accounted,
    NoisePlan,
    account,
    load_plan,
    plan_noise,
)
from dpaudit.training.clipping import LossFn, check_model, default_loss, trainable_parameters
from dpaudit.training.data import Dataset, load_dataset
from dpaudit.training.ledger import PrivacyLedger
from dpaudit.training.levers import ParamEMA, check_lr_schedule, lr_factor
from dpaudit.training.models import build_model, resolve_arch_kwargs
from dpaudit.training.privatize import privatize
from dpaudit.training.sampling import make_sampler
from dpaudit.training.screening import RULES as SCREENING_RULES
from dpaudit.training.screening import Screener, ScreeningConfig, Snapshot

DEFAULT_DELTA = 1e-5
SCHEDULES = ("constant", "time", "exp", "step", "poly", "validation")

#: Hyper-parameter defaults per data set, chosen on a held-out validation split of the
#: training set (never the test set); see docs/training.md.
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "digits": {"arch": "mlp", "epochs": 30, "batch_size": 128, "clip": 1.0, "lr": 0.5, "momentum": 0.0,
               "screen_batch_size": 64, "screen_sigma": 4.0, "lr_schedule": "constant"},
    # End-to-end tanh CNN of Tramer & Boneh 2021 (ICLR, App. B), C = 0.1, momentum 0.9, with
    # batch 2048 and lr 4 (their Fashion-MNIST setting) and inputs centred to [-1, 1], for both
    # data sets; 30 epochs to fit the CPU time goal. Chosen at epsilon = 2 on a validation split
    # of the training set (10 % held out, no test data); the grid and its results are in
    # docs/benchmarks.md (section Accuracy) and docs/accuracy_results.json.
    "mnist": {"arch": "cnn", "arch_kwargs": {"center": True}, "epochs": 30, "batch_size": 2048,
              "clip": 0.1, "lr": 4.0, "momentum": 0.9, "screen_batch_size": 256,
              "screen_sigma": 1.0, "lr_schedule": "constant"},
    "fashion-mnist": {"arch": "cnn", "arch_kwargs": {"center": True}, "epochs": 30,
                      "batch_size": 2048, "clip": 0.1, "lr": 4.0, "momentum": 0.9,
                      "screen_batch_size": 256, "screen_sigma": 1.0, "lr_schedule": "constant"},
}
#: Overrides for ``no_privacy`` runs (no clipping: the gradient is not bounded by C, so the
#: private learning rate diverges); batch 512, lr 0.1 + momentum 0.9 reached 98.8 % on MNIST.
NONPRIVATE_DEFAULTS: dict[str, dict[str, Any]] = {
    "mnist": {"lr": 0.1, "momentum": 0.9, "batch_size": 512},
    "fashion-mnist": {"lr": 0.1, "momentum": 0.9, "batch_size": 512},
}
_FALLBACK_DEFAULTS = DATASET_DEFAULTS["mnist"]


@dataclass
class TrainConfig:
    """Training configuration; ``None`` means "the data set's default" (:data:`DATASET_DEFAULTS`).

    Units: ``epsilon``/``delta`` the (epsilon, delta)-DP budget; ``clip`` the per-example L2
    clipping norm C; ``noise_multiplier`` sigma = noise std / C; ``batch_size`` the expected
    batch size B (q = B/N, N = number of training members); ``lr`` the SGD step size applied
    to the averaged noisy gradient, decayed per step by ``lr_schedule`` ("constant", "cosine",
    "linear"; :func:`dpaudit.training.levers.lr_factor`). ``arch_kwargs`` are merged over the
    data set's model options when ``arch`` is the data set's default model.

    Randomness: ``seed`` fixes the member split and the initial weights (both public, stored in
    the metadata). Batch sampling and the Gaussian noise must stay secret, so by default they
    draw fresh OS entropy; ``reproducible=True`` derives them from ``seed`` too (for tests and
    experiments; the model is then not private against anyone who knows the seed, and the
    metadata notes it). Runs with ``no_privacy`` are always seeded.
    """

    dataset: str = "digits"
    data_dir: str | None = None
    arch: str | None = None
    arch_kwargs: dict = field(default_factory=dict)
    epsilon: float | None = 2.0
    delta: float | None = None
    epochs: int | None = None
    batch_size: int | None = None
    batching: str = "poisson"
    schedule: str = "constant"
    plan_path: str | None = None
    clip: float | None = None
    lr: float | None = None
    momentum: float | None = None
    noise_multiplier: float | None = None
    no_privacy: bool = False
    seed: int = 0
    device: str = "cpu"
    accountant: str = "pld"
    member_fraction: float = 1.0
    threads: int | None = None
    reproducible: bool = False
    screening: str = "none"
    screen_clip: float = 0.1
    screen_sigma: float | None = None
    screen_batch_size: int | None = None
    screen_beta: float = -1.0
    sa_k: float = 10.0
    sa_max_rejects: int = 5
    ema_decay: float | None = None
    lr_schedule: str | None = None

    def screening_config(self) -> ScreeningConfig | None:
        """The :class:`ScreeningConfig` of this run (``None`` without screening)."""
        if self.screening == "none":
            return None
        return ScreeningConfig(rule=self.screening, clip=self.screen_clip,
                               noise_multiplier=float(self.screen_sigma or 1.0),
                               batch_size=int(self.screen_batch_size or 256), beta=self.screen_beta,
                               k=self.sa_k, max_rejects=self.sa_max_rejects)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TrainResult:
    """A trained model, its JSON-able metadata (see checkpoint.py) and per-epoch history."""

    model: nn.Module
    metadata: dict
    history: list[dict]


@dataclass
class TrainState:
    """What per-step / per-epoch callbacks see (mutable, the live run)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    config: TrainConfig
    ledger: PrivacyLedger | None
    epoch: int = 0
    step: int = 0
    sigma: float = 0.0
    last_norms: torch.Tensor | None = None


class Callback:
    """Extension point: override ``on_step`` (after each optimizer step) and/or
    ``on_epoch_end`` (after each epoch, with that epoch's history row)."""

    def on_step(self, state: TrainState) -> None:  # pragma: no cover - default no-op
        pass

    def on_epoch_end(self, state: TrainState, row: dict) -> None:  # pragma: no cover
        pass


def resolve_config(config: TrainConfig) -> TrainConfig:
    """Validate ``config`` and fill the data set's defaults (returns a new config)."""
    c = dataclasses.replace(config, arch_kwargs=dict(config.arch_kwargs))
    d = DATASET_DEFAULTS.get(c.dataset.lower(), _FALLBACK_DEFAULTS)
    if c.no_privacy:
        d = {**d, **NONPRIVATE_DEFAULTS.get(c.dataset.lower(), {})}
    for k, v in d.items():
        if k == "arch_kwargs":
            # the data set's model options apply to its default model only; the user's win
            if c.arch is None or c.arch == d.get("arch"):
                c.arch_kwargs = {**v, **c.arch_kwargs}
        elif getattr(c, k) is None:
            setattr(c, k, v)
    if c.delta is None:
        c.delta = DEFAULT_DELTA
    if c.batching not in ("poisson", "shuffle"):
        raise InvalidParameterError(f"batching must be 'poisson' or 'shuffle', got {c.batching!r}")
    if c.schedule not in SCHEDULES:
        raise InvalidParameterError(f"schedule must be one of {', '.join(SCHEDULES)}, got {c.schedule!r}")
    if int(c.epochs) != c.epochs or c.epochs < 1:
        raise InvalidParameterError(f"epochs must be a positive integer, got {c.epochs!r}")
    if int(c.batch_size) != c.batch_size or c.batch_size < 1:
        raise InvalidParameterError(f"batch size must be a positive integer, got {c.batch_size!r}")
    for name in ("clip", "lr"):
        v = float(getattr(c, name))
        if not (v > 0 and math.isfinite(v)):
            raise InvalidParameterError(f"{name} must be a finite number > 0, got {getattr(c, name)!r}")
    if not (0 <= float(c.momentum) < 1):
        raise InvalidParameterError(f"momentum must be in [0, 1), got {c.momentum!r}")
    if not 0 < c.member_fraction <= 1:
        raise InvalidParameterError(f"member fraction must be in (0, 1], got {c.member_fraction!r}")
    if not (0 < float(c.delta) < 1):
        raise InvalidParameterError(f"delta must be in (0, 1), got {c.delta!r}")
    if c.screening not in SCREENING_RULES:
        raise InvalidParameterError(f"screening must be one of {', '.join(SCREENING_RULES)}, got {c.screening!r}")
    if c.screening != "none":
        if c.no_privacy:
            raise InvalidParameterError("screening is a private mechanism; it cannot run with no_privacy")
        if c.plan_path or c.schedule != "constant":
            raise InvalidParameterError("screening supports the constant schedule only (no --plan)")
        c.screening_config()  # validates
    if c.ema_decay is not None and not 0.0 <= float(c.ema_decay) < 1.0:
        raise InvalidParameterError(f"EMA decay must be in [0, 1), got {c.ema_decay!r}")
    check_lr_schedule(c.lr_schedule)
    if c.no_privacy:
        if c.plan_path or c.noise_multiplier is not None:
            raise InvalidParameterError("--no-privacy cannot be combined with --plan or a noise multiplier")
        c.epsilon = None
    else:
        if c.noise_multiplier is not None:
            s = float(c.noise_multiplier)
            if not (s > 0 and math.isfinite(s)):
                raise InvalidParameterError(f"noise multiplier must be a finite number > 0, got {s!r}")
            if c.plan_path:
                raise InvalidParameterError("give either a plan or a noise multiplier, not both")
        if c.epsilon is not None:
            e = float(c.epsilon)
            if not (e > 0 and math.isfinite(e)):
                raise InvalidParameterError(f"epsilon must be a finite number > 0, got {c.epsilon!r}")
        elif c.noise_multiplier is None and not c.plan_path:
            raise InvalidParameterError("give a target epsilon, a plan, a noise multiplier, or no_privacy")
    return c


def member_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of range(n) into sorted (members, non-members); ``fraction`` members."""
    perm = np.random.default_rng(seed).permutation(n)
    k = max(1, int(round(fraction * n)))
    return np.sort(perm[:k]), np.sort(perm[k:])


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 2048) -> float:
    """Accuracy of ``model`` on (x, y) (tensors on the model's device); eval mode inside."""
    if len(y) == 0:
        return float("nan")
    was = model.training
    model.eval()
    correct = 0
    for i in range(0, len(y), batch):
        correct += int((model(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum())
    model.train(was)
    return correct / len(y)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    return str(obj)


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
    loaded: NoisePlan | None = None
    if config.plan_path and not config.no_privacy:
        loaded = load_plan(config.plan_path)  # its B and epochs become the defaults
        config = dataclasses.replace(
            config,
            batch_size=config.batch_size or loaded.run.batch_size,
            epochs=config.epochs or loaded.run.epochs,
        )
    cfg = resolve_config(config)
    notes: list[str] = []
    configure_threads(cfg.threads)
    device = resolve_device(cfg.device)
    if dataset is None:
        dataset = load_dataset(cfg.dataset, cfg.data_dir)
    n_train = len(dataset.y_train)

    if members is not None:
        mem = np.unique(np.asarray(members, dtype=np.int64))
        if mem.size == 0 or mem.min() < 0 or mem.max() >= n_train:
            raise InvalidParameterError(f"member indices must lie in 0..{n_train - 1}")
        nonmem = np.setdiff1d(np.arange(n_train), mem)
        split_kind = "explicit"
    else:
        frac = cfg.member_fraction
        wants_val = cfg.schedule == "validation" or (loaded is not None and loaded.runtime_rule is not None)
        if wants_val and frac == 1.0 and not cfg.no_privacy:
            frac = 0.9
            cfg.member_fraction = frac
            notes.append("validation schedule: held out 10% of the train split for validation")
        mem, nonmem = member_split(n_train, frac, cfg.seed)
        split_kind = "seeded"
    n = int(mem.size)
    if cfg.batch_size > n:
        raise InvalidParameterError(f"batch size {cfg.batch_size} exceeds the {n} training members")
    if not cfg.no_privacy and cfg.delta >= 1.0 / n:
        raise InvalidParameterError(
            f"delta = {cfg.delta:g} >= 1/N = {1.0 / n:.3g} allows releasing an example outright; "
            "choose delta < 1/N"
        )

    # ------------------------------------------------------------------ model
    torch.manual_seed(cfg.seed)
    if model is None:
        arch = cfg.arch
        arch_kwargs = resolve_arch_kwargs(arch, dataset.input_shape, **cfg.arch_kwargs)
        model = build_model(arch, dataset.input_shape, dataset.num_classes, **arch_kwargs)
    else:
        arch, arch_kwargs = "custom", {}
    model = model.to(device)
    model.train()
    if not cfg.no_privacy:
        check_model(model)
    params = trainable_parameters(model)
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum)

    # ------------------------------------------------------------------ noise
    plan: NoisePlan | None = None
    target: float | None = None
    scr_cfg = cfg.screening_config()
    if cfg.no_privacy:
        pass
    elif loaded is not None:
        plan = loaded
        r = plan.run
        if (r.dataset_size, r.batch_size, r.batching) != (n, cfg.batch_size, cfg.batching):
            raise InvalidParameterError(
                f"the plan is for N={r.dataset_size}, B={r.batch_size}, {r.batching} batching; "
                f"this run has N={n}, B={cfg.batch_size}, {cfg.batching}: re-plan with "
                f"--dataset-size {n} --batch-size {cfg.batch_size} --batching {cfg.batching}"
            )
        if r.total_steps != r.epochs * r.steps_per_epoch:
            raise InvalidParameterError("plans with a partial last epoch are not supported")
        cfg.epochs = r.epochs
        target = plan.epsilon
        cfg.epsilon = plan.epsilon
        if plan.runtime_rule is not None:
            cfg.schedule = "validation"
    elif cfg.noise_multiplier is None:
        # Screening plans a constant gradient sigma beside one validation query per step.
        releases = (() if scr_cfg is None
                    else ((scr_cfg.sample_rate(n), scr_cfg.noise_multiplier),))
        plan = plan_noise(cfg.epsilon, cfg.delta, dataset_size=n, batch_size=cfg.batch_size,
                          epochs=cfg.epochs, batching=cfg.batching, accountant=cfg.accountant,
                          schedule="constant" if releases else cfg.schedule,
                          per_step_releases=releases)
        target = float(cfg.epsilon)
    else:
        target = None if cfg.epsilon is None else float(cfg.epsilon)
    if plan is not None:
        notes.extend(plan.notes)
    accountant = plan.accountant if plan is not None else cfg.accountant
    if plan is not None and plan.runtime_rule is not None and nonmem.size == 0:
        raise InvalidParameterError("the validation schedule needs held-out data: member_fraction < 1")

    # ------------------------------------------------------------------ data, sampler, ledger
    x_mem = torch.from_numpy(np.ascontiguousarray(dataset.x_train[mem])).to(device)
    y_mem = torch.from_numpy(dataset.y_train[mem]).to(device)
    x_val = torch.from_numpy(np.ascontiguousarray(dataset.x_train[nonmem])).to(device)
    y_val = torch.from_numpy(dataset.y_train[nonmem]).to(device)
    if cfg.no_privacy:
        sample_rng = np.random.default_rng(cfg.seed + 1)  # nothing to keep secret
    elif cfg.reproducible:
        sample_rng = np.random.default_rng(cfg.seed + 1)
        notes.append("reproducible=True: sampling and noise derive from the recorded seed; "
                     "the guarantee does not hold against anyone who knows it")
    else:
        sample_rng = np.random.default_rng()  # OS entropy
    sampler = make_sampler(cfg.batching, n, cfg.batch_size, rng=sample_rng)
    ledger = None if cfg.no_privacy else PrivacyLedger(n, cfg.batch_size, cfg.batching,
                                                       sampler.steps_per_epoch)
    gen = torch.Generator(device=device)
    if cfg.reproducible:
        gen.manual_seed(cfg.seed + 2)
    else:
        gen.manual_seed(int.from_bytes(os.urandom(8), "little") >> 1)
    loss = loss_fn or default_loss
    state = TrainState(model, opt, cfg, ledger)
    screener = None
    if scr_cfg is not None:
        screener = Screener(scr_cfg, n, sample_rng, gen, loss, device)
        notes.append(
            f"screening {scr_cfg.rule}: every candidate update and every validation query "
            f"(q_v = {screener.q:.4g}, sigma_v = {scr_cfg.noise_multiplier:g}, C_v = {scr_cfg.clip:g}, "
            "drawn from the training members) is charged; no amplification from rejection")
    ema = ParamEMA(params, cfg.ema_decay) if cfg.ema_decay is not None else None
    total_steps = cfg.epochs * sampler.steps_per_epoch

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.epochs, desc="train", unit="epoch", leave=True, dynamic_ncols=True)
    history: list[dict] = []
    val_accs: list[float] = []
    spent: Accounted | None = None
    stopped = ""
    try:
        for epoch in range(cfg.epochs):
            sigma = 0.0
            if ledger is not None:
                if plan is not None and plan.runtime_rule is not None:
                    sigma = float(plan.runtime_rule.next_sigma(val_accs))
                elif plan is not None:
                    sigma = float(plan.noise_multipliers[epoch])
                else:
                    sigma = float(cfg.noise_multiplier)
                projected = ledger.copy()
                projected.record_epoch(sigma, cfg.clip)
                if screener is not None:
                    projected.record_release(screener.q, scr_cfg.noise_multiplier,
                                             sampler.steps_per_epoch, "screening validation queries")
                if (plan is not None and plan.cumulative_epsilon
                        and tuple(projected.epoch_sigmas()) == plan.noise_multipliers[: epoch + 1]):
                    nxt = Accounted(plan.cumulative_epsilon[epoch], accountant, "plan curve")
                else:
                    nxt = account(projected.to_run(), cfg.delta, accountant)
                if target is not None and nxt.epsilon > target:
                    stopped = (f"stopped before epoch {epoch + 1}: it would spend epsilon = "
                               f"{nxt.epsilon:.4g} > budget {target:.4g}")
                    notes.append(stopped)
                    break
            state.epoch, state.sigma = epoch, sigma
            loss_sum, correct, seen = 0.0, 0, 0
            releases_before = screener.releases if screener is not None else 0
            kept_in_epoch = 0
            for idx in sampler.epoch():
                ib = torch.from_numpy(idx).to(device)
                xb, yb = x_mem[ib], y_mem[ib]
                if screener is not None:
                    vb = torch.from_numpy(screener.sample()).to(device)
                    xv, yv = x_mem[vb], y_mem[vb]
                    old_losses = screener.losses(model, xv, yv)
                    snap = Snapshot(params, opt)
                opt.zero_grad(set_to_none=True)
                if cfg.lr_schedule != "constant":
                    for group in opt.param_groups:
                        group["lr"] = cfg.lr * lr_factor(cfg.lr_schedule, state.step, total_steps)
                if ledger is not None:
                    grads, res = privatize(model, xb, yb, clip=cfg.clip, noise_multiplier=sigma,
                                           expected_batch_size=sampler.expected_batch_size,
                                           generator=gen, loss_fn=loss_fn)
                    for p, g in zip(params, grads):
                        p.grad = g
                    ledger.record_step(sigma, cfg.clip)
                    state.last_norms = res.norms
                    losses, logits = res.losses, res.logits
                else:
                    if len(idx) == 0:
                        continue
                    logits = model(xb)
                    losses = loss(logits, yb)
                    losses.mean().backward()
                    losses, logits = losses.detach(), logits.detach()
                opt.step()
                keep = True
                if screener is not None:
                    keep = screener.decide(model, xv, yv, old_losses)
                    if not keep:
                        snap.restore()
                kept_in_epoch += int(keep)
                if ema is not None and keep:
                    ema.update()
                state.step += 1
                if len(idx):
                    loss_sum += float(losses.sum())
                    correct += int((logits.argmax(1) == yb).sum())
                    seen += len(idx)
                for cb in callbacks:
                    cb.on_step(state)
            if ledger is not None:
                spent = nxt
            if screener is not None and screener.releases > releases_before:
                ledger.record_release(screener.q, scr_cfg.noise_multiplier,
                                      screener.releases - releases_before,
                                      "screening validation queries")
            row = {
                "epoch": epoch + 1,
                "sigma": sigma if ledger is not None else None,
                "loss": loss_sum / max(seen, 1),
                "train_accuracy": correct / max(seen, 1),
                "epsilon": spent.epsilon if spent is not None else None,
            }
            if screener is not None:
                row["accept_rate"] = kept_in_epoch / max(1, screener.releases - releases_before)
            if nonmem.size:
                acc = evaluate(model, x_val, y_val)
                val_accs.append(acc)
                row["val_accuracy"] = acc
            history.append(row)
            for cb in callbacks:
                cb.on_epoch_end(state, row)
            if bar is not None:
                post = {"loss": f"{row['loss']:.3f}", "acc": f"{row['train_accuracy']:.3f}"}
                if spent is not None:
                    post["eps"] = f"{spent.epsilon:.3f}"
                bar.set_postfix(post)
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()

    # ------------------------------------------------------------------ final accounting
    final: Accounted | None = None
    if ledger is not None and ledger.steps:
        final = account(ledger.to_run(), cfg.delta, accountant)
        notes.extend(n_ for n_ in final.notes if n_ not in notes)
        if target is not None and final.epsilon > target:
            notes.append(f"re-accounting the ledger gives epsilon = {final.epsilon:.6g}, above "
                         f"the budget {target:.6g} (accountant discretisation); reported as is")
    x_test = torch.from_numpy(dataset.x_test).to(device)
    y_test = torch.from_numpy(dataset.y_test).to(device)
    test_acc = evaluate(model, x_test, y_test)
    test_acc_raw = test_acc
    if ema is not None and ema.updates:
        ema.swap()  # publish the averaged weights (post-processing of the noisy updates)
        test_acc = evaluate(model, x_test, y_test)
    model.eval()

    from dpaudit import __version__

    metadata = _jsonable({
        "format": "dpaudit-model/1",
        "private": not cfg.no_privacy,
        "epsilon": final.epsilon if final is not None else (0.0 if ledger is not None else None),
        "target_epsilon": target,
        "delta": cfg.delta if not cfg.no_privacy else None,
        "accountant": final.accountant if final is not None else (None if cfg.no_privacy else accountant),
        "accountant_method": final.method if final is not None else None,
        "test_accuracy": test_acc,
        "val_accuracy": val_accs[-1] if val_accs else None,
        "ledger": ledger.to_dict() if ledger is not None else None,
        "noise_multipliers": ledger.epoch_sigmas() if ledger is not None else [],
        "clip": cfg.clip,
        "batching": cfg.batching,
        "epochs_trained": len(history),
        "stopped_early": bool(stopped),
        "arch": arch,
        "arch_kwargs": arch_kwargs,
        "input_shape": list(dataset.input_shape),
        "num_classes": dataset.num_classes,
        "dataset": dataset.name,
        "data_dir": cfg.data_dir if dataset.name != "digits" else None,
        "split": {
            "kind": split_kind,
            "seed": cfg.seed,
            "member_fraction": n / n_train,
            "member_indices": mem.tolist(),
            "nonmember_indices": nonmem.tolist(),
        },
        "config": cfg.to_dict(),
        "plan": plan.plan_dict if plan is not None else None,
        "history": history,
        "screening": ({**scr_cfg.to_dict(), **screener.stats()} if screener is not None else None),
        "levers": {
            "accountant": accountant,
            "ema_decay": cfg.ema_decay if ema is not None else None,
            "batch_size": cfg.batch_size,
            "lr": cfg.lr,
            "lr_schedule": cfg.lr_schedule,
            "momentum": cfg.momentum,
            "arch": arch,
            "activation": arch_kwargs.get("activation") if isinstance(arch_kwargs, dict) else None,
        },
        "test_accuracy_raw": test_acc_raw,
        "notes": notes,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "train_seconds": time.perf_counter() - t_start,
        "library_version": __version__,
        "torch_version": torch.__version__,
    })
    json.dumps(metadata)  # must be JSON-able
    return TrainResult(model=model, metadata=metadata, history=history)


TrainCallback = Callable[[TrainState], None]
