"""Immutable descriptions of what a private training run releases.

A DP-SGD run is one small value, :class:`DpSgdRun`; accountants interpret it. The run is
reduced to a sequence of :class:`GaussianSegment` values -- ``count`` consecutive releases of
the (sub)sampled Gaussian mechanism with sample rate ``q`` and noise multiplier ``sigma``
(noise standard deviation divided by the L2 sensitivity). Every accountant composes segments,
so heterogeneous (per-epoch) noise and extra releases (e.g. private validation queries) are
handled uniformly.

Neighbouring relations (named explicitly, as in dp_accounting):

* ``add_remove`` -- D' = D plus or minus one example. The standard relation for Poisson
  subsampling (Abadi et al. 2016; Mironov, Talwar, Zhang 2019). Sensitivity of the clipped
  sum is C.
* ``replace_zero`` -- one example is replaced by one whose gradient is zero ("replace with
  the zero element"). For shuffled fixed-size batches the batch size is public and the
  sensitivity of the clipped sum is C.
* ``replace_one`` -- one example is replaced by an arbitrary one; sensitivity 2C.

Batchings (:data:`BATCHINGS`): ``poisson`` (each example joins each step independently with
probability q), ``shuffle`` (a random permutation cut into fixed-size batches each epoch) and
``balls_in_bins`` (each epoch puts every example into one of t = ceil(N/B) batches chosen
uniformly and independently: batch sizes vary, every example is used exactly once per epoch;
Chua et al., AISTATS 2025, "Balls-and-Bins Sampling for DP-SGD"; the random allocation of
Feldman & Shenfeld 2025). Its default relation is ``add_remove``: batch sizes are random and
never released (the trainer divides by the expected batch size, a public constant), the other
examples' allocation does not depend on the differing one, and it is the relation of the
random-allocation analyses and of Poisson sampling, so the two figures compare directly. The
number of batches t is treated as public (computed from the planned dataset size), as q = B/N
is for Poisson. ``replace_zero`` gives the same amplified analysis (the zero record adds
nothing to any batch); ``replace_one`` is accounted without amplification
(:mod:`dpaudit.accounting.random_allocation`).

This module imports nothing heavier than the standard library, so the CLI starts fast.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from dpaudit.errors import InvalidParameterError

Batching = Literal["poisson", "shuffle", "balls_in_bins"]
Relation = Literal["add_remove", "replace_zero", "replace_one"]

BATCHINGS: tuple[str, ...] = ("poisson", "shuffle", "balls_in_bins")
#: Other accepted spellings of a batching (what users type; the stored value is the key's value).
BATCHING_ALIASES: dict[str, str] = {"balls-in-bins": "balls_in_bins"}
#: Every spelling a command line accepts (:func:`normalize_batching` maps it to :data:`BATCHINGS`).
BATCHING_CHOICES: tuple[str, ...] = ("poisson", "shuffle", "balls-in-bins", "balls_in_bins")
RELATIONS: tuple[str, ...] = ("add_remove", "replace_zero", "replace_one")
DEFAULT_RELATION: dict[str, str] = {
    "poisson": "add_remove", "shuffle": "replace_zero", "balls_in_bins": "add_remove",
}
#: Relations under which a balls-in-bins epoch is the random-allocation pair (mixture of
#: shifted Gaussians vs one Gaussian); ``replace_one`` is accounted without amplification.
ALLOCATION_RELATIONS: tuple[str, ...] = ("add_remove", "replace_zero")
#: How a number of epochs becomes a number of steps (:meth:`DpSgdRun.create`):
#: ``whole_epochs`` = round(epochs x steps_per_epoch), ``expected`` = floor(epochs x N/B).
STEPS_RULES: tuple[str, ...] = ("whole_epochs", "expected")

#: Run shape filled in where a user gives none (an MNIST-sized run; ``dpaudit account``,
#: ``compare`` and ``plan``): N, B, epochs and delta.
DEFAULT_DATASET_SIZE = 60000
DEFAULT_BATCH_SIZE = 256
DEFAULT_EPOCHS = 30
DEFAULT_DELTA = 1e-5


def _finite(name: str, value: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidParameterError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise InvalidParameterError(f"{name} must be finite, got {value!r}")
    return v


def normalize_batching(batching: str) -> str:
    """The stored name of a batching (``balls-in-bins`` -> ``balls_in_bins``); one readable
    error for an unknown one."""
    name = BATCHING_ALIASES.get(str(batching), str(batching))
    if name not in BATCHINGS:
        raise InvalidParameterError(f"batching must be one of {', '.join(BATCHINGS)}, got {batching!r}")
    return name


def check_delta(delta: float) -> float:
    """Validate a target delta: 0 < delta < 1."""
    d = _finite("delta", delta)
    if not 0.0 < d < 1.0:
        raise InvalidParameterError(f"delta must be in (0, 1), got {delta!r}")
    return d


def check_epsilon(epsilon: float) -> float:
    """Validate a target epsilon: 0 <= epsilon < inf."""
    e = _finite("epsilon", epsilon)
    if e < 0:
        raise InvalidParameterError(f"epsilon must be >= 0, got {epsilon!r}")
    return e


def steps_per_epoch(
    batching: str,
    *,
    dataset_size: int | None = None,
    batch_size: int | None = None,
    sample_rate: float | None = None,
) -> int:
    """Steps in one epoch -- the one rule every layer uses (accountants, samplers, ledger, audit).

    Fixed-size batches that partition the data (``shuffle``) need ceil(N/B) steps (ceil(1/q)
    from a sample rate) to see every example once; balls-in-bins throws every example into
    one of the same ceil(N/B) batches (expected size N/ceil(N/B) <= B). Poisson sampling has
    no epochs of its own;
    an "epoch" is the expected number of steps to draw N examples, rounded: round(N/B)
    (round(1/q)), at least 1. Give (``dataset_size``, ``batch_size``) or ``sample_rate``.
    """
    batching = normalize_batching(batching)
    if dataset_size is not None and batch_size is not None:
        n, b = int(dataset_size), int(batch_size)
        if n < 1 or b < 1:
            raise InvalidParameterError(f"dataset size and batch size must be >= 1, got {n}, {b}")
        return math.ceil(n / b) if batching != "poisson" else max(1, round(n / b))
    if sample_rate is None:
        raise InvalidParameterError("steps per epoch need a dataset size and batch size, or a sample rate")
    q = _finite("sample rate", sample_rate)
    if not 0.0 < q <= 1.0:
        raise InvalidParameterError(f"sample rate must be in (0, 1], got {sample_rate!r}")
    return math.ceil(1.0 / q - 1e-9) if batching != "poisson" else max(1, round(1.0 / q))


def fill_shape_defaults(
    dataset_size: int | None, batch_size: int | None, sample_rate: float | None
) -> tuple[int | None, int | None, float | None]:
    """(N, B, q) with the documented defaults (:data:`DEFAULT_DATASET_SIZE`,
    :data:`DEFAULT_BATCH_SIZE`) filled in when no sample rate is given. A sample rate
    replaces the batch size (a dataset size may come with it, for display)."""
    if sample_rate is not None:
        if batch_size is not None:
            raise InvalidParameterError("give a batch size or a sample rate, not both")
        return dataset_size, None, sample_rate
    n = DEFAULT_DATASET_SIZE if dataset_size is None else dataset_size
    b = DEFAULT_BATCH_SIZE if batch_size is None else batch_size
    return n, b, None


def _positive_int(name: str, value: Any) -> int:
    try:
        v = int(value)
    except (TypeError, ValueError):
        raise InvalidParameterError(f"{name} must be an integer, got {value!r}") from None
    if v != value:
        raise InvalidParameterError(f"{name} must be an integer, got {value!r}")
    if v < 1:
        raise InvalidParameterError(f"{name} must be >= 1, got {value!r}")
    return v


def _run_shape(
    batching: str, dataset_size: int | None, batch_size: int | None, sample_rate: float | None
) -> tuple[float, int | None, int | None, int]:
    """(q, N, B, steps per epoch) from sizes or a sample rate (validated)."""
    if sample_rate is None:
        if dataset_size is None or batch_size is None:
            raise InvalidParameterError("give a dataset size and a batch size, or a sample rate")
        n = _positive_int("dataset size", dataset_size)
        b = _positive_int("batch size", batch_size)
        if b > n:
            raise InvalidParameterError(f"batch size ({b}) exceeds dataset size ({n})")
        return b / n, n, b, steps_per_epoch(batching, dataset_size=n, batch_size=b)
    q = _finite("sample rate", sample_rate)
    if not 0.0 < q <= 1.0:
        raise InvalidParameterError(f"sample rate must be in (0, 1], got {sample_rate!r}")
    n_opt = _positive_int("dataset size", dataset_size) if dataset_size is not None else None
    b_opt = _positive_int("batch size", batch_size) if batch_size is not None else None
    return q, n_opt, b_opt, steps_per_epoch(batching, sample_rate=q)


def _total_steps(
    epochs: float | None, steps: int | None, spe: int, steps_per_unit_epoch: float, rule: str
) -> int:
    """Total steps from ``steps`` or ``epochs`` under ``rule`` (:data:`STEPS_RULES`);
    ``steps_per_unit_epoch`` is N/B (or 1/q), the expected steps of one pass."""
    if (epochs is None) == (steps is None):
        raise InvalidParameterError("give exactly one of epochs or steps")
    if rule not in STEPS_RULES:
        raise InvalidParameterError(f"steps rule must be one of {', '.join(STEPS_RULES)}, got {rule!r}")
    if steps is not None:
        if int(steps) != steps or steps < 1:
            raise InvalidParameterError(f"steps must be a positive integer, got {steps!r}")
        return int(steps)
    assert epochs is not None  # exactly one of the two was given
    e = _finite("epochs", epochs)
    if e <= 0:
        raise InvalidParameterError(f"epochs must be > 0, got {epochs!r}")
    if rule == "expected":
        return max(1, math.floor(e * steps_per_unit_epoch + 1e-9))
    return max(1, round(e * spe))


def _per_epoch_noise(noise_multiplier: float | Sequence[float], n_epochs: int) -> tuple[float, ...]:
    """One validated sigma per epoch from a constant or a per-epoch sequence."""
    if isinstance(noise_multiplier, (int, float)):
        sig: tuple[float, ...] = (float(noise_multiplier),) * n_epochs
    else:
        sig = tuple(float(s) for s in noise_multiplier)
        if len(sig) == 1:
            sig = sig * n_epochs
    for s in sig:
        if not (s > 0) or math.isnan(s):
            raise InvalidParameterError(f"noise multiplier must be > 0, got {s!r}")
    return sig


@dataclass(frozen=True)
class GaussianSegment:
    """``count`` consecutive releases of the subsampled Gaussian mechanism.

    Attributes:
        sample_rate: probability q in (0, 1] that a given example is in the batch
            (Poisson); ``1.0`` means the example always participates (no amplification).
        noise_multiplier: sigma = noise std / L2 sensitivity (> 0; ``inf`` = no release).
        count: number of releases (>= 1).
    """

    sample_rate: float
    noise_multiplier: float
    count: int

    def __post_init__(self) -> None:
        q = _finite("sample rate", self.sample_rate)
        if not 0.0 < q <= 1.0:
            raise InvalidParameterError(f"sample rate must be in (0, 1], got {self.sample_rate!r}")
        s = float(self.noise_multiplier)
        if math.isnan(s) or s <= 0:
            raise InvalidParameterError(
                f"noise multiplier must be > 0, got {self.noise_multiplier!r}"
            )
        if int(self.count) != self.count or self.count < 1:
            raise InvalidParameterError(f"segment count must be a positive integer, got {self.count!r}")


@dataclass(frozen=True)
class AllocationSegment:
    """``count`` epochs of balls-in-bins batching (random allocation of one participation
    among ``batches`` steps) of which the first ``steps`` are released.

    Each example sits in exactly one of the t = ``batches`` steps of the epoch, uniformly at
    random and independently of the others; an epoch that stops early (a partial last
    epoch) releases only ``steps`` <= t of them, so the example is processed with
    probability ``steps / batches``. Sensitivity of the clipped sum: C (add_remove /
    replace_zero; see :mod:`dpaudit.accounting.random_allocation`).

    Attributes:
        batches: t >= 1, the number of batches an epoch allocates among.
        steps: 1 <= steps <= t, the steps released in each of these epochs.
        noise_multiplier: sigma = noise std / C (> 0).
        count: number of such epochs (>= 1).
    """

    batches: int
    steps: int
    noise_multiplier: float
    count: int

    def __post_init__(self) -> None:
        t = _positive_int("number of batches", self.batches)
        s = _positive_int("steps of an epoch", self.steps)
        if s > t:
            raise InvalidParameterError(f"an epoch releases at most its {t} batches, got {s} steps")
        sig = float(self.noise_multiplier)
        if math.isnan(sig) or sig <= 0:
            raise InvalidParameterError(f"noise multiplier must be > 0, got {self.noise_multiplier!r}")
        _positive_int("segment count", self.count)

    def without_amplification(self) -> GaussianSegment:
        """The sound view that claims no amplification: each example is used at most once
        per epoch, so an epoch is dominated by one Gaussian release (parallel composition)."""
        return GaussianSegment(1.0, self.noise_multiplier, self.count)


def merge_segments(segments: Iterable[GaussianSegment]) -> tuple[GaussianSegment, ...]:
    """Merge adjacent segments with equal (q, sigma). Composition is order-free for all
    accountants here, so merging is exact; it keeps per-order work proportional to the number
    of *distinct* noise levels."""
    out: list[GaussianSegment] = []
    for seg in segments:
        if out and out[-1].sample_rate == seg.sample_rate and out[-1].noise_multiplier == seg.noise_multiplier:
            last = out.pop()
            out.append(GaussianSegment(seg.sample_rate, seg.noise_multiplier, last.count + seg.count))
        else:
            out.append(seg)
    return tuple(out)


@dataclass(frozen=True)
class DpSgdRun:
    """One DP-SGD training run, as accountants see it.

    Build with :meth:`create`. Units: ``sample_rate`` is the per-step inclusion probability
    q = B/N; ``noise_multipliers`` are per *epoch* (sigma_e, noise std / clip norm C);
    ``steps_per_epoch`` is ceil(N/B) (or ceil(1/q)) for shuffled batches and round(N/B)
    (or round(1/q)) for Poisson.
    ``total_steps`` may end inside an epoch (then the last epoch is partial).

    Attributes:
        sample_rate: q in (0, 1].
        noise_multipliers: one sigma per epoch (tuple, length = number of epochs begun).
        steps_per_epoch: steps in a full epoch.
        total_steps: total number of noisy gradient releases.
        batching: ``"poisson"`` (independent inclusion with prob. q each step),
            ``"shuffle"`` (random permutation, disjoint fixed-size batches each epoch) or
            ``"balls_in_bins"`` (each example in one uniformly random batch of each epoch;
            ``"balls-in-bins"`` is accepted and stored as ``"balls_in_bins"``).
        relation: neighbouring relation; defaults to ``add_remove`` for Poisson and
            balls-in-bins and ``replace_zero`` for shuffle.
        dataset_size, batch_size: kept when known (for display and export).
        extra_segments: further releases composed with the run (e.g. private validation
            queries of update screening), accounted as Poisson-subsampled Gaussians.
    """

    sample_rate: float
    noise_multipliers: tuple[float, ...]
    steps_per_epoch: int
    total_steps: int
    batching: str = "poisson"
    relation: str = ""
    dataset_size: int | None = None
    batch_size: int | None = None
    extra_segments: tuple[GaussianSegment, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        object.__setattr__(self, "batching", normalize_batching(self.batching))
        if not self.relation:
            object.__setattr__(self, "relation", DEFAULT_RELATION[self.batching])
        if self.relation not in RELATIONS:
            raise InvalidParameterError(f"relation must be one of {RELATIONS}, got {self.relation!r}")
        if self.batching == "poisson" and self.relation != "add_remove":
            raise InvalidParameterError(
                "Poisson subsampling is analysed under the add_remove relation; "
                f"got relation={self.relation!r}"
            )
        q = _finite("sample rate", self.sample_rate)
        if not 0.0 < q <= 1.0:
            raise InvalidParameterError(f"sample rate must be in (0, 1], got {self.sample_rate!r}")
        if self.steps_per_epoch < 1:
            raise InvalidParameterError("steps per epoch must be >= 1")
        if self.total_steps < 1:
            raise InvalidParameterError("the run must have at least one step (epochs/steps > 0)")
        sig = tuple(float(s) for s in self.noise_multipliers)
        for s in sig:
            if math.isnan(s) or s <= 0:
                raise InvalidParameterError(f"noise multiplier must be > 0, got {s!r}")
        object.__setattr__(self, "noise_multipliers", sig)
        need = math.ceil(self.total_steps / self.steps_per_epoch)
        if len(sig) != need:
            raise InvalidParameterError(
                f"need one noise multiplier per epoch ({need}), got {len(sig)}"
            )

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(
        cls,
        *,
        noise_multiplier: float | Sequence[float],
        dataset_size: int | None = None,
        batch_size: int | None = None,
        sample_rate: float | None = None,
        epochs: float | None = None,
        steps: int | None = None,
        batching: str = "poisson",
        relation: str | None = None,
        steps_rule: str = "whole_epochs",
    ) -> DpSgdRun:
        """Build a run from user-facing quantities.

        Give either (``dataset_size``, ``batch_size``) or ``sample_rate``; either ``epochs``
        or ``steps``. ``noise_multiplier`` is a constant or one value per epoch.
        ``steps_rule`` says how ``epochs`` become steps (see :data:`STEPS_RULES`):
        ``"whole_epochs"`` (default) runs round(epochs x steps_per_epoch) steps, what the
        dpaudit trainer runs; ``"expected"`` runs floor(epochs x N/B) = floor(epochs/q)
        steps, the convention of Opacus' ``get_noise_multiplier`` (14062 steps for 60
        epochs of q = 256/60000, where whole epochs give 60 x 234 = 14040).
        """
        batching = normalize_batching(batching)
        q, n, b, spe = _run_shape(batching, dataset_size, batch_size, sample_rate)
        total = _total_steps(epochs, steps, spe, (n / b) if n and b and sample_rate is None else 1.0 / q,
                             steps_rule)
        return cls(
            sample_rate=q,
            noise_multipliers=_per_epoch_noise(noise_multiplier, math.ceil(total / spe)),
            steps_per_epoch=spe,
            total_steps=total,
            batching=batching,
            relation=relation or DEFAULT_RELATION[batching],
            dataset_size=n,
            batch_size=b,
        )

    # ------------------------------------------------------------------ derived
    @property
    def epochs(self) -> int:
        """Number of epochs begun (the last may be partial)."""
        return len(self.noise_multipliers)

    def steps_in_epoch(self, e: int) -> int:
        """Steps taken in epoch ``e`` (0-based)."""
        start = e * self.steps_per_epoch
        return max(0, min(self.steps_per_epoch, self.total_steps - start))

    @property
    def sensitivity_factor(self) -> float:
        """Multiple of C by which one neighbour changes the clipped sum (2 for replace_one)."""
        return 2.0 if self.relation == "replace_one" else 1.0

    def truncate(self, epochs: int) -> DpSgdRun:
        """The run's first ``epochs`` epochs (for per-epoch cumulative epsilon curves)."""
        if not 1 <= epochs <= self.epochs:
            raise InvalidParameterError(f"epochs must be in 1..{self.epochs}")
        return dataclasses.replace(
            self,
            noise_multipliers=self.noise_multipliers[:epochs],
            total_steps=min(self.total_steps, epochs * self.steps_per_epoch),
            extra_segments=self.extra_segments if epochs == self.epochs else (),
        )

    def with_batching(self, batching: str) -> DpSgdRun:
        """The same run re-described under another batching (its default relation)."""
        batching = normalize_batching(batching)
        spe = self.steps_per_epoch
        if self.dataset_size and self.batch_size:
            spe = steps_per_epoch(batching, dataset_size=self.dataset_size, batch_size=self.batch_size)
        # Same number of (possibly fractional) epochs under the new steps-per-epoch.
        total = max(1, round(self.total_steps * spe / self.steps_per_epoch))
        n_ep = math.ceil(total / spe)
        sig = (self.noise_multipliers + (self.noise_multipliers[-1],) * n_ep)[:n_ep]
        return dataclasses.replace(
            self, noise_multipliers=sig, steps_per_epoch=spe, total_steps=total,
            batching=batching, relation=DEFAULT_RELATION[batching],
        )

    def with_noise(self, noise_multipliers: Sequence[float]) -> DpSgdRun:
        """The same run with other per-epoch noise multipliers (used by the allocator)."""
        return dataclasses.replace(self, noise_multipliers=tuple(noise_multipliers))

    def epoch_segments(self) -> tuple[tuple[GaussianSegment, ...], ...]:
        """The run's sound segments epoch by epoch: what :meth:`segments` composes, split
        at epoch boundaries (``segments()`` of ``truncate(e + 1)`` minus those of
        ``truncate(e)``). Poisson: the epoch's steps at rate q; shuffle and balls-in-bins:
        one Gaussian (sigma_e / sensitivity_factor, q = 1), the view that claims no
        amplification. ``extra_segments`` join the last epoch."""
        return self.checkpoint_segments()

    def checkpoint_segments(self, epochs: Sequence[int] | None = None) -> tuple[tuple[GaussianSegment, ...], ...]:
        """The segments added between consecutive checkpoints: entry i holds the releases of
        epochs ``epochs[i-1] + 1 .. epochs[i]`` (1-based, strictly increasing, the last one
        the run's last epoch; default: every epoch, i.e. :meth:`epoch_segments`), merged per
        noise level. The one place cumulative (per-epoch) curves take their epochs from."""
        pts = self._checkpoints(epochs)
        poisson = self.batching == "poisson"
        f = self.sensitivity_factor
        out: list[tuple[GaussianSegment, ...]] = []
        start = 0
        for end in pts:
            counts: dict[float, int] = {}
            for e in range(start, end):
                s = self.noise_multipliers[e]
                counts[s] = counts.get(s, 0) + (self.steps_in_epoch(e) if poisson else 1)
            if poisson:
                out.append(tuple(GaussianSegment(self.sample_rate, s, c) for s, c in counts.items()))
            else:
                out.append(tuple(GaussianSegment(1.0, s / f, c) for s, c in counts.items()))
            start = end
        out[-1] = out[-1] + self.extra_segments
        return tuple(out)

    @property
    def allocation_applies(self) -> bool:
        """True for a balls-in-bins run under a relation whose epochs are the random-allocation
        pair (:data:`ALLOCATION_RELATIONS`); the tight ``pld`` accountant then composes
        :meth:`allocation_checkpoint_segments` instead of the no-amplification view."""
        return self.batching == "balls_in_bins" and self.relation in ALLOCATION_RELATIONS

    def allocation_checkpoint_segments(
        self, epochs: Sequence[int] | None = None
    ) -> tuple[tuple[AllocationSegment | GaussianSegment, ...], ...]:
        """Like :meth:`checkpoint_segments`, but each epoch of a balls-in-bins run is one
        :class:`AllocationSegment` (t = ``steps_per_epoch`` batches, the epoch's released
        steps, its sigma); ``extra_segments`` join the last checkpoint as they are."""
        if not self.allocation_applies:
            raise InvalidParameterError(
                "the random-allocation view applies to balls_in_bins batching under the "
                f"add_remove or replace_zero relation (this run: {self.batching}, {self.relation})"
            )
        pts = self._checkpoints(epochs)
        out: list[tuple[AllocationSegment | GaussianSegment, ...]] = []
        start = 0
        for end in pts:
            counts: dict[tuple[int, float], int] = {}
            for e in range(start, end):
                key = (self.steps_in_epoch(e), self.noise_multipliers[e])
                counts[key] = counts.get(key, 0) + 1
            out.append(tuple(AllocationSegment(self.steps_per_epoch, k, sig, c)
                             for (k, sig), c in counts.items()))
            start = end
        out[-1] = out[-1] + self.extra_segments
        return tuple(out)

    def _checkpoints(self, epochs: Sequence[int] | None) -> list[int]:
        pts = list(range(1, self.epochs + 1)) if epochs is None else [int(e) for e in epochs]
        if not pts or pts[-1] != self.epochs or pts[0] < 1 or any(b <= a for a, b in zip(pts, pts[1:])):
            raise InvalidParameterError(
                f"checkpoints must be increasing epochs in 1..{self.epochs} ending at {self.epochs}"
            )
        return pts

    def poisson_segments(self) -> tuple[GaussianSegment, ...]:
        """The run as Poisson-subsampled Gaussian releases: one segment per epoch with the
        run's q, plus ``extra_segments``. This is the *Poisson* analysis; for a shuffled run
        it is the figure people wrongly quote (see :meth:`shuffle_segments`)."""
        # Group equal consecutive sigmas before building values: a run with q ~ 1 can have
        # 10^6 one-step epochs, and one GaussianSegment per epoch would dominate the cost.
        segs: list[GaussianSegment] = []
        sig = self.noise_multipliers
        e = 0
        while e < len(sig):
            j = e
            while j + 1 < len(sig) and sig[j + 1] == sig[e]:
                j += 1
            steps = min(self.total_steps, (j + 1) * self.steps_per_epoch) - e * self.steps_per_epoch
            segs.append(GaussianSegment(self.sample_rate, sig[e], steps))
            e = j + 1
        return merge_segments([*segs, *self.extra_segments])

    def shuffle_segments(self) -> tuple[GaussianSegment, ...]:
        """Sound no-amplification view of shuffled (and balls-in-bins) batching.

        With disjoint batches each example is used at most once per epoch, so an epoch is
        (by parallel composition) one Gaussian mechanism on the example's contribution with
        noise multiplier sigma_e / sensitivity_factor and sample rate 1 (Yu et al. 2019,
        S&P, Sec. IV; the shuffling amplification is *not* claimed, which is what makes this
        an upper bound for every shuffling order).
        """
        f = self.sensitivity_factor
        counts: dict[float, int] = {}
        for s in self.noise_multipliers:  # order-free composition: count epochs per sigma
            counts[s] = counts.get(s, 0) + 1
        segs = [GaussianSegment(1.0, s / f, c) for s, c in counts.items()]
        return merge_segments([*segs, *self.extra_segments])

    def segments(self) -> tuple[GaussianSegment, ...]:
        """Segments for a sound analysis of this run under its own batching: Poisson
        segments, or for shuffle and balls-in-bins the no-amplification view (every
        accountant can bound it; ``pld`` composes the tighter random-allocation PLD of a
        balls-in-bins run itself, :meth:`allocation_checkpoint_segments`)."""
        return self.poisson_segments() if self.batching == "poisson" else self.shuffle_segments()

    # ------------------------------------------------------------------ export
    def to_dp_event(self, *, allow_no_amplification: bool = False) -> Any:
        """The run as a ``dp_accounting.DpEvent`` (imports dp_accounting lazily).

        Poisson: ``SelfComposedDpEvent(PoissonSampledDpEvent(q, GaussianDpEvent(sigma)), n)``
        per segment. Shuffle: the sound no-amplification view, ``GaussianDpEvent`` per epoch.
        Balls-in-bins: dp_accounting (0.6.0) has no random-allocation event (its
        ``MixtureOfGaussiansDpEvent`` is a one-dimensional mixture, not the t-dimensional
        pair of an epoch), so this raises :class:`~dpaudit.errors.OutOfValidityError`
        unless ``allow_no_amplification=True``, which exports the sound but far looser
        no-amplification view (one ``GaussianDpEvent`` per epoch).
        """
        if self.batching == "balls_in_bins" and not allow_no_amplification:
            from dpaudit.errors import OutOfValidityError

            raise OutOfValidityError(
                "dp_accounting has no random-allocation (balls-in-bins) event; export the "
                "no-amplification view with allow_no_amplification=True (one Gaussian per "
                "epoch, far looser than the pld accountant's figure)"
            )
        import dp_accounting

        events = []
        for seg in self.segments():
            g = dp_accounting.GaussianDpEvent(seg.noise_multiplier)
            inner = g if seg.sample_rate >= 1.0 else dp_accounting.PoissonSampledDpEvent(seg.sample_rate, g)
            events.append(dp_accounting.SelfComposedDpEvent(inner, seg.count))
        return events[0] if len(events) == 1 else dp_accounting.ComposedDpEvent(events)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (round-trips through :meth:`from_dict`)."""
        return {
            "sample_rate": self.sample_rate,
            "noise_multipliers": list(self.noise_multipliers),
            "steps_per_epoch": self.steps_per_epoch,
            "total_steps": self.total_steps,
            "batching": self.batching,
            "relation": self.relation,
            "dataset_size": self.dataset_size,
            "batch_size": self.batch_size,
            "extra_segments": [
                [s.sample_rate, s.noise_multiplier, s.count] for s in self.extra_segments
            ],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DpSgdRun:
        try:
            return cls(
                sample_rate=float(d["sample_rate"]),
                noise_multipliers=tuple(float(s) for s in d["noise_multipliers"]),
                steps_per_epoch=int(d["steps_per_epoch"]),
                total_steps=int(d["total_steps"]),
                batching=normalize_batching(str(d.get("batching", "poisson"))),
                relation=str(d.get("relation", "") or ""),
                dataset_size=d.get("dataset_size"),
                batch_size=d.get("batch_size"),
                extra_segments=tuple(
                    GaussianSegment(float(a), float(b), int(c)) for a, b, c in d.get("extra_segments", [])
                ),
            )
        except (KeyError, TypeError) as exc:
            raise InvalidParameterError(f"not a valid run description: missing/invalid {exc}") from None
