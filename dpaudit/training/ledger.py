"""The privacy ledger: what a training run actually released, step by step.

Each noisy gradient step is a Gaussian release with noise multiplier sigma (noise std / clip
norm C) on a batch drawn by the run's batching (Poisson at rate q, shuffled, or balls-in-bins
with t = ceil(N/B) batches per epoch); the ledger records (sigma, q, C, batching) for every
step (run-length encoded) plus extra releases (e.g. private validation queries), and
turns them into a :class:`dpaudit.accounting.DpSgdRun` so any accountant re-checks the run.

``to_run`` groups steps into epochs of ``steps_per_epoch`` and uses, per epoch, the *smallest*
sigma recorded in it: exact when sigma is constant within epochs (the trainer changes sigma
only at epoch boundaries), and an over-estimate of the privacy loss otherwise (a smaller
noise multiplier never gives a smaller epsilon), so the figure stays an upper bound.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from dpaudit.accounting.events import (
    DEFAULT_RELATION,
    DpSgdRun,
    GaussianSegment,
    normalize_batching,
)
from dpaudit.accounting.events import steps_per_epoch as epoch_steps
from dpaudit.errors import InvalidParameterError, OutOfValidityError


class PrivacyLedger:
    """Per-step record of a DP-SGD run.

    Args:
        dataset_size: N, the number of training members.
        batch_size: B, the (expected) batch size; q = B / N.
        batching: ``"poisson"``, ``"shuffle"`` or ``"balls_in_bins"`` (must match the
            sampler used; ``"balls-in-bins"`` is accepted).
        steps_per_epoch: steps in a full epoch (default:
            :func:`dpaudit.accounting.steps_per_epoch`, the rule every layer uses).
    """

    def __init__(
        self,
        dataset_size: int,
        batch_size: int,
        batching: str = "poisson",
        steps_per_epoch: int | None = None,
    ) -> None:
        batching = normalize_batching(batching)
        n, b = int(dataset_size), int(batch_size)
        if n < 1 or not 1 <= b <= n:
            raise InvalidParameterError(f"need 1 <= batch size ({b}) <= dataset size ({n})")
        self.dataset_size, self.batch_size, self.batching = n, b, batching
        self.steps_per_epoch = int(steps_per_epoch or epoch_steps(batching, dataset_size=n, batch_size=b))
        self.entries: list[dict[str, Any]] = []  # {"epoch", "sigma", "q", "clip", "batching", "count"}
        self.extra: list[dict[str, Any]] = []  # {"sample_rate", "noise_multiplier", "count", "note"}

    @property
    def sample_rate(self) -> float:
        return self.batch_size / self.dataset_size

    @property
    def steps(self) -> int:
        return sum(e["count"] for e in self.entries)

    def record_step(self, sigma: float, clip: float, *, count: int = 1) -> None:
        """Record ``count`` noisy steps with noise multiplier ``sigma`` and clip norm ``clip``."""
        s = float(sigma)
        if math.isnan(s) or s <= 0:
            raise InvalidParameterError(f"a private step needs a noise multiplier > 0, got {sigma!r}")
        q, c = self.sample_rate, float(clip)
        remaining = int(count)
        while remaining > 0:  # one entry per (epoch, sigma, q, clip) run: epoch-sized chunks
            done = self.steps
            epoch, room = done // self.steps_per_epoch, self.steps_per_epoch - done % self.steps_per_epoch
            take = min(remaining, room)
            last = self.entries[-1] if self.entries else None
            if last and (last["epoch"], last["sigma"], last["q"], last["clip"]) == (epoch, s, q, c):
                last["count"] += take
            else:
                self.entries.append({"epoch": epoch, "sigma": s, "q": q, "clip": c,
                                     "batching": self.batching, "count": take})
            remaining -= take

    def record_epoch(self, sigma: float, clip: float) -> None:
        """Record the remaining steps of the current epoch (a full epoch from its start)."""
        done = self.steps % self.steps_per_epoch
        self.record_step(sigma, clip, count=self.steps_per_epoch - done)

    def record_release(self, sample_rate: float, noise_multiplier: float, count: int = 1,
                       note: str = "") -> None:
        """Record extra subsampled-Gaussian releases (e.g. private validation queries)."""
        GaussianSegment(sample_rate, noise_multiplier, count)  # validates
        self.extra.append({"sample_rate": float(sample_rate),
                           "noise_multiplier": float(noise_multiplier),
                           "count": int(count), "note": note})

    def copy(self) -> PrivacyLedger:
        return copy.deepcopy(self)

    def epoch_sigmas(self) -> list[float]:
        """Per epoch begun, the smallest noise multiplier recorded in it."""
        out: dict[int, float] = {}
        for e in self.entries:
            out[e["epoch"]] = min(out.get(e["epoch"], math.inf), e["sigma"])
        return [out[k] for k in sorted(out)]

    def to_run(self) -> DpSgdRun:
        """The recorded run as a :class:`DpSgdRun` (see the module docstring for soundness)."""
        if not self.entries:
            raise InvalidParameterError("the ledger holds no private steps")
        qs = {e["q"] for e in self.entries}
        if len(qs) != 1:
            raise OutOfValidityError("steps with different sample rates cannot be described as one run")
        return DpSgdRun(
            sample_rate=qs.pop(),
            noise_multipliers=tuple(self.epoch_sigmas()),
            steps_per_epoch=self.steps_per_epoch,
            total_steps=self.steps,
            batching=self.batching,
            dataset_size=self.dataset_size,
            batch_size=self.batch_size,
            extra_segments=tuple(
                GaussianSegment(x["sample_rate"], x["noise_multiplier"], x["count"]) for x in self.extra
            ),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (round-trips through :meth:`from_dict`)."""
        return {
            "dataset_size": self.dataset_size,
            "batch_size": self.batch_size,
            "batching": self.batching,
            "relation": DEFAULT_RELATION[self.batching],
            "steps_per_epoch": self.steps_per_epoch,
            "steps": self.steps,
            "entries": [dict(e) for e in self.entries],
            "extra_releases": [dict(x) for x in self.extra],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PrivacyLedger:
        try:
            led = cls(int(d["dataset_size"]), int(d["batch_size"]), str(d["batching"]),
                      int(d["steps_per_epoch"]))
            for e in d.get("entries", []):
                led.entries.append({
                    "epoch": int(e["epoch"]), "sigma": float(e["sigma"]), "q": float(e["q"]),
                    "clip": float(e["clip"]), "batching": str(e.get("batching", led.batching)),
                    "count": int(e["count"]),
                })
            for x in d.get("extra_releases", []):
                led.record_release(x["sample_rate"], x["noise_multiplier"], x["count"], x.get("note", ""))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidParameterError(f"not a valid privacy ledger: {exc}") from None
        return led

    def __repr__(self) -> str:
        return (f"PrivacyLedger(N={self.dataset_size}, B={self.batch_size}, {self.batching}, "
                f"steps={self.steps}, epochs={len(self.epoch_sigmas())})")
