"""Re-account the claimed mechanism with independent accountants.

A claim (ε, δ) is *certified* when some sound accountant bounds the claimed mechanism's ε at
δ by at most the claimed ε. We ask dpaudit's accountants (``pld``, ``rdp``) and, built
independently from the claim's raw parameters, dp-accounting's ``RdpAccountant`` (Mironov,
Talwar, Zhang 2019) and ``PLDAccountant`` (Koskela et al. 2020; Doroshenko et al. 2022). All
are upper bounds, so their minimum is one too; a claim more than ``tolerance`` (relative)
below that minimum is not certified by any of them: ``violation``.

Shuffle vs Poisson (Opacus #80, TF-Privacy #483): for shuffled fixed-size batches the sound
analysis here claims no amplification (one Gaussian release with noise σ per epoch by
parallel composition; Yu et al. 2019, S&P, Sec. IV -- :meth:`DpSgdRun.shuffle_segments`).
When a shuffle claim is below that but at or above the Poisson figure, the evidence says the
claim used Poisson amplification for shuffled batches. For Poisson claims we record the
shuffle figure too, for when the sampler probe finds fixed-size batches.

Balls-in-bins: dpaudit's ``pld`` accountant bounds it by the random-allocation PLD
(:mod:`dpaudit.accounting.random_allocation`); dp_accounting has no random-allocation event,
so its figures (and dpaudit's ``rdp``) are the sound no-amplification view, one Gaussian per
epoch -- looser, never optimistic. The alternative figure recorded is the shuffle one (for
when the sampler probe finds fixed-size batches).
"""

from __future__ import annotations

import functools
import logging
import math
from typing import Any

from dpaudit.audit.adapter import Claim
from dpaudit.audit.verdict import INCONCLUSIVE, PASS, VIOLATION, CheckResult
from dpaudit.errors import DPAuditError


def _dp_accounting_event(claim: Claim, batching: str) -> Any:
    """The claimed mechanism as a dp_accounting event, built from the claim's raw numbers
    (independently of :meth:`DpSgdRun.to_dp_event`)."""
    import dp_accounting

    g = dp_accounting.GaussianDpEvent(claim.noise_multiplier)
    if batching == "poisson":
        inner = g if claim.sample_rate >= 1.0 else dp_accounting.PoissonSampledDpEvent(claim.sample_rate, g)
        return dp_accounting.SelfComposedDpEvent(inner, int(claim.steps))
    from dpaudit.accounting import steps_per_epoch

    # shuffle and balls-in-bins: one Gaussian per epoch (dp_accounting has no
    # random-allocation event; the sound no-amplification view, far looser than dpaudit's pld)
    spe = steps_per_epoch(batching, dataset_size=claim.dataset_size, batch_size=claim.batch_size)
    epochs = math.ceil(claim.steps / spe)
    return dp_accounting.SelfComposedDpEvent(g, epochs)


def independent_epsilons(claim: Claim, batching: str | None = None) -> tuple[dict[str, float], list[str]]:
    """ε upper bounds at the claimed δ for the claimed mechanism under ``batching``
    (default: the claimed one), keyed ``"dpaudit:<name>"`` / ``"dp_accounting:<name>"``;
    plus notes on accountants that could not run (cached per claim: claims are immutable)."""
    figs, notes = _independent_epsilons(claim, batching or claim.batching)
    return dict(figs), list(notes)


@functools.lru_cache(maxsize=64)
def _independent_epsilons(claim: Claim, b: str) -> tuple[tuple[tuple[str, float], ...], tuple[str, ...]]:
    from dp_accounting import pld, rdp

    out: dict[str, float] = {}
    notes: list[str] = []
    from dpaudit.accounting import epsilon as dpaudit_epsilon

    run = claim.to_run(b)
    for name in ("pld", "rdp"):
        try:
            rep = dpaudit_epsilon(run, claim.delta, name)
            if rep.sound:
                out[f"dpaudit:{name}"] = float(rep.epsilon)
        except (DPAuditError, ValueError) as exc:
            notes.append(f"dpaudit {name} accountant unavailable: {exc}")
    event = _dp_accounting_event(claim, b)
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)  # dp_accounting warns about RDP orders it skips (still sound)
    try:
        acc = rdp.RdpAccountant()
        acc.compose(event)
        out["dp_accounting:rdp"] = float(acc.get_epsilon(claim.delta))
    finally:
        absl.setLevel(level)
    try:
        acc2 = pld.PLDAccountant(value_discretization_interval=1e-3)
        acc2.compose(event)
        out["dp_accounting:pld"] = float(acc2.get_epsilon(claim.delta))
    except (ValueError, OverflowError, MemoryError) as exc:  # e.g. a tiny sigma: too wide a PLD
        notes.append(f"dp_accounting PLD failed: {exc}")
    return tuple(out.items()), tuple(notes)


def accounting_check(claim: Claim, *, tolerance: float = 0.01) -> CheckResult:
    """Is the claimed ε certified by some sound accountant for the claimed parameters?"""
    figs, notes = independent_epsilons(claim)
    figs = {k: v for k, v in figs.items() if math.isfinite(v) and v >= 0}
    details: dict[str, Any] = {"epsilons": figs, "tolerance": tolerance}
    if not figs:
        return CheckResult("accounting", INCONCLUSIVE, "no accountant could bound the claimed mechanism",
                           None, details, tuple(notes))
    best_name = min(figs, key=figs.__getitem__)
    cert = figs[best_name]
    details["certified_epsilon"] = cert
    other = "poisson" if claim.batching == "shuffle" else "shuffle"
    try:
        other_figs, _ = independent_epsilons(claim, other)
        other_eps = min(other_figs.values())
        details[f"epsilon_if_{other}"] = other_eps
    except (DPAuditError, ValueError):  # no accountant answered for the other batching
        other_eps = math.nan
    claimed = claim.epsilon
    listing = ", ".join(f"{k}={v:.4g}" for k, v in sorted(figs.items()))
    if claimed >= cert * (1 - tolerance):
        ev = f"claimed eps={claimed:.4g} >= certified {cert:.4g} ({best_name}); {listing}"
        if other == "shuffle" and math.isfinite(other_eps):
            notes.append(f"if the batches are in fact shuffled (see sampler), the sound figure is eps={other_eps:.4g}")
        return CheckResult("accounting", PASS, ev, None, details, tuple(notes))
    ev = f"claimed eps={claimed:.4g} is below every sound accountant (smallest {cert:.4g}, {best_name}); {listing}"
    if claim.batching == "shuffle" and math.isfinite(other_eps) and claimed >= other_eps * (1 - tolerance):
        ev += (f"; the claim matches Poisson accounting ({other_eps:.4g}): shuffled batches accounted as "
               "Poisson-subsampled")
    return CheckResult("accounting", VIOLATION, ev, None, details, tuple(notes))
