"""From a rejection rule to the certified figures of a canary audit (torch-free).

The audits test the claimed mechanism's own trade-off curve and its noise family
(:class:`dpaudit.stats.family.NoiseFamily`: every sigma scaled by s; s = 1 is the
mechanism with the claimed parameters). Given a rule ``rejects(curve)`` that is a
level-alpha test of "the trainer is ``curve``-DP" (the multi-run corners of
:mod:`dpaudit.stats.fdp_test` or the one-run recursion of :mod:`dpaudit.stats.one_run`):

* ``scale``: the boundary of the rejected members (every member with at least this much
  noise is rejected; bisection, :func:`dpaudit.stats.fdp_test.family_bound`);
* ``epsilon`` (the certified eps_lb): a *lower* bound on the epsilon at the claimed delta of
  the boundary member (:meth:`NoiseFamily.epsilon_lower`). What it certifies: with
  probability >= 1 - alpha the trainer is not the claimed mechanism with that much noise
  or more; *if* the trainer is some member of the family (the claimed mechanism with
  another sigma), its epsilon at delta is at least eps_lb. It is not a family-free
  statement about (eps, delta) -- that is the ``cp-bonferroni`` figure reported beside;
* ``p_value``: of the claim's own member, the one whose epsilon equals the claimed epsilon
  (s = 1 when the claim is the PLD figure of its parameters);
* ``ceiling``: the eps_lb a perfect outcome of the same size would certify, and the size
  needed before the claim can be rejected at all.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from dpaudit.audit.claim import Claim
from dpaudit.stats.family import NoiseFamily
from dpaudit.stats.fdp_test import family_bound
from dpaudit.stats.tradeoff import GaussianTradeoff, TradeoffCurve


@dataclass(frozen=True)
class Certified:
    """Certified figures of one canary audit (module docstring). ``mu``: the equivalent
    mu-GDP lower bound when the claim is an unsubsampled Gaussian (else None)."""

    epsilon: float
    scale: float
    claim_scale: float
    mu: float | None = None

    def to_dict(self) -> dict:
        return {"epsilon": self.epsilon, "scale": self.scale, "claim_scale": self.claim_scale, "mu": self.mu}


def claim_family(claim: Claim) -> NoiseFamily:
    """The claimed mechanism's noise family (the segments the accountant composes)."""
    return NoiseFamily(tuple(claim.to_run().segments()))


def claim_scale(family: NoiseFamily, claim: Claim) -> float:
    """Scale of the member whose (upper-bound) epsilon at the claimed delta is the claimed
    epsilon (1 when the claim is the PLD figure of its parameters).

    Balls-in-bins: the family is the no-amplification view (one Gaussian per epoch), which
    dominates the mechanism's trade-off curve (joint convexity of the hockey-stick
    divergences over the batch a record lands in) but is not it; a claim below that view's
    epsilon (the random-allocation figure) has no member of its own, so the member tested is
    s = min(1, s_claim): a correct trainer is f-DP for it (no false alarm beyond alpha), and
    the certified eps_lb is a lower bound within the no-amplification family."""
    e1 = family.epsilon(1.0, claim.delta)
    if abs(e1 - claim.epsilon) <= 1e-6 * max(claim.epsilon, 1e-12):
        return 1.0
    if claim.batching == "balls_in_bins" and claim.epsilon < e1:
        return 1.0
    return family.scale_for_epsilon(claim.epsilon, claim.delta)


def certify(family: NoiseFamily, claim: Claim, rejects: Callable[[TradeoffCurve], bool],
            mu_lower: float | None = None) -> Certified:
    """The certified eps_lb for a rejection rule (module docstring). For Gaussian families
    ``mu_lower`` (every mu'-GDP with mu' < mu_lower rejected) gives it in closed form."""
    s_claim = claim_scale(family, claim)
    if family.gaussian and mu_lower is not None:
        if mu_lower <= 0.0:
            return Certified(0.0, math.inf, s_claim, 0.0)
        eps = GaussianTradeoff(mu_lower).epsilon_lower(claim.delta)
        return Certified(eps, family.mu(1.0) / mu_lower, s_claim, mu_lower)
    fb = family_bound(family.curve, rejects, start=s_claim)
    if not math.isfinite(fb.scale):
        return Certified(0.0, math.inf, s_claim, 0.0 if family.gaussian else None)
    eps = family.epsilon_lower(fb.scale, claim.delta)
    mu = family.mu(fb.scale) if family.gaussian else None
    return Certified(eps, fb.scale, s_claim, mu)
