"""The Gaussian mechanism step of DP-SGD.

Abadi et al. 2016 ("Deep Learning with Differential Privacy", CCS, Alg. 1): the released
quantity is the clipped gradient *sum* plus N(0, sigma^2 C^2 I), drawn once per step. Under
add/remove neighbours the clipped sum has L2 sensitivity C, so this is a Gaussian mechanism
with noise multiplier sigma; Poisson subsampling with rate q amplifies it (Mironov, Talwar,
Zhang 2019, "Renyi Differential Privacy of the Sampled Gaussian Mechanism"). Accountants
analyse exactly this release.

We then divide by the *expected* batch size q N (a public constant), which is post-processing
and costs nothing. Dividing by the *actual* Poisson batch size |B_t| is not what the analysis
covers: |B_t| is itself a function of the private data (it changes by one between add/remove
neighbours) and is never noised, so "noisy sum / |B_t|" is not a post-processing of the noisy
sum -- it reveals |B_t| exactly and its sensitivity is not C / |B_t|. For shuffled fixed-size
batches the batch size is public and equals the expected one (the last, shorter batch of an
epoch is also divided by B; its size is public too, any constant would do).

With augmentation multiplicity (``group_size`` K, De et al. 2022, Sec. 3.2) each example's
gradient is the mean over its K augmented copies before clipping, so the clipped sum still has
sensitivity C and the expected batch size still counts examples, not copies.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from dpaudit.errors import InvalidParameterError
from dpaudit.training.clipping import ClipResult, Expand, LossFn, clip_and_sum


def add_noise(
    grad_sums: list[Tensor],
    *,
    clip: float,
    noise_multiplier: float,
    expected_batch_size: float,
    generator: torch.Generator | None = None,
) -> list[Tensor]:
    """(sum + N(0, (sigma C)^2)) / expected_batch_size for each tensor of ``grad_sums``.

    ``noise_multiplier`` = 0 adds no noise (non-private, for tests and baselines).
    """
    sigma = float(noise_multiplier)
    if math.isnan(sigma) or sigma < 0 or math.isinf(sigma):
        raise InvalidParameterError(f"noise multiplier must be finite and >= 0, got {noise_multiplier!r}")
    eb = float(expected_batch_size)
    if not eb > 0 or math.isinf(eb):
        raise InvalidParameterError(f"expected batch size must be > 0, got {expected_batch_size!r}")
    std = sigma * float(clip)
    out = []
    for g in grad_sums:
        if std > 0:
            noisy = torch.empty_like(g).normal_(0.0, std, generator=generator)
            noisy.add_(g).div_(eb)  # in place on the fresh noise buffer: one pass, no copies
        else:
            noisy = g / eb
        out.append(noisy)
    return out


def privatize(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    clip: float,
    noise_multiplier: float,
    expected_batch_size: float,
    generator: torch.Generator | None = None,
    loss_fn: LossFn | None = None,
    group_size: int = 1,
    expand: Expand | None = None,
    max_rows: int | None = None,
) -> tuple[list[Tensor], ClipResult]:
    """:func:`noisy_gradient` that also returns the clipping pass (norms, losses, logits)."""
    r = clip_and_sum(model, x, y, clip, loss_fn, group_size=group_size, expand=expand,
                     max_rows=max_rows)
    g = add_noise(
        r.grads,
        clip=clip,
        noise_multiplier=noise_multiplier,
        expected_batch_size=expected_batch_size,
        generator=generator,
    )
    return g, r


def noisy_gradient(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    clip: float,
    noise_multiplier: float,
    expected_batch_size: float,
    generator: torch.Generator | None = None,
    loss_fn: LossFn | None = None,
    group_size: int = 1,
    expand: Expand | None = None,
    max_rows: int | None = None,
) -> list[Tensor]:
    """(sum of clipped per-example grads + N(0, sigma^2 C^2)) / expected_batch_size.

    One tensor per trainable parameter (``clipping.trainable_parameters`` order), not yet
    applied to the model. ``generator`` must live on the model's device. ``group_size``,
    ``expand``, ``max_rows``: augmentation multiplicity and micro-batches, see
    :func:`~dpaudit.training.clipping.clip_and_sum`.
    """
    return privatize(
        model,
        x,
        y,
        clip=clip,
        noise_multiplier=noise_multiplier,
        expected_batch_size=expected_batch_size,
        generator=generator,
        loss_fn=loss_fn,
        group_size=group_size,
        expand=expand,
        max_rows=max_rows,
    )[0]
