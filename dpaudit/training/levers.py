"""Accuracy levers of the reference trainer that cost no privacy.

* :class:`ParamEMA` -- exponential moving average of the parameters (Polyak & Juditsky 1992,
  "Acceleration of stochastic approximation by averaging"; used for DP training by De et al.
  2022, "Unlocking High-Accuracy Differentially Private Image Classification through Scale",
  arXiv 2204.13650, Sec. 3.3). The averaged weights are a function of the released noisy
  updates only, so evaluating or publishing them is post-processing (Dwork & Roth 2014,
  Prop. 2.1): no privacy cost.

* :func:`lr_factor` -- learning-rate decay over the run ("cosine": Loshchilov & Hutter 2017,
  "SGDR", ICLR, Eq. 5 without restarts; "linear" to zero). A function of the step count only,
  so it is data-independent and costs no privacy.

The other levers (tight PLD accounting to afford a smaller sigma, large batches with a tuned
learning rate, the tanh CNN of Tramer & Boneh 2021) are configuration: ``accountant="pld"``,
``batch_size``/``lr``, ``arch="cnn"`` (see docs/screening.md).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dpaudit.errors import InvalidParameterError
from dpaudit.training.config import LR_SCHEDULES, check_lr_schedule

__all__ = ["LR_SCHEDULES", "ParamEMA", "check_lr_schedule", "lr_factor"]


class ParamEMA:
    """theta_ema <- d_t theta_ema + (1 - d_t) theta after each kept update, with the warm-up
    d_t = min(decay, (1 + t) / (10 + t)) (t = updates so far) so early weights fade fast.

    Args:
        params: the trainable parameters (the live tensors).
        decay: the asymptotic decay d in [0, 1).
    """

    def __init__(self, params: list[nn.Parameter], decay: float) -> None:
        if not 0.0 <= float(decay) < 1.0:
            raise InvalidParameterError(f"EMA decay must be in [0, 1), got {decay!r}")
        self.params = params
        self.decay = float(decay)
        self.updates = 0
        self.shadow = [p.detach().clone() for p in params]

    @torch.no_grad()
    def update(self) -> None:
        d = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        for s, p in zip(self.shadow, self.params):
            s.mul_(d).add_(p.detach(), alpha=1.0 - d)
        self.updates += 1

    @torch.no_grad()
    def swap(self) -> None:
        """Exchange the live parameters and the averaged ones (call twice to undo)."""
        for s, p in zip(self.shadow, self.params):
            tmp = p.detach().clone()
            p.copy_(s)
            s.copy_(tmp)


def lr_factor(kind: str, step: int, total_steps: int) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based) of ``total_steps``.

    constant: 1; cosine: (1 + cos(pi t / T)) / 2; linear: 1 - t / T, with t = step and T =
    total_steps, so the first step uses the full rate and the rate approaches 0 at the end.
    """
    check_lr_schedule(kind)
    if kind == "constant" or total_steps <= 0:
        return 1.0
    t = min(max(step, 0), total_steps) / total_steps
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * t))
    return 1.0 - t
