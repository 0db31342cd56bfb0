"""Batch samplers; each matches one batching the accountants analyse.

* :class:`PoissonSampler`: every step, each of the N examples joins the batch independently
  with probability q (Poisson subsampling, the setting of Abadi et al. 2016 Sec. 3.1 and
  Mironov, Talwar, Zhang 2019). Batch sizes are Binomial(N, q) and may be 0; an epoch is
  round(N/B) steps (:func:`dpaudit.accounting.steps_per_epoch`, the rule every layer uses).
* :class:`ShuffleSampler`: a fresh random permutation each epoch cut into ceil(N/B) disjoint
  batches of size B (the last may be shorter). Accounted without amplification by the
  ``shuffle`` view of :class:`dpaudit.accounting.DpSgdRun` (Yu et al. 2019).

Both yield int64 numpy index arrays and are driven by a seeded ``numpy.random.Generator``.
For privacy the sampling randomness must stay secret; a seed is for reproducible experiments.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from dpaudit.accounting.events import steps_per_epoch as epoch_steps
from dpaudit.errors import InvalidParameterError


def _check_n(n: int) -> int:
    if int(n) != n or n < 1:
        raise InvalidParameterError(f"dataset size must be a positive integer, got {n!r}")
    return int(n)


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
        self.n = _check_n(dataset_size)
        if int(batch_size) != batch_size or not 1 <= batch_size <= self.n:
            raise InvalidParameterError(
                f"batch size must be an integer in 1..{self.n}, got {batch_size!r}"
            )
        self.batch_size = int(batch_size)
        self.steps_per_epoch = epoch_steps("shuffle", dataset_size=self.n, batch_size=self.batch_size)
        self.rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)

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


def make_sampler(
    batching: str, dataset_size: int, batch_size: int, rng: np.random.Generator | int | None = None
) -> PoissonSampler | ShuffleSampler:
    """The sampler for ``batching`` with expected batch size ``batch_size`` (q = B/N)."""
    n = _check_n(dataset_size)
    if int(batch_size) != batch_size or not 1 <= batch_size <= n:
        raise InvalidParameterError(f"batch size must be an integer in 1..{n}, got {batch_size!r}")
    if batching == "poisson":
        spe = epoch_steps("poisson", dataset_size=n, batch_size=int(batch_size))
        return PoissonSampler(n, batch_size / n, steps_per_epoch=spe, rng=rng)
    if batching == "shuffle":
        return ShuffleSampler(n, int(batch_size), rng=rng)
    raise InvalidParameterError(f"batching must be 'poisson' or 'shuffle', got {batching!r}")
