"""Privacy accounting for DP-SGD: zCDP/CDP, RDP, the moments accountant and a tight PLD
reference, under Poisson, shuffled and balls-in-bins batching.

Quick use::

    from dpaudit.accounting import DpSgdRun, epsilon
    run = DpSgdRun.create(dataset_size=60000, batch_size=256, noise_multiplier=1.1, epochs=60)
    epsilon(run, delta=1e-5, accountant="pld").epsilon

Accountants are looked up by name in :data:`ACCOUNTANTS` and imported lazily, so importing
this package stays cheap (no scipy, never torch).
"""

from __future__ import annotations

import importlib

from dpaudit.accounting.base import Accountant, EpsilonReport, ProgressFn, RegisteredAccountant
from dpaudit.accounting.events import (
    BATCHING_CHOICES,
    BATCHINGS,
    DEFAULT_DELTA,
    RELATIONS,
    STEPS_RULES,
    DpSgdRun,
    GaussianSegment,
    check_delta,
    check_epsilon,
    normalize_batching,
    steps_per_epoch,
)
from dpaudit.errors import InvalidParameterError

#: name -> "module:attribute" of an :class:`Accountant` instance.
ACCOUNTANTS: dict[str, str] = {
    "rdp": "dpaudit.accounting.rdp:ACCOUNTANT",
    "ma": "dpaudit.accounting.ma:ACCOUNTANT",
    "cdp": "dpaudit.accounting.cdp:ACCOUNTANT",
    "yu2019": "dpaudit.accounting.cdp:YU2019_ACCOUNTANT",
    "pld": "dpaudit.accounting.pld:ACCOUNTANT",
}

#: Accountants whose figures are proven upper bounds (``yu2019`` is a heuristic).
SOUND_ACCOUNTANTS: tuple[str, ...] = ("rdp", "ma", "cdp", "pld")

#: The tightest sound accountant; the default wherever one is chosen for the user.
TIGHTEST = "pld"


def get_accountant(name: str) -> RegisteredAccountant:
    """Return the accountant registered under ``name``."""
    try:
        target = ACCOUNTANTS[name]
    except KeyError:
        raise InvalidParameterError(
            f"unknown accountant {name!r}; choose one of {', '.join(ACCOUNTANTS)}"
        ) from None
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


def clear_caches() -> None:
    """Empty the per-(q, sigma) curve caches of the accountant modules already imported
    (RDP, moments, CDP, the per-epoch random-allocation laws): for cold-start
    measurements, or to free memory."""
    import sys

    for mod in ("rdp", "ma", "cdp", "random_allocation"):
        module = sys.modules.get(f"dpaudit.accounting.{mod}")
        for obj in vars(module).values() if module is not None else ():
            clear = getattr(obj, "cache_clear", None)
            if callable(clear):
                clear()


def epsilon(run: DpSgdRun, delta: float, accountant: str = TIGHTEST) -> EpsilonReport:
    """Upper bound on epsilon at ``delta`` for ``run`` under its own batching."""
    return get_accountant(accountant).epsilon(run, check_delta(delta))


def delta(run: DpSgdRun, epsilon: float, accountant: str = TIGHTEST) -> float:
    """Smallest delta ``accountant`` certifies for ``run`` at ``epsilon``."""
    return get_accountant(accountant).delta(run, check_epsilon(epsilon))


def epsilon_curve(run: DpSgdRun, delta: float, accountant: str = TIGHTEST,
                  progress: ProgressFn | None = None) -> tuple[float, ...]:
    """Cumulative epsilon after each epoch (:func:`dpaudit.accounting.curve.epsilon_curve`)."""
    from dpaudit.accounting.curve import epsilon_curve as curve

    return curve(get_accountant(accountant), run, check_delta(delta), progress=progress)


__all__ = [
    "ACCOUNTANTS",
    "BATCHINGS",
    "BATCHING_CHOICES",
    "DEFAULT_DELTA",
    "RELATIONS",
    "SOUND_ACCOUNTANTS",
    "STEPS_RULES",
    "TIGHTEST",
    "Accountant",
    "DpSgdRun",
    "EpsilonReport",
    "GaussianSegment",
    "ProgressFn",
    "RegisteredAccountant",
    "clear_caches",
    "delta",
    "epsilon",
    "epsilon_curve",
    "get_accountant",
    "normalize_batching",
    "steps_per_epoch",
]
