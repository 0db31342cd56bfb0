"""The names of the audit's checks and the validation of its options (no torch).

Kept apart from the runner so that a command line can refuse a typo or an out-of-range
option before it imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from dpaudit.errors import InvalidParameterError

#: Cheap checks, run first (seconds).
PROBES: tuple[str, ...] = ("accounting", "sensitivity", "noise_variance", "fresh_noise",
                           "per_sample_gradients", "sampler")
#: Statistical audits (many steps).
AUDITS: tuple[str, ...] = ("canary_multi_run", "canary_one_run")
CHECKS: tuple[str, ...] = PROBES + AUDITS
#: Names that select several checks at once.
CHECK_GROUPS: dict[str, tuple[str, ...]] = {"all": CHECKS, "probes": PROBES, "audits": AUDITS}

#: Default cap on the steps the canary audits simulate (each costs one trainer step per run);
#: auditing a prefix of the run is valid (the prefix's release is a post-processing of the
#: whole transcript), only looser. Pass ``canary_steps`` to audit more.
DEFAULT_MAX_CANARY_STEPS = 1000


def resolve_checks(spec: str | Sequence[str] | None) -> tuple[str, ...]:
    """``None``/``"all"`` -> every check; ``"probes"`` -> the cheap ones; else names
    (comma-separated string or sequence; ``probes``/``audits`` expand)."""
    if spec is None:
        return CHECKS
    items = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for it in items:
        if not it:
            continue
        for name in CHECK_GROUPS.get(it, (it,)):
            if name not in CHECKS:
                raise InvalidParameterError(
                    f"unknown check {name!r}; choose from {', '.join(CHECK_GROUPS)}, {', '.join(CHECKS)}")
            if name not in out:
                out.append(name)
    if not out:
        raise InvalidParameterError("no checks selected")
    return tuple(out)


def check_options(confidence: float, runs: int, canaries: int, canary_steps: int | None = None) -> None:
    """Refuse audit options no audit can use: confidence outside (0, 1), fewer than one run
    per world, fewer than two canaries, fewer than one canary step."""
    c = float(confidence)
    if not 0.0 < c < 1.0 or not math.isfinite(c):
        raise InvalidParameterError(f"confidence must be in (0, 1), got {confidence!r}")
    if int(runs) < 1:
        raise InvalidParameterError(f"the multi-run audit needs at least 1 run per world, got {runs!r}")
    if int(canaries) < 2:
        raise InvalidParameterError(f"the one-run audit needs at least 2 canaries, got {canaries!r}")
    if canary_steps is not None and int(canary_steps) < 1:
        raise InvalidParameterError(f"canary steps must be >= 1, got {canary_steps!r}")
