"""Update screening for DP-SGD (SA-DPSGD, DPSUR) with a *sound* privacy charge.

Both rules compute a candidate DP-SGD update, measure its quality
Delta E = L(w_candidate) - L(w_current) on a validation batch, and keep or discard it:

* ``sa`` -- Fu, Chen, Ling 2022, "SA-DPSGD: Differentially Private Stochastic Gradient
  Descent based on Simulated Annealing" (arXiv 2211.07218, Sec. 4, Alg. 1): a Metropolis
  rule. Accept if Delta E <= 0, else with probability exp(-Delta E * k * t), t = number of
  updates accepted so far, k = 10; after ``max_rejects`` = 5 consecutive rejections the next
  candidate is accepted unconditionally.
* ``dpsur`` -- Fu, Ye, Hu, Chen, Wang, Wang, Ran 2024, "DPSUR: Accelerating Differentially
  Private Stochastic Gradient Descent Using Selective Update and Release" (PVLDB 17(6),
  arXiv 2311.14056, Sec. 4.2 / Alg. 1): accept iff the clipped, Gaussian-noised
  Delta E < beta * C_v (default beta = -1; the authors' code clips the *mean* loss change to
  [-C_v, C_v] and adds N(0, (2 C_v sigma_v)^2), replace-one sensitivity 2 C_v).

**What we measure and charge** (see docs/screening.md). SA-DPSGD measured Delta E without
noise on data it charged nothing for, so its epsilon is not an upper bound. Here the
validation batch is Poisson-sampled with rate q_v from the *training members* (private
data), each example's contribution d_i = l_i(w_candidate) - l_i(w_current) is clipped to
[-C_v, C_v], and the released statistic is S = sum_i clip(d_i) + N(0, sigma_v^2 C_v^2).
Under add/remove neighbours S has L2 sensitivity C_v, so each query is a Poisson-subsampled
Gaussian mechanism with noise multiplier sigma_v (the same mechanism as a DP-SGD step,
Mironov, Talwar, Zhang 2019). The candidate update itself is a DP-SGD release whether or not
it is kept. The accept/reject decision (and the coin of the SA rule) is post-processing of
these two releases, so composing *every* candidate and *every* validation query bounds the
privacy loss regardless of the rule -- we take no amplification from rejection (DPSUR's own
analysis charges only accepted steps; Xie & Huang 2026, arXiv 2606.04384, show it overlooks
how selective release changes the sampling probability).

Rules are applied to the noisy *mean* Delta E = S / (q_v N) (a public divisor) for SA, and
to S against beta * C_v for DPSUR (the noise std of S is sigma_v C_v, so the threshold is
-|beta| / sigma_v noise standard deviations, as in DPSUR where it is beta / (2 sigma_v)).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from dpaudit.training.config import ScreeningConfig

__all__ = ["ScreeningConfig", "Screener", "Snapshot", "clipped_delta_sum", "dpsur_accept",
           "per_example_losses", "sa_accept"]


def sa_accept(delta_e: float, accepted: int, rejects_in_row: int, u: float, *,
              k: float = 10.0, max_rejects: int = 5) -> bool:
    """SA-DPSGD's Metropolis rule (arXiv 2211.07218, Alg. 1).

    Accept if ``delta_e <= 0``; else if ``rejects_in_row >= max_rejects``; else iff
    ``u < exp(-delta_e * k * accepted)`` with ``u`` uniform on [0, 1).
    """
    if delta_e <= 0 or rejects_in_row >= max_rejects:
        return True
    return u < math.exp(-delta_e * k * accepted)


def dpsur_accept(noisy_sum: float, *, clip: float, beta: float = -1.0) -> bool:
    """DPSUR's rule (arXiv 2311.14056, Alg. 1): accept iff the noisy statistic < beta * C_v."""
    return noisy_sum < beta * clip


def clipped_delta_sum(new_losses: Tensor, old_losses: Tensor, clip: float) -> float:
    """sum_i clip(l_i(w') - l_i(w), -C_v, C_v): L2 sensitivity C_v under add/remove."""
    return float((new_losses - old_losses).clamp(-clip, clip).sum())


@torch.no_grad()
def per_example_losses(model: nn.Module, x: Tensor, y: Tensor, loss_fn: Any) -> Tensor:
    """Per-example losses (B,) in eval mode (no dropout etc.), restoring the mode."""
    if len(y) == 0:
        return torch.zeros(0, device=x.device)
    was = model.training
    model.eval()
    out = loss_fn(model(x), y).detach()
    model.train(was)
    return out


