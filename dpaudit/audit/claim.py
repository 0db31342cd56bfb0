"""The privacy claim an audited trainer makes, and the mechanism parameters behind it.

Pure Python (no torch): a claim is built and validated before any heavy import, so bad
values are refused at once. :meth:`Claim.create` builds one from the values a user knows
(q or B and N, σ, C, T), taking the tightest sound accountant's ε when none is claimed;
:meth:`Claim.from_metadata` / :meth:`Claim.from_model_file` read the claim a model trained by
``dpaudit train`` records.

Why N (or B) is required: the released DP-SGD update is ``(Σ_i clip_C(g_i) + Z) / B`` with
B = q·N the *expected* batch size (Abadi et al. 2016, Alg. 1), so the sensitivity C/B and
the noise σC/B every probe and canary audit measures depend on it. Guessing N = 1/q (B = 1)
would audit a different mechanism, so a claim without either is refused.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, replace
from typing import Any

from dpaudit.accounting.events import (
    DpSgdRun,
    check_delta,
    check_epsilon,
    normalize_batching,
    steps_per_epoch,
)
from dpaudit.errors import InvalidParameterError, OutOfValidityError


def _positive(name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidParameterError(f"claimed {name} must be a number, got {value!r}") from None
    if not (v > 0.0) or not math.isfinite(v):
        raise InvalidParameterError(f"claimed {name} must be finite and > 0, got {value!r}")
    return v


def _default_divisor(batching: str, q: float, n: int) -> float:
    """The divisor of the noisy sum when the claim gives none: q·N, or N/t for balls-in-bins
    (t = ceil(N/B) batches of mean size N/t, B = round(q·N))."""
    if batching == "balls_in_bins":
        return n / steps_per_epoch(batching, dataset_size=n, batch_size=min(n, max(1, round(q * n))))
    return q * n


@dataclass(frozen=True)
class Claim:
    """A trainer's privacy claim and the mechanism parameters behind it.

    Attributes:
        epsilon, delta: the claimed (ε, δ) for the whole run (δ in (0, 1)).
        sample_rate: q, the per-step inclusion probability (Poisson) or B/N (shuffle,
            balls-in-bins: t = ceil(N/B) batches per epoch).
        noise_multiplier: σ = noise standard deviation / C (constant over the run).
        clip: C, the per-example L2 clipping norm (> 0).
        steps: number of noisy releases T.
        batching: ``"poisson"``, ``"shuffle"`` or ``"balls_in_bins"`` (also spelled
            ``"balls-in-bins"``) -- what the trainer says it does.
        dataset_size: N. Give N or ``expected_batch_size`` (or both); the missing one is
            derived (B = q·N, N = round(B/q)); 0 or None means "not given". Neither: refused.
        expected_batch_size: B, the divisor of the noisy sum (default q·N; balls-in-bins:
            N/t, the mean size of its t batches, what ``dpaudit train`` divides by).
        lr: learning rate (the update is ``-lr * privatized_gradient``); informative only.
    """

    epsilon: float
    delta: float
    sample_rate: float
    noise_multiplier: float
    clip: float
    steps: int
    batching: str = "poisson"
    dataset_size: int = 0
    expected_batch_size: float = 0.0
    lr: float = 1.0

    def __post_init__(self) -> None:
        check_epsilon(self.epsilon)
        check_delta(self.delta)
        q = _positive("sample rate", self.sample_rate)
        if q > 1.0:
            raise InvalidParameterError(f"claimed sample rate must be in (0, 1], got {self.sample_rate!r}")
        _positive("noise multiplier", self.noise_multiplier)
        _positive("clip norm", self.clip)
        if int(self.steps) != self.steps or self.steps < 1:
            raise InvalidParameterError(f"claimed steps must be a positive integer, got {self.steps!r}")
        object.__setattr__(self, "batching", normalize_batching(str(self.batching)))
        n = self.dataset_size or 0
        b = self.expected_batch_size or 0.0
        if not n and not b:
            raise InvalidParameterError(
                "the claim needs the dataset size N or the expected batch size B = q*N "
                "(the update is divided by B; N = 1/q is not assumed)")
        if n and (int(n) != n or n < 1):
            raise InvalidParameterError(f"dataset size must be a positive integer, got {self.dataset_size!r}")
        b = _positive("expected batch size", b) if b else _default_divisor(self.batching, q, int(n))
        n = int(n) if n else max(1, round(b / q))
        object.__setattr__(self, "dataset_size", n)
        object.__setattr__(self, "expected_batch_size", float(b))

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(
        cls,
        *,
        noise_multiplier: float | None,
        steps: int | None,
        delta: float = 1e-5,
        epsilon: float | None = None,
        sample_rate: float | None = None,
        batch_size: int | None = None,
        dataset_size: int | None = None,
        clip: float = 1.0,
        batching: str = "poisson",
    ) -> Claim:
        """A claim from the values a user knows.

        q is ``sample_rate``, or ``batch_size / dataset_size``; B is ``batch_size`` when
        given, else q·N. Without ``epsilon`` the claim is what the trainer would claim: the
        tightest sound accountant's ε (PLD, :data:`dpaudit.accounting.TIGHTEST`) for these
        parameters at ``delta``.
        """
        if noise_multiplier is None or steps is None:
            raise InvalidParameterError("the claim needs the noise multiplier and the number of steps")
        if sample_rate is None:
            if batch_size is None or dataset_size is None:
                raise InvalidParameterError("the claim needs the sample rate, or the batch size and the dataset size")
            if dataset_size < 1 or not 1 <= batch_size <= dataset_size:
                raise InvalidParameterError(
                    f"need 1 <= batch size <= dataset size, got {batch_size} and {dataset_size}")
            sample_rate = batch_size / dataset_size
        claim = cls(epsilon=0.0 if epsilon is None else epsilon, delta=delta, sample_rate=sample_rate,
                    noise_multiplier=noise_multiplier, clip=clip, steps=steps, batching=batching,
                    dataset_size=dataset_size or 0,
                    expected_batch_size=0.0 if dataset_size and normalize_batching(batching) == "balls_in_bins"
                    else float(batch_size or 0))
        if epsilon is None:
            from dpaudit.accounting import TIGHTEST
            from dpaudit.accounting import epsilon as account

            claim = replace(claim, epsilon=account(claim.to_run(), delta, TIGHTEST).epsilon)
        return claim

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> Claim:
        """The claim a model trained by ``dpaudit train`` makes (its metadata: ``epsilon``,
        ``delta``, ``clip`` and the privacy ledger). Refuses (OutOfValidityError) a run whose
        noise multiplier, sample rate or clip norm changed over training: a single-σ claim
        would then misdescribe it in one direction or the other."""
        led = metadata.get("ledger") if isinstance(metadata, dict) else None
        if not led or not metadata.get("private", True) or metadata.get("epsilon") is None:
            raise InvalidParameterError("the model metadata holds no privacy claim (trained without privacy?)")
        try:
            entries = led["entries"]
            sigmas = {float(e["sigma"]) for e in entries}
            qs = {float(e["q"]) for e in entries}
            clips = {float(e["clip"]) for e in entries}
            if len(sigmas) != 1 or len(qs) != 1 or len(clips) != 1:
                raise OutOfValidityError(
                    "the run changed sigma, q or C during training; the audit's claim has one of each "
                    "(audit an explicit claim with the smallest sigma instead)")
            return cls(
                epsilon=float(metadata["epsilon"]), delta=float(metadata["delta"]), sample_rate=qs.pop(),
                noise_multiplier=sigmas.pop(), clip=clips.pop(), steps=int(led["steps"]),
                batching=str(led["batching"]), dataset_size=int(led["dataset_size"]),
                expected_batch_size=(0.0 if normalize_batching(str(led["batching"])) == "balls_in_bins"
                                     else float(led["batch_size"])),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, (InvalidParameterError, OutOfValidityError)):
                raise
            raise InvalidParameterError(f"model metadata has no usable ledger: {exc}") from None

    @classmethod
    def from_model_file(cls, path: str | os.PathLike[str]) -> Claim:
        """The claim recorded in a dpaudit model file, read once and weights-only
        (:func:`dpaudit.modelfile.read_dpaudit_model`; imports torch)."""
        from dpaudit.modelfile import read_dpaudit_model

        return cls.from_metadata(read_dpaudit_model(path)["metadata"])

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Claim:
        try:
            return cls(**{k: d[k] for k in d if k in cls.__dataclass_fields__})
        except TypeError as exc:
            raise InvalidParameterError(f"not a valid claim: {exc}") from None

    # ------------------------------------------------------------------ derived values
    @property
    def batch_size(self) -> int:
        """The (rounded) batch size: B for shuffling and balls-in-bins (t = ceil(N/B) batches
        per epoch), round(q·N) for Poisson."""
        return max(1, round(self.sample_rate * self.dataset_size))

    @property
    def update_noise_std(self) -> float:
        """Per-coordinate standard deviation of the released update on zero gradients: σC/B."""
        return self.noise_multiplier * self.clip / self.expected_batch_size

    def to_run(self, batching: str | None = None) -> DpSgdRun:
        """The claimed mechanism as a :class:`DpSgdRun` (under ``batching``, default the
        claimed one) -- what the re-accounting check hands to the accountants."""
        b = normalize_batching(batching or self.batching)
        n = self.dataset_size
        bs = self.batch_size
        if b in ("shuffle", "balls_in_bins") and bs <= n:
            return DpSgdRun.create(
                noise_multiplier=self.noise_multiplier, dataset_size=n, batch_size=bs,
                steps=self.steps, batching=b,
            )
        return DpSgdRun.create(
            noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate,
            dataset_size=n, steps=self.steps, batching="poisson",
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One line with every parameter of the claim (ε, δ, N, B, q, σ, C, T, batching)."""
        return (f"eps={self.epsilon:.6g} delta={self.delta:g} N={self.dataset_size} "
                f"B={self.expected_batch_size:.6g} q={self.sample_rate:.6g} sigma={self.noise_multiplier:.6g} "
                f"C={self.clip:g} T={self.steps} batching={self.batching}")
