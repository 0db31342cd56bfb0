"""The DP-SGD step loop (Abadi et al. 2016, Alg. 1) over one run's members.

Each step: draw a batch (:mod:`dpaudit.training.sampling`), compute the clipped per-example
gradient sum and add N(0, sigma^2 C^2) once, divided by the expected batch size
(:mod:`dpaudit.training.privatize`), record the step in the budget's ledger, apply SGD (with
momentum: post-processing, free). With update screening (:mod:`dpaudit.training.screening`)
every candidate update is scored by a charged validation query and kept or undone. Without
privacy the step is plain SGD on the mean loss. With an augmentation
(:mod:`dpaudit.training.augment`) every example of the batch becomes K augmented copies whose
gradients are averaged before clipping (augmentation multiplicity; the accounting is
unchanged).

:class:`StepLoop` holds the live objects (model, optimizer, sampler, noise generator,
screener, EMA); :meth:`StepLoop.fit` runs the epochs, asking the
:class:`~dpaudit.training.budget.PrivacyBudget` for each epoch's sigma and whether the epoch
fits the budget.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from dpaudit.training.augment import augmenter_for
from dpaudit.training.budget import PrivacyBudget
from dpaudit.training.clipping import LossFn, default_loss, trainable_parameters
from dpaudit.training.config import TrainConfig
from dpaudit.training.ledger import PrivacyLedger
from dpaudit.training.levers import ParamEMA, lr_factor
from dpaudit.training.privatize import privatize
from dpaudit.training.sampling import Sampler
from dpaudit.training.screening import Screener, Snapshot


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
    last_norms: Tensor | None = None


class Callback:
    """Extension point: override ``on_step`` (after each optimizer step) and/or
    ``on_epoch_end`` (after each epoch, with that epoch's history row)."""

    def on_step(self, state: TrainState) -> None:  # pragma: no cover - default no-op
        pass

    def on_epoch_end(self, state: TrainState, row: dict) -> None:  # pragma: no cover
        pass


@dataclass
class _EpochStats:
    """Running loss and accuracy of one epoch's batches (before each update)."""

    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    kept: int = 0

    def add(self, losses: Tensor, logits: Tensor, y: Tensor) -> None:
        self.loss_sum += float(losses.sum())
        self.correct += int((logits.argmax(1) == y).sum())
        self.seen += len(y)


@dataclass
class _Candidate:
    """A screened step: the validation batch, its losses before the update, and the
    snapshot that undoes the update."""

    x: Tensor
    y: Tensor
    old_losses: Tensor
    snapshot: Snapshot


class StepLoop:
    """One run's DP-SGD (or plain SGD) loop.

    Args:
        config: the resolved configuration (lr, momentum, clip, lr schedule, EMA decay).
        model: the model, on ``device``, in training mode.
        x, y: the members' inputs and labels, on ``device``.
        sampler: the batch sampler over the members.
        generator: torch generator on ``device`` for the Gaussian noise (secret).
        budget: the privacy budget (``None``: plain SGD, no clipping, no noise).
        screener: update screening (``None``: every update is kept).
        loss_fn: per-example loss (default cross-entropy).
        callbacks: :class:`Callback` objects.
    """

    def __init__(
        self, config: TrainConfig, model: nn.Module, x: Tensor, y: Tensor,
        sampler: Sampler, generator: torch.Generator, *,
        budget: PrivacyBudget | None = None, screener: Screener | None = None,
        loss_fn: LossFn | None = None, callbacks: Sequence[Callback] = (),
    ) -> None:
        self.config = config
        self.model = model
        self.x, self.y = x, y
        self.device = x.device
        self.sampler = sampler
        self.generator = generator
        self.budget = budget
        self.screener = screener
        self.loss_fn = loss_fn
        self.callbacks = tuple(callbacks)
        assert config.lr is not None and config.momentum is not None and config.epochs is not None
        self.lr = float(config.lr)
        self.params = trainable_parameters(model)
        self.optimizer = torch.optim.SGD(self.params, lr=self.lr, momentum=float(config.momentum))
        self.ema = ParamEMA(self.params, config.ema_decay) if config.ema_decay is not None else None
        self.augmenter = augmenter_for(config, self.device)
        self.k = self.augmenter.k if self.augmenter is not None else 1
        self.lr_schedule = str(config.lr_schedule)
        self.total_steps = config.epochs * sampler.steps_per_epoch
        self.state = TrainState(model, self.optimizer, config, budget.ledger if budget else None)

    # ------------------------------------------------------------------ epochs
    def fit(
        self, epochs: int, validate: Callable[[nn.Module], float] | None = None,
        on_epoch: Callable[[dict], None] | None = None,
    ) -> list[dict]:
        """Run up to ``epochs`` epochs (fewer if the budget stops the run); returns one history
        row per epoch run. ``validate(model)``: held-out accuracy after each epoch (fed to the
        validation noise rule); ``on_epoch(row)``: e.g. a progress bar."""
        history: list[dict] = []
        val_accuracies: list[float] = []
        for epoch in range(epochs):
            sigma = 0.0
            if self.budget is not None:
                sigma = self.budget.sigma_for_epoch(epoch, val_accuracies)
                if not self.budget.may_run_epoch(epoch, sigma):
                    break
            row, queries = self.run_epoch(epoch, sigma)
            if self.budget is not None:
                self.budget.end_epoch(queries)
                row["epsilon"] = self.budget.spent.epsilon if self.budget.spent else None
            if validate is not None:
                row["val_accuracy"] = validate(self.model)
                val_accuracies.append(row["val_accuracy"])
            history.append(row)
            for cb in self.callbacks:
                cb.on_epoch_end(self.state, row)
            if on_epoch is not None:
                on_epoch(row)
        return history

    def run_epoch(self, epoch: int, sigma: float) -> tuple[dict[str, Any], int]:
        """One epoch at noise ``sigma``; returns its history row and the number of screening
        validation queries it released."""
        self.state.epoch, self.state.sigma = epoch, sigma
        stats = _EpochStats()
        before = self.screener.releases if self.screener is not None else 0
        for idx in self.sampler.epoch():
            self.step(idx, sigma, stats)
        queries = self.screener.releases - before if self.screener is not None else 0
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "sigma": sigma if self.budget is not None else None,
            "loss": stats.loss_sum / max(stats.seen, 1),
            "train_accuracy": stats.correct / max(stats.seen, 1),
            "epsilon": None,
        }
        if self.screener is not None:
            row["accept_rate"] = stats.kept / max(1, queries)
        return row, queries

    # ------------------------------------------------------------------ one step
    def step(self, idx: np.ndarray, sigma: float, stats: _EpochStats) -> None:
        """One update from the member indices ``idx`` (possibly empty for Poisson batches:
        a private step still releases noise and is recorded)."""
        ib = torch.from_numpy(idx).to(self.device)
        xb, yb = self.x[ib], self.y[ib]
        candidate = self._begin_screening()
        self.optimizer.zero_grad(set_to_none=True)
        self._apply_lr_schedule()
        if self.budget is not None:
            losses, logits = self._private_gradient(xb, yb, sigma)
        elif len(idx) == 0:
            return
        else:
            losses, logits = self._plain_gradient(xb, yb)
        self.optimizer.step()
        keep = self._finish_screening(candidate)
        stats.kept += int(keep)
        if self.ema is not None and keep:
            self.ema.update()
        self.state.step += 1
        if len(idx):
            stats.add(losses, logits, yb)
        for cb in self.callbacks:
            cb.on_step(self.state)

    def _apply_lr_schedule(self) -> None:
        if self.lr_schedule == "constant":
            return
        lr = self.lr * lr_factor(self.lr_schedule, self.state.step, self.total_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def _private_gradient(self, xb: Tensor, yb: Tensor, sigma: float) -> tuple[Tensor, Tensor]:
        assert self.budget is not None
        grads, res = privatize(self.model, xb, yb, clip=self.budget.clip, noise_multiplier=sigma,
                               expected_batch_size=self.sampler.expected_batch_size,
                               generator=self.generator, loss_fn=self.loss_fn,
                               group_size=self.k, expand=self.augmenter)
        for p, g in zip(self.params, grads):
            p.grad = g
        self.budget.record_step(sigma)
        self.state.last_norms = res.norms
        return res.losses, res.logits

    def _plain_gradient(self, xb: Tensor, yb: Tensor) -> tuple[Tensor, Tensor]:
        if self.augmenter is not None:  # the mean loss over every augmented copy
            xb, yb = self.augmenter(xb), yb.repeat_interleave(self.k)
        logits = self.model(xb)
        losses = (self.loss_fn or default_loss)(logits, yb)
        losses.mean().backward()
        k = self.k  # per-example means over the copies, for the epoch's statistics
        return (losses.detach().reshape(-1, k).mean(1),
                logits.detach().reshape(-1, k, *logits.shape[1:]).mean(1))

    def _begin_screening(self) -> _Candidate | None:
        if self.screener is None:
            return None
        vb = torch.from_numpy(self.screener.sample()).to(self.device)
        xv, yv = self.x[vb], self.y[vb]
        return _Candidate(xv, yv, self.screener.losses(self.model, xv, yv),
                          Snapshot(self.params, self.optimizer))

    def _finish_screening(self, candidate: _Candidate | None) -> bool:
        """Release the candidate's noisy validation score and apply the rule; an update that
        is not kept is undone exactly (weights and momentum)."""
        if candidate is None or self.screener is None:
            return True
        keep = self.screener.decide(self.model, candidate.x, candidate.y, candidate.old_losses)
        if not keep:
            candidate.snapshot.restore()
        return keep
