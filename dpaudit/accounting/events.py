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

This module imports nothing heavier than the standard library, so the CLI starts fast.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from dpaudit.errors import InvalidParameterError

Batching = Literal["poisson", "shuffle"]
Relation = Literal["add_remove", "replace_zero", "replace_one"]

BATCHINGS: tuple[str, ...] = ("poisson", "shuffle")
RELATIONS: tuple[str, ...] = ("add_remove", "replace_zero", "replace_one")
DEFAULT_RELATION: dict[str, str] = {"poisson": "add_remove", "shuffle": "replace_zero"}
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
    from a sample rate) to see every example once. Poisson sampling has no epochs of its own;
    an "epoch" is the expected number of steps to draw N examples, rounded: round(N/B)
    (round(1/q)), at least 1. Give (``dataset_size``, ``batch_size``) or ``sample_rate``.
    """
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
        batching: ``"poisson"`` (independent inclusion with prob. q each step) or
            ``"shuffle"`` (random permutation, disjoint fixed-size batches each epoch).
        relation: neighbouring relation; defaults to ``add_remove`` for Poisson and
            ``replace_zero`` for shuffle.
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
        if self.batching not in BATCHINGS:
            raise InvalidParameterError(f"batching must be one of {BATCHINGS}, got {self.batching!r}")
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
        if batching not in BATCHINGS:
            raise InvalidParameterError(f"batching must be one of {BATCHINGS}, got {batching!r}")
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
        ``truncate(e)``). Poisson: the epoch's steps at rate q; shuffle: one Gaussian
        (sigma_e / sensitivity_factor, q = 1). ``extra_segments`` join the last epoch."""
        return self.checkpoint_segments()

    def checkpoint_segments(self, epochs: Sequence[int] | None = None) -> tuple[tuple[GaussianSegment, ...], ...]:
        """The segments added between consecutive checkpoints: entry i holds the releases of
        epochs ``epochs[i-1] + 1 .. epochs[i]`` (1-based, strictly increasing, the last one
        the run's last epoch; default: every epoch, i.e. :meth:`epoch_segments`), merged per
        noise level. The one place cumulative (per-epoch) curves take their epochs from."""
        pts = list(range(1, self.epochs + 1)) if epochs is None else [int(e) for e in epochs]
        if not pts or pts[-1] != self.epochs or pts[0] < 1 or any(b <= a for a, b in zip(pts, pts[1:])):
            raise InvalidParameterError(
                f"checkpoints must be increasing epochs in 1..{self.epochs} ending at {self.epochs}"
            )
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
        """Sound no-amplification view of shuffled batching.

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
        """Segments for a sound analysis of this run under its own batching."""
        return self.poisson_segments() if self.batching == "poisson" else self.shuffle_segments()

    # ------------------------------------------------------------------ export
    def to_dp_event(self) -> Any:
        """The run as a ``dp_accounting.DpEvent`` (imports dp_accounting lazily).

        Poisson: ``SelfComposedDpEvent(PoissonSampledDpEvent(q, GaussianDpEvent(sigma)), n)``
        per segment. Shuffle: the sound no-amplification view, ``GaussianDpEvent`` per epoch.
        """
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
                batching=str(d.get("batching", "poisson")),
                relation=str(d.get("relation", "") or ""),
                dataset_size=d.get("dataset_size"),
                batch_size=d.get("batch_size"),
                extra_segments=tuple(
                    GaussianSegment(float(a), float(b), int(c)) for a, b, c in d.get("extra_segments", [])
                ),
            )
        except (KeyError, TypeError) as exc:
            raise InvalidParameterError(f"not a valid run description: missing/invalid {exc}") from None
