"""Batch samplers; each matches one batching the accountants analyse.

* :class:`PoissonSampler`: every step, each of the N examples joins the batch independently
  with probability q (Poisson subsampling, the setting of Abadi et al. 2016 Sec. 3.1 and
  Mironov, Talwar, Zhang 2019). Batch sizes are Binomial(N, q) and may be 0; an epoch is
  round(N/B) steps (:func:`dpaudit.accounting.steps_per_epoch`, the rule every layer uses).
* :class:`ShuffleSampler`: a fresh random permutation each epoch cut into ceil(N/B) disjoint
  batches of size B (the last may be shorter). Accounted without amplification by the
  ``shuffle`` view of :class:`dpaudit.accounting.DpSgdRun` (Yu et al. 2019).
* :class:`BallsInBinsSampler`: each epoch puts every example into one of t = ceil(N/B)
  batches chosen uniformly and independently (Chua et al., AISTATS 2025, "Balls-and-Bins
  Sampling for DP-SGD"): batch sizes are Multinomial(N; 1/t, ..., 1/t) and may be 0, every
  example is used exactly once per epoch. Accounted by the random-allocation analysis of
  the ``balls_in_bins`` batching (:mod:`dpaudit.accounting.random_allocation`), which
  assumes the batch sizes stay secret: DP-SGD divides the noisy sum by the expected batch
  size N/t, never by the actual one.

All yield int64 numpy index arrays and are driven by a seeded ``numpy.random.Generator``.
For privacy the sampling randomness must stay secret; a seed is for reproducible experiments.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from dpaudit.accounting.events import normalize_batching
from dpaudit.accounting.events import steps_per_epoch as epoch_steps
from dpaudit.errors import InvalidParameterError


def _check_n(n: int) -> int:
    if int(n) != n or n < 1:
        raise InvalidParameterError(f"dataset size must be a positive integer, got {n!r}")
    return int(n)


def _epoch_shape(batching: str, dataset_size: int, batch_size: int,
                 rng: np.random.Generator | int | None) -> tuple[int, int, int, np.random.Generator]:
    """(N, B, steps per epoch, generator) of an epoch-based sampler, validated."""
    n = _check_n(dataset_size)
    if int(batch_size) != batch_size or not 1 <= batch_size <= n:
        raise InvalidParameterError(f"batch size must be an integer in 1..{n}, got {batch_size!r}")
    b = int(batch_size)
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    return n, b, epoch_steps(batching, dataset_size=n, batch_size=b), gen


class PoissonSampler:
    """Poisson subsampling: each example independently with probability ``sample_rate``."""

    batching = "poisson"

    def __init__(
        self,
        dataset_size: int,
        sample_rate: float,
        *,
        steps_per_epoch: int | None = None,
        rng: np.random.Generator | int | None = None,
    ) -> None:
        self.n = _check_n(dataset_size)
        q = float(sample_rate)
        if not 0.0 < q <= 1.0:
            raise InvalidParameterError(f"sample rate must be in (0, 1], got {sample_rate!r}")
        self.q = q
        self.steps_per_epoch = int(steps_per_epoch or epoch_steps("poisson", sample_rate=q))
        self.rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)

    @property
    def expected_batch_size(self) -> float:
        """q N: the constant DP-SGD divides the noisy sum by."""
        return self.q * self.n

    def sample(self) -> np.ndarray:
        """One step's batch: indices of the examples drawn (possibly empty)."""
        return np.flatnonzero(self.rng.random(self.n) < self.q)

    def epoch(self) -> Iterator[np.ndarray]:
        """The batches of one epoch (``steps_per_epoch`` independent draws)."""
        for _ in range(self.steps_per_epoch):
            yield self.sample()

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.epoch()

    def __len__(self) -> int:
        return self.steps_per_epoch


class ShuffleSampler:
    """Random permutation each epoch, cut into disjoint batches of ``batch_size``."""

    batching = "shuffle"

    def __init__(
        self, dataset_size: int, batch_size: int, *, rng: np.random.Generator | int | None = None
    ) -> None:
        self.n, self.batch_size, self.steps_per_epoch, self.rng = _epoch_shape(
            "shuffle", dataset_size, batch_size, rng)

    @property
    def expected_batch_size(self) -> float:
        return float(self.batch_size)

    @property
    def q(self) -> float:
        return self.batch_size / self.n

    def epoch(self) -> Iterator[np.ndarray]:
        perm = self.rng.permutation(self.n)
        for s in range(self.steps_per_epoch):
            yield perm[s * self.batch_size : (s + 1) * self.batch_size]

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.epoch()

    def __len__(self) -> int:
        return self.steps_per_epoch


class BallsInBinsSampler:
    """Balls-in-bins: every epoch each example goes to one of ``steps_per_epoch`` =
    ceil(N/B) batches, uniformly and independently.

    Args:
        dataset_size: N.
        batch_size: B, the nominal batch size fixing the number of batches t = ceil(N/B);
            batches hold N/t <= B examples on average (:attr:`expected_batch_size`).
        rng: a ``numpy.random.Generator`` or a seed.
    """

    batching = "balls_in_bins"

    def __init__(
        self, dataset_size: int, batch_size: int, rng: np.random.Generator | int | None = None
    ) -> None:
        self.n, self.batch_size, self.steps_per_epoch, self.rng = _epoch_shape(
            "balls_in_bins", dataset_size, batch_size, rng)

    @property
    def expected_batch_size(self) -> float:
        """N/t: the constant DP-SGD divides the noisy sum by (the actual size stays secret)."""
        return self.n / self.steps_per_epoch

    @property
    def q(self) -> float:
        """B/N, the nominal sample rate of the run (each example's chance to be in a given
        batch is 1/t = 1/ceil(N/B) <= B/N)."""
        return self.batch_size / self.n

    def assign(self) -> np.ndarray:
        """One epoch's allocation: the batch (0..t-1) of every example."""
        return self.rng.integers(0, self.steps_per_epoch, size=self.n)

    def epoch(self) -> Iterator[np.ndarray]:
        """The t batches of one epoch in order (sizes vary, possibly 0; together they hold
        every example exactly once)."""
        bins = self.assign()
        order = np.argsort(bins, kind="stable")
        ends = np.cumsum(np.bincount(bins, minlength=self.steps_per_epoch))
        start = 0
        for end in ends:
            yield order[start:end]
            start = int(end)

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.epoch()

    def __len__(self) -> int:
        return self.steps_per_epoch


#: Any sampler :func:`make_sampler` returns.
Sampler = PoissonSampler | ShuffleSampler | BallsInBinsSampler


def make_sampler(
    batching: str, dataset_size: int, batch_size: int, rng: np.random.Generator | int | None = None
) -> Sampler:
    """The sampler for ``batching`` (any accepted spelling) with batch size ``batch_size``."""
    n = _check_n(dataset_size)
    if int(batch_size) != batch_size or not 1 <= batch_size <= n:
        raise InvalidParameterError(f"batch size must be an integer in 1..{n}, got {batch_size!r}")
    batching = normalize_batching(batching)
    if batching == "poisson":
        spe = epoch_steps("poisson", dataset_size=n, batch_size=int(batch_size))
        return PoissonSampler(n, batch_size / n, steps_per_epoch=spe, rng=rng)
    if batching == "shuffle":
        return ShuffleSampler(n, int(batch_size), rng=rng)
    return BallsInBinsSampler(n, int(batch_size), rng=rng)