class Screener:
    """Stateful screening of candidate updates (one per DP-SGD step).

    Usage per step: ``idx = s.sample()``, ``old = s.losses(model, x[idx], y[idx])`` before the
    step, then after applying the candidate ``keep = s.decide(model, x[idx], y[idx], old)``;
    restore the previous weights if ``keep`` is False. Every call of :meth:`decide` is one
    released subsampled Gaussian (``releases`` counts them; the caller records them in the
    ledger).

    Args:
        config: the rule and its parameters.
        n: number of training members N (the validation batch is drawn from them).
        rng: numpy generator for the Poisson validation sample (secret).
        generator: torch generator (on ``device``) for the noise and the SA coin (secret).
        loss_fn: per-example loss ``(logits, y) -> (B,)``.
    """

    def __init__(self, config: ScreeningConfig, n: int, rng: np.random.Generator,
                 generator: torch.Generator, loss_fn: Any, device: torch.device | str = "cpu") -> None:
        self.config = config
        self.n = int(n)
        self.q = config.sample_rate(self.n)
        self.rng = rng
        self.gen = generator
        self.loss_fn = loss_fn
        self.device = torch.device(device)
        self.accepted = 0
        self.rejected = 0
        self.forced = 0
        self.rejects_in_row = 0
        self.releases = 0

    def sample(self) -> np.ndarray:
        """Poisson sample of member indices with rate q_v (possibly empty)."""
        return np.flatnonzero(self.rng.random(self.n) < self.q)

    def losses(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        return per_example_losses(model, x, y, self.loss_fn)

    def noisy_sum(self, new_losses: Tensor, old_losses: Tensor) -> float:
        """S = sum of clipped loss changes + N(0, (sigma_v C_v)^2): one accounted release."""
        c = self.config
        noise = torch.empty((), device=self.device).normal_(0.0, c.noise_multiplier * c.clip,
                                                              generator=self.gen)
        self.releases += 1
        return clipped_delta_sum(new_losses, old_losses, c.clip) + float(noise)

    def decide(self, model: nn.Module, x: Tensor, y: Tensor, old_losses: Tensor) -> bool:
        """Release the noisy Delta E of the candidate now in ``model`` and apply the rule."""
        c = self.config
        s = self.noisy_sum(self.losses(model, x, y), old_losses)
        if c.rule == "dpsur":
            keep = dpsur_accept(s, clip=c.clip, beta=c.beta)
        else:
            delta_e = s / (self.q * self.n)  # noisy mean over the expected batch (public)
            u = float(torch.rand((), device=self.device, generator=self.gen))
            forced = delta_e > 0 and self.rejects_in_row >= c.max_rejects
            keep = sa_accept(delta_e, self.accepted, self.rejects_in_row, u,
                             k=c.k, max_rejects=c.max_rejects)
            self.forced += int(forced)
        if keep:
            self.accepted += 1
            self.rejects_in_row = 0
        else:
            self.rejected += 1
            self.rejects_in_row += 1
        return keep

    def stats(self) -> dict[str, Any]:
        return {"rule": self.config.rule, "accepted": self.accepted, "rejected": self.rejected,
                "forced": self.forced, "validation_releases": self.releases,
                "validation_sample_rate": self.q}


class Snapshot:
    """Copy of the trainable parameters and the optimizer's momentum buffers, to undo a
    rejected candidate update exactly."""

    def __init__(self, params: list[nn.Parameter], optimizer: torch.optim.Optimizer) -> None:
        self.params = params
        self.optimizer = optimizer
        self.values = [p.detach().clone() for p in params]
        self.buffers: dict[int, Tensor | None] = {}
        for p in params:
            st = optimizer.state.get(p, {})
            buf = st.get("momentum_buffer")
            self.buffers[id(p)] = None if buf is None else buf.detach().clone()

    @torch.no_grad()
    def restore(self) -> None:
        for p, v in zip(self.params, self.values):
            p.copy_(v)
        for p in self.params:
            buf = self.buffers[id(p)]
            st = self.optimizer.state.get(p)
            if st is None:
                continue
            if buf is None:
                st.pop("momentum_buffer", None)
            else:
                st["momentum_buffer"].copy_(buf)
