"""Per-channel input statistics computed with differential privacy ("data normalisation",
Tramer & Boneh 2021, Sec. 3 and App. B; their code calls it BN with a noise multiplier).

The model's ``input_norm = "data"`` layer (:class:`dpaudit.training.models.DataStandardize`)
standardises every input channel with the mean and variance of the training members. Those are
statistics of private data, so they are released through a Gaussian mechanism and charged to
the run's budget:

for each member i with input x_i of K channels and P positions,

    m_i = (1/P) sum_p x_i[:, p],   s_i = (1/P) sum_p x_i[:, p]^2        (vectors in R^K)
    M = ( sum_i clip(m_i, C_m) + N(0, sigma^2 C_m^2 I_K) ) / N
    S = ( sum_i clip(s_i, C_s) + N(0, sigma^2 C_s^2 I_K) ) / N
    mean = M,  var = max(S - M^2, 0)

with clip(v, C) = v min(1, C / ||v||_2). Adding or removing one member changes each clipped
sum by one vector of L2 norm at most C, so each release is the Gaussian mechanism with
sensitivity C and noise multiplier sigma (Dwork & Roth 2014, Thm. A.1; as a privacy-loss
distribution, a mu = 1/sigma Gaussian, Dong, Roth & Su 2022, Thm. 2.7), sample rate 1. Both are
recorded in the ledger as one extra release (q = 1, sigma, count 2) before the first step, and
the gradient noise is solved for what is left of the budget. The divisor N (the number of
members) is treated as public, as the trainer's divisor qN is (docs/training.md).

Differences from Tramer & Boneh's code (``dp_utils.scatter_normalization``): there the clip
thresholds are the *medians* of the members' norms, computed without noise ("technically a
small privacy leak"); here C_m and C_s are fixed parameters that do not look at the data, so
the release is exactly the Gaussian mechanism above. Their default noise multiplier is 8.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dpaudit.errors import InvalidParameterError

#: Tramer & Boneh 2021's noise multiplier for the statistics (``bn_noise_multiplier``).
DEFAULT_NORM_SIGMA = 8.0
#: Ledger note of the release.
NOTE = "data normalisation statistics (per-channel mean and mean square)"


def _clip_rows(v: Tensor, bound: float) -> Tensor:
    if math.isinf(bound):
        return v
    norms = v.norm(dim=1, keepdim=True)
    return v * torch.clamp(bound / norms.clamp_min(1e-12), max=1.0)


def _chunks(x: Any, rows: np.ndarray | None, chunk: int) -> Iterator[Tensor]:
    n = x.shape[0] if rows is None else len(rows)
    for i in range(0, n, chunk):
        part = x[i:i + chunk] if rows is None else x[rows[i:i + chunk]]
        yield part if isinstance(part, Tensor) else torch.from_numpy(np.ascontiguousarray(part))


def clipped_moment_sums(x: Any, clip_mean: float, clip_sq: float, *, rows: np.ndarray | None = None,
                        chunk: int = 4096) -> tuple[Tensor, Tensor, int]:
    """(sum_i clip(m_i, C_m), sum_i clip(s_i, C_s), N) in float64 over the examples ``rows``
    of ``x`` (N, K, ...): a tensor or array (e.g. memory-mapped), read ``chunk`` rows at a
    time (see the module docstring). ``clip = inf`` sums without clipping."""
    if len(x.shape) < 2:
        raise InvalidParameterError("data normalisation needs inputs of shape (N, K, ...)")
    k = x.shape[1]
    sum_m = torch.zeros(k, dtype=torch.float64)
    sum_s = torch.zeros(k, dtype=torch.float64)
    n = 0
    for xb in _chunks(x, rows, chunk):
        xb = xb.reshape(xb.shape[0], k, -1).to(device="cpu", dtype=torch.float64)
        sum_m += _clip_rows(xb.mean(dim=2), clip_mean).sum(0)
        sum_s += _clip_rows((xb * xb).mean(dim=2), clip_sq).sum(0)
        n += xb.shape[0]
    return sum_m, sum_s, n


def private_channel_stats(
    x: Any, *, noise_multiplier: float, clip_mean: float, clip_sq: float,
    generator: torch.Generator, rows: np.ndarray | None = None,
) -> tuple[Tensor, Tensor]:
    """Private per-channel (mean, variance) of the examples ``rows`` of ``x`` (N, K, ...) as
    float32 CPU tensors of shape (K,): two Gaussian releases with noise multiplier
    ``noise_multiplier`` and sensitivities ``clip_mean`` / ``clip_sq`` (module docstring).
    The caller charges them (:func:`ledger_release`)."""
    for name, v in (("noise multiplier", noise_multiplier), ("clip_mean", clip_mean), ("clip_sq", clip_sq)):
        if not float(v) > 0:
            raise InvalidParameterError(f"data normalisation {name} must be > 0, got {v!r}")
    sum_m, sum_s, n = clipped_moment_sums(x, clip_mean, clip_sq, rows=rows)
    if n == 0:
        raise InvalidParameterError("data normalisation needs at least one training member")
    noise = torch.randn(2, sum_m.shape[0], generator=generator, device=generator.device,
                        dtype=torch.float64).cpu()
    mean = (sum_m + noise[0] * noise_multiplier * clip_mean) / n
    sq = (sum_s + noise[1] * noise_multiplier * clip_sq) / n
    return _finish(mean, sq)


def exact_channel_stats(x: Any, rows: np.ndarray | None = None) -> tuple[Tensor, Tensor]:
    """The same statistics without clipping or noise (runs without privacy only)."""
    sum_m, sum_s, n = clipped_moment_sums(x, math.inf, math.inf, rows=rows)
    if n == 0:
        raise InvalidParameterError("data normalisation needs at least one training example")
    return _finish(sum_m / n, sum_s / n)


def _finish(mean: Tensor, sq: Tensor) -> tuple[Tensor, Tensor]:
    var = torch.clamp(sq - mean * mean, min=0.0)
    return mean.to(torch.float32), var.to(torch.float32)


def ledger_release(noise_multiplier: float) -> tuple[float, float, int, str]:
    """The release to record before training: (sample rate 1, sigma, 2 releases, note)."""
    return (1.0, float(noise_multiplier), 2, NOTE)
