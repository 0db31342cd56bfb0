"""Planted-bug DP-SGD steps, written self-contained in plain torch (no dpaudit.training).

Each function has the StepAdapter signature ``step(model, x, y, *, loss_fn, generator, step,
claim)`` and returns the released update as one flat tensor. ``correct_step`` is textbook
DP-SGD (Abadi et al. 2016, Alg. 1); every other function plants one real-world bug.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.func import functional_call, grad, vmap

from dpaudit.audit.adapter import Claim, StepAdapter, poisson_batches, shuffle_batches


def per_sample(model, x, y, loss_fn) -> torch.Tensor:
    """(B, P) per-example gradients via torch.func (vmap over grad)."""
    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}

    def one(p, xi, yi):
        return loss_fn(functional_call(model, p, (xi[None],)), yi[None]).sum()

    g = vmap(grad(one), in_dims=(None, 0, 0))(params, x, y)
    return torch.cat([g[k].reshape(x.shape[0], -1) for k in params], dim=1)


def _clip_sum(g: torch.Tensor, c: float) -> torch.Tensor:
    norms = g.norm(dim=1, keepdim=True)
    return (g * torch.clamp(c / (norms + 1e-12), max=1.0)).sum(0)


def _noise(p: int, generator) -> torch.Tensor:
    return torch.randn(p, generator=generator, device=generator.device)


def correct_step(model, x, y, *, loss_fn, generator, step, claim: Claim):
    s = _clip_sum(per_sample(model, x, y, loss_fn), claim.clip)
    return (s + claim.noise_multiplier * claim.clip * _noise(s.numel(), generator)) / claim.expected_batch_size


def no_clip_step(model, x, y, *, loss_fn, generator, step, claim: Claim):
    s = per_sample(model, x, y, loss_fn).sum(0)  # clipping path ignores max_grad_norm
    return (s + claim.noise_multiplier * claim.clip * _noise(s.numel(), generator)) / claim.expected_batch_size


def noise_on_mean_step(model, x, y, *, loss_fn, generator, step, claim: Claim):
    b = claim.expected_batch_size
    s = _clip_sum(per_sample(model, x, y, loss_fn), claim.clip)
    # noise calibrated for the mean (sigma C / B) but added to the sum: sigma_eff = sigma / B
    return (s + claim.noise_multiplier * claim.clip / b * _noise(s.numel(), generator)) / b


def no_noise_step(model, x, y, *, loss_fn, generator, step, claim: Claim):
    return _clip_sum(per_sample(model, x, y, loss_fn), claim.clip) / claim.expected_batch_size


def half_sigma_step(model, x, y, *, loss_fn, generator, step, claim: Claim):
    s = _clip_sum(per_sample(model, x, y, loss_fn), claim.clip)
    return (s + 0.5 * claim.noise_multiplier * claim.clip * _noise(s.numel(), generator)) / claim.expected_batch_size


def reused_noise_step(model, x, y, *, loss_fn, generator, step, claim: Claim):
    s = _clip_sum(per_sample(model, x, y, loss_fn), claim.clip)
    fixed = torch.Generator(device=s.device).manual_seed(1234)  # same noise every step and every run
    return (s + claim.noise_multiplier * claim.clip * _noise(s.numel(), fixed)) / claim.expected_batch_size


def wrong_per_sample_step(model, x, y, *, loss_fn, generator, step, claim: Claim):
    g = per_sample(model, x, y, loss_fn)
    g = g.mean(0, keepdim=True).expand_as(g)  # "per-sample" = batch-mean gradient for everyone
    s = _clip_sum(g, claim.clip)
    return (s + claim.noise_multiplier * claim.clip * _noise(s.numel(), generator)) / claim.expected_batch_size


def actual_batch_divisor_step(model, x, y, *, loss_fn, generator, step, claim: Claim):
    s = _clip_sum(per_sample(model, x, y, loss_fn), claim.clip)
    # divides by the actual Poisson batch size |B_t| (data-dependent, never noised)
    return (s + claim.noise_multiplier * claim.clip * _noise(s.numel(), generator)) / x.shape[0]


def bias_noiseless_step(model, x, y, *, loss_fn, generator, step, claim: Claim):
    """Noise on the weights only: every parameter named ``*bias`` is released noiseless."""
    s = _clip_sum(per_sample(model, x, y, loss_fn), claim.clip)
    mask = torch.cat([torch.full((p.numel(),), 0.0 if n.endswith("bias") else 1.0, device=s.device)
                      for n, p in model.named_parameters() if p.requires_grad])
    return (s + mask * claim.noise_multiplier * claim.clip * _noise(s.numel(), generator)) / claim.expected_batch_size


def sigma_drop_step(model, x, y, *, loss_fn, generator, step, claim: Claim):
    """Correct for the first half of the run, then sigma halves (a schedule bug)."""
    sigma = claim.noise_multiplier if step < claim.steps // 2 else 0.5 * claim.noise_multiplier
    s = _clip_sum(per_sample(model, x, y, loss_fn), claim.clip)
    return (s + sigma * claim.clip * _noise(s.numel(), generator)) / claim.expected_batch_size


def step_seeded_step(model, x, y, *, loss_fn, generator, step, claim: Claim):
    """Noise from a generator seeded with the step index: fresh within a run, the same in
    every run (ignores the audit's generator)."""
    s = _clip_sum(per_sample(model, x, y, loss_fn), claim.clip)
    g = torch.Generator(device=s.device).manual_seed(1000 + int(step))
    return (s + claim.noise_multiplier * claim.clip * _noise(s.numel(), g)) / claim.expected_batch_size


def own_loss_step(model, x, y, *, loss_fn, generator, step, claim: Claim):
    """A correct DP-SGD step that ignores the given loss_fn and uses its own (squared
    output): private, but the audit's gradients never reach it."""
    def own(out, target):
        return 0.5 * (out.reshape(out.shape[0], -1) ** 2).sum(1)

    s = _clip_sum(per_sample(model, x, y, own), claim.clip)
    return (s + claim.noise_multiplier * claim.clip * _noise(s.numel(), generator)) / claim.expected_batch_size


def own_data_step(model, x, y, *, loss_fn, generator, step, claim: Claim):
    """A correct DP-SGD step on the trainer's own data (it ignores the batch it is given)."""
    g = torch.Generator(device=x.device).manual_seed(5)
    own_x = torch.randn(x.shape, generator=g, device=x.device)
    own_y = torch.zeros_like(y)
    s = _clip_sum(per_sample(model, own_x, own_y, loss_fn), claim.clip)
    return (s + claim.noise_multiplier * claim.clip * _noise(s.numel(), generator)) / claim.expected_batch_size


def read_back_step(model, x, y, *, loss_fn, generator, step, claim: Claim):
    """Correct DP-SGD whose update is read back from float32 weights of order 1 after an SGD
    step at lr = 0.002, ``(w - (w - lr u)) / lr``: private, with round-off of ~1e-4 C/B
    (eps_32 |w| / lr) that exact comparisons must tolerate."""
    lr = 0.002
    u = correct_step(model, x, y, loss_fn=loss_fn, generator=generator, step=step, claim=claim)
    g = torch.Generator(device=u.device).manual_seed(11)
    w = (1.0 + torch.rand(u.shape, generator=g, device=u.device)).to(torch.float32)
    return (w - (w - lr * u.to(torch.float32))) / lr


def make_poisson_sampler(q: float):
    return _PoissonSampler(q)


class _PoissonSampler:
    def __init__(self, q: float) -> None:
        self.q = q

    def __call__(self, n: int, steps: int, seed: int) -> list[np.ndarray]:
        return poisson_batches(n, steps, self.q, seed)


class _ShuffleSampler:
    def __init__(self, b: int) -> None:
        self.b = b

    def __call__(self, n: int, steps: int, seed: int) -> list[np.ndarray]:
        return shuffle_batches(n, steps, self.b, seed)


def adapter(kind: str, claim: Claim, device: str = "cpu") -> StepAdapter:
    """The planted trainer ``kind`` ('correct', 'no_clip', ...) as an adapter."""
    steps = {
        "correct": correct_step,
        "no_clip": no_clip_step,
        "noise_on_mean": noise_on_mean_step,
        "no_noise": no_noise_step,
        "half_sigma": half_sigma_step,
        "reused_noise": reused_noise_step,
        "shuffle_as_poisson": correct_step,
        "wrong_per_sample": wrong_per_sample_step,
        "actual_batch_divisor": actual_batch_divisor_step,
        "bias_noiseless": bias_noiseless_step,
        "sigma_drop": sigma_drop_step,
        "step_seeded_noise": step_seeded_step,
        "own_loss": own_loss_step,
        "own_data": own_data_step,
        "read_back": read_back_step,
    }
    sampler = _ShuffleSampler(claim.batch_size) if kind == "shuffle_as_poisson" else _PoissonSampler(claim.sample_rate)
    return StepAdapter(claim, steps[kind], sampler=sampler, name=kind, device=device)


BUGS = ("no_clip", "noise_on_mean", "no_noise", "half_sigma", "reused_noise", "shuffle_as_poisson", "wrong_per_sample",
        "actual_batch_divisor", "bias_noiseless", "sigma_drop", "step_seeded_noise")
#: Private trainers the audit cannot see into: every check must say ``inconclusive`` (or
#: pass), never ``violation``.
BLIND = ("own_loss", "own_data")


def half_sigma_trainer(claim: Claim | None = None) -> StepAdapter:
    """``--trainer tests.audit.planted:half_sigma_trainer`` factory for the CLI tests."""
    claim = claim or Claim(epsilon=4.0, delta=1e-5, sample_rate=0.1, noise_multiplier=1.0, clip=1.0, steps=20,
                           dataset_size=100)
    return adapter("half_sigma", claim)
