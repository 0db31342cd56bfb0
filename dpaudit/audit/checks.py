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
#: Checks whose verdict is a statistical test: the family-wise false-alarm probability
#: ``1 - confidence`` is split evenly over those that run (the others are exact).
STATISTICAL: tuple[str, ...] = ("sensitivity", "noise_variance", "fresh_noise", "sampler",
                                "canary_multi_run", "canary_one_run")

#: Default family-wise confidence: a correct trainer is called ``violation`` with
#: probability at most 0.1% per audit (a verifier that is wrong one time in 25 is not trusted).
DEFAULT_CONFIDENCE = 0.999
#: Below this family-wise confidence a ``violation`` would be a coin toss: refused.
MIN_CONFIDENCE = 0.5
#: Default runs per world and canaries: batched instrument / per-run loop
#: (:mod:`dpaudit.audit.simulate`).
DEFAULT_RUNS = {"batched": 2000, "loop": 200}
DEFAULT_CANARIES = {"batched": 10000, "loop": 1000}

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


def check_options(confidence: float, runs: int | None, canaries: int | None, canary_steps: int | None = None) -> None:
    """Refuse audit options no audit can use: confidence outside [0.5, 1) (below 0.5 a
    ``violation`` is more likely wrong than right), fewer than one run per world, fewer
    than two canaries, fewer than one canary step (``None`` runs/canaries = automatic)."""
    c = float(confidence)
    if not 0.0 < c < 1.0 or not math.isfinite(c):
        raise InvalidParameterError(f"confidence must be in (0, 1), got {confidence!r}")
    if c < MIN_CONFIDENCE:
        raise InvalidParameterError(
            f"confidence {confidence!r} is unsafe: a correct trainer would be called a violation in "
            f"{1 - c:.0%} of audits (use at least {MIN_CONFIDENCE})")
    if runs is not None and int(runs) < 1:
        raise InvalidParameterError(f"the multi-run audit needs at least 1 run per world, got {runs!r}")
    if canaries is not None and int(canaries) < 2:
        raise InvalidParameterError(f"the one-run audit needs at least 2 canaries, got {canaries!r}")
    if canary_steps is not None and int(canary_steps) < 1:
        raise InvalidParameterError(f"canary steps must be >= 1, got {canary_steps!r}")
