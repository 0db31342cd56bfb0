"""What to run against a target, checked before anything heavy is imported (no torch)."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from dpaudit import stats
from dpaudit.attacks.inversion import InversionConfig
from dpaudit.errors import InvalidParameterError
from dpaudit.io import check_output_dir
from dpaudit.plotting import require_matplotlib

#: The attacks, by name: loss-threshold membership inference, LiRA (shadow models), MI-FACE.
ATTACKS: tuple[str, ...] = ("loss", "lira", "inversion")
#: Run when none is named (LiRA trains shadow models: asked for explicitly).
DEFAULT_ATTACKS: tuple[str, ...] = ("loss", "inversion")
#: Names a user may give: the attacks and ``all``.
ATTACK_CHOICES: tuple[str, ...] = (*ATTACKS, "all")


def resolve_attacks(names: Iterable[str]) -> tuple[str, ...]:
    """The attacks to run, in the order given: ``all`` -> every attack; none -> the defaults;
    repeats dropped; an unknown name refused."""
    chosen = tuple(dict.fromkeys(names))
    bad = [a for a in chosen if a not in ATTACK_CHOICES]
    if bad:
        raise InvalidParameterError(f"unknown attack(s) {', '.join(bad)}; choose from {', '.join(ATTACK_CHOICES)}")
    if "all" in chosen:
        return ATTACKS
    return chosen or DEFAULT_ATTACKS


@dataclass(frozen=True)
class AttackOptions:
    """What to run and how.  ``attacks``: subset of :data:`ATTACKS`; ``shadow_models``: K for
    LiRA; ``confidence``: of every epsilon bound (overall, after the Bonferroni split);
    ``method``: threshold selection (one of :data:`dpaudit.stats.METHODS`); ``workers``:
    shadow-training processes (<= 1: in this process); ``augment``: LiRA also queries shifted
    (and, where the data set has them, flipped) copies of each example -- True always, False
    never, None (default) when the target trained with an augmentation
    (:func:`dpaudit.attacks.shadows.query_augmentations`)."""

    attacks: tuple[str, ...] = DEFAULT_ATTACKS
    shadow_models: int = 8
    confidence: float = 0.95
    method: str = "bonferroni"
    device: str = "cpu"
    workers: int | None = None
    progress: bool = False
    seed: int = 0
    augment: bool | None = None
    inversion: InversionConfig = field(default_factory=InversionConfig)

    def __post_init__(self) -> None:
        bad = [a for a in self.attacks if a not in ATTACKS]
        if bad or not self.attacks:
            raise InvalidParameterError(f"unknown attack(s) {bad}; choose from {', '.join(ATTACKS)}")
        c = float(self.confidence)
        if not 0 < c < 1 or not math.isfinite(c):
            raise InvalidParameterError(f"confidence must be in (0, 1), got {self.confidence!r}")
        if "lira" in self.attacks and self.shadow_models < 2:
            raise InvalidParameterError(f"LiRA needs at least 2 shadow models, got {self.shadow_models}")
        if self.method not in stats.METHODS:
            raise InvalidParameterError(f"threshold selection must be one of {', '.join(stats.METHODS)}")


def check_report_dir(directory: str | os.PathLike[str]) -> Path:
    """Refuse, before any attack runs, a report folder that could not be written or a
    report whose plots could not be drawn (matplotlib missing)."""
    d = check_output_dir(directory)
    require_matplotlib("an attack report (roc.png, inversion.png)")
    return d
