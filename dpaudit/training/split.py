"""Members and held-out examples of a training run (numpy only).

The trainer trains on the *members* -- a seeded fraction of the train split, or explicit
indices (e.g. shadow models) -- and keeps the rest of the train split held out (validation,
membership-inference non-members). Both index lists are public (they are stored in the model's
metadata); the privacy guarantee is about the members.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dpaudit.errors import InvalidParameterError


def member_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of range(n) into sorted (members, non-members); ``fraction`` members."""
    perm = np.random.default_rng(seed).permutation(n)
    k = max(1, int(round(fraction * n)))
    return np.sort(perm[:k]), np.sort(perm[k:])


@dataclass(frozen=True)
class Split:
    """Indices into the train split: ``members`` (trained on) and ``nonmembers`` (held out),
    both sorted int64; ``kind`` is ``"seeded"`` or ``"explicit"``."""

    members: np.ndarray
    nonmembers: np.ndarray
    kind: str
    seed: int

    @property
    def size(self) -> int:
        """N, the number of training members."""
        return int(self.members.size)

    @classmethod
    def make(
        cls, n_train: int, *, seed: int, fraction: float = 1.0,
        members: np.ndarray | Sequence[int] | None = None,
    ) -> Split:
        """Explicit ``members`` (indices into the train split) if given, else a seeded
        ``fraction`` of the ``n_train`` examples (:func:`member_split`)."""
        if members is None:
            mem, non = member_split(n_train, fraction, seed)
            return cls(mem, non, "seeded", seed)
        mem = np.unique(np.asarray(members, dtype=np.int64))
        if mem.size == 0 or mem.min() < 0 or mem.max() >= n_train:
            raise InvalidParameterError(f"member indices must lie in 0..{n_train - 1}")
        return cls(mem, np.setdiff1d(np.arange(n_train), mem), "explicit", seed)

    def to_dict(self) -> dict[str, Any]:
        n_train = self.members.size + self.nonmembers.size
        return {
            "kind": self.kind,
            "seed": self.seed,
            "member_fraction": self.size / n_train,
            "member_indices": self.members.tolist(),
            "nonmember_indices": self.nonmembers.tolist(),
        }
