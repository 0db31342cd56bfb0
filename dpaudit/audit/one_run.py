"""One-run audit: m Dirac canaries, each in the data set with probability 1/2, one run.

Game and bounds: :mod:`dpaudit.stats.one_run` (Steinke, Nasr, Jagielski 2023, NeurIPS;
Mahloujifar, Melis, Chaudhuri 2025, ICML, f-DP). The auditor scores every canary with the
claimed mechanism's log-likelihood ratio summed over steps (a fixed function of the claim),
guesses "in" for the k highest scores (and, in the two-sided rules, "out" for the k
lowest), and counts correct guesses. The rules come from a data-independent grid
(:func:`guess_grid`) with the level split evenly over them (Bonferroni).

Decision: the f-DP recursion tests the claimed mechanism's noise family
(:mod:`dpaudit.audit.certify`); ``epsilon_lower_bound`` (method ``"fdp-one-run"``) decides
the verdict, ``p_value`` is the test of the claim's own curve. Steinke et al.'s (eps, delta)
figure (Thm 5.2) is reported beside it; for Gaussian-like mechanisms its ``2 m delta`` term
keeps it far below.

Instrument: canaries on distinct coordinates of a LinearProbe (white box, every step
observed); excluded canaries are absent, zero-gradient fillers complete the batches. Adapters
that opt in get the batched instrument (chunks of canaries on independent runs, the claimed
sampler; :mod:`dpaudit.audit.simulate`), others one run of dimension m with their own sampler.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from dpaudit.audit.adapter import TrainerAdapter, to_flat
from dpaudit.audit.certify import certify, claim_family
from dpaudit.audit.probe_model import LinearProbe, device_of, linear_loss, run_generator
from dpaudit.audit.simulate import (
    Effect,
    Progress,
    batched_one_run,
    llr,
    not_reached,
    reach_effect,
    run_batches,
    supports_batched,
)
from dpaudit.audit.verdict import INCONCLUSIVE, PASS, VIOLATION, CheckResult
from dpaudit.errors import InvalidParameterError
from dpaudit.stats.one_run import (
    fdp_p_value,
    fdp_rejects,
    guess_bound,
    steinke_epsilon,
    steinke_p_value,
)
from dpaudit.stats.tradeoff import TradeoffCurve

#: Guess counts k as fractions of m (each used "in"-only and two-sided).
GUESS_FRACTIONS: tuple[float, ...] = (0.001, 0.003, 0.01, 0.03, 0.1, 0.2)

# Steinke et al.'s bound under its historical names (tests and callers of the old module).
p_value = steinke_p_value


def epsilon_lower_bound(m: int, r: int, v: int, delta: float, significance: float) -> float:
    """Steinke et al.'s (eps, delta) lower bound (:func:`dpaudit.stats.one_run.steinke_epsilon`)."""
    return steinke_epsilon(m, r, v, delta, significance)


def guess_grid(m: int) -> tuple[tuple[int, int], ...]:
    """Data-independent (k_in, k_out) guess counts: k "in" guesses on the top scores and
    k_out "out" guesses on the bottom ones, k = round(f m) for f in :data:`GUESS_FRACTIONS`
    (at least 1, at most m // 2), "in"-only (k_out = 0; better when subsampling hides
    included canaries among the excluded) and symmetric (k_out = k)."""
    ks = sorted({min(max(1, round(f * m)), max(1, m // 2)) for f in GUESS_FRACTIONS})
    return tuple((k, 0) for k in ks) + tuple((k, k) for k in ks if 2 * k <= m)


def _loop_one_run(adapter: TrainerAdapter, m: int, seed: int, steps: int) -> tuple[np.ndarray, np.ndarray, Effect, bool]:
    """One run of dimension m with the trainer's own sampler (non-batched adapters)."""
    claim = adapter.claim()
    rng = np.random.default_rng(seed)
    included = rng.random(m) < 0.5
    n = max(claim.dataset_size, m)
    batches, own = run_batches(adapter, claim, n, steps, seed + 1)
    dev = device_of(adapter)
    gen = run_generator(seed + 2, dev)
    model = LinearProbe(m).to(dev)
    scale = claim.expected_batch_size / claim.clip
    total = np.zeros(m)
    effect = Effect()
    for t, bt in enumerate(batches):
        x = torch.zeros(max(1, len(bt)), m)
        can = bt[(bt < m)]
        can = can[included[can]]
        x[torch.arange(len(can)), torch.as_tensor(can, dtype=torch.long)] = float(claim.clip)
        y = torch.zeros(x.shape[0], dtype=torch.long, device=dev)
        u = to_flat(adapter.privatized_gradient(model, x.to(dev), y, loss_fn=linear_loss, generator=gen, step=t))
        obs = u.numpy()[:m] * scale
        total += llr(obs, claim.sample_rate, claim.noise_multiplier)
        present = np.zeros(m, dtype=bool)
        present[can] = True
        effect = effect + Effect.of(obs[included], present[included])
    return total, included, effect, own


def one_run_scores(adapter: TrainerAdapter, *, canaries: int, seed: int = 0, steps: int | None = None,
                   progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray, bool]:
    """Scores and inclusion of ``canaries`` canaries; returns (scores, included, trainer sampler used)."""
    scores, included, _, own, _ = _scores(adapter, int(canaries), seed, steps, progress)
    return scores, included, own


def _scores(adapter: TrainerAdapter, m: int, seed: int, steps: int | None,
            progress: Progress | None) -> tuple[np.ndarray, np.ndarray, Effect, bool, bool]:
    if m < 2:
        raise InvalidParameterError("need at least 2 canaries")
    claim = adapter.claim()
    t_steps = int(steps or claim.steps)
    if supports_batched(adapter):
        scores, included, effect = batched_one_run(adapter, claim, m, t_steps, seed, progress)
        return scores, included, effect, False, True
    scores, included, effect, own = _loop_one_run(adapter, m, seed, t_steps)
    return scores, included, effect, own, False


def _guesses(scores: np.ndarray, included: np.ndarray) -> list[dict[str, int]]:
    m = scores.size
    order = np.argsort(scores, kind="stable")
    rows = []
    for k_in, k_out in guess_grid(m):
        top, bottom = order[m - k_in:], order[:k_out]
        v = int(included[top].sum() + (~included[bottom]).sum())
        rows.append({"k_in": k_in, "k_out": k_out, "guesses": k_in + k_out, "correct": v})
    return rows


def _rule(rows: list[dict[str, int]], m: int, level: float) -> Callable[[TradeoffCurve], bool]:
    """``rejects(curve)``: some guess rule rejects f-DP at ``level`` (most precise first)."""
    order = sorted(rows, key=lambda r: -r["correct"] / max(r["guesses"], 1))

    def rejects(curve: TradeoffCurve) -> bool:
        phis: dict[bool, Callable[[float], float]] = {}
        for r in order:
            two = r["k_out"] > 0
            if two not in phis:
                phis[two] = guess_bound(curve, two)
            if fdp_rejects(phis[two], m, r["guesses"], r["correct"], level):
                return True
        return False

    return rejects


def _claim_p_value(curve: TradeoffCurve, rows: list[dict[str, int]], m: int) -> float:
    """Bonferroni p-value of ``curve`` over the guess rules (rules that cannot beat the best
    so far are skipped: rejection is monotone in the level)."""
    best = 1.0
    phis = {two: guess_bound(curve, two) for two in (False, True)}
    for r in sorted(rows, key=lambda r: -r["correct"] / max(r["guesses"], 1)):
        phi = phis[r["k_out"] > 0]
        if best < 1.0 and not fdp_rejects(phi, m, r["guesses"], r["correct"], best):
            continue
        best = min(best, fdp_p_value(phi, m, r["guesses"], r["correct"]))
    return min(1.0, len(rows) * best)


def _canaries_needed(curve: TradeoffCurve, level: float, m: int, limit: int = 10**6) -> int | None:
    """Smallest m' (doubling from m) at which perfect guesses by the largest rule reject
    ``curve``; None beyond ``limit``."""
    mm = m
    while mm <= limit:
        k = max(1, min(round(GUESS_FRACTIONS[-1] * mm), mm // 2))
        if fdp_rejects(guess_bound(curve, True), mm, 2 * k, 2 * k, level):
            return mm
        mm *= 2
    return None


def one_run_audit(adapter: TrainerAdapter, *, alpha: float, canaries: int = 1000, seed: int = 0,
                  steps: int | None = None, progress: Progress | None = None) -> CheckResult:
    """One-run audit at level ``alpha``; ``violation`` when the certified eps_lb exceeds the claim."""
    claim = adapter.claim()
    t0 = time.perf_counter()
    m = int(canaries)
    t_steps = int(steps or claim.steps)
    reason = not_reached(reach_effect(adapter, claim, seed + 99))
    if reason is not None:
        return CheckResult("canary_one_run", INCONCLUSIVE, reason, None,
                           {"epsilon_lower_bound": 0.0, "method": "fdp-one-run", "p_value": None,
                            "claimed_epsilon": claim.epsilon})
    scores, included, effect, own, batched = _scores(adapter, m, seed, t_steps, progress)
    d_eff, se_eff = effect.estimate()
    details: dict[str, Any] = {"canaries": m, "steps": t_steps, "batched": batched, "trainer_sampler": own,
                               "claimed_epsilon": claim.epsilon, "canary_effect": {"mean": d_eff, "se": se_eff}}
    reason = not_reached(effect)
    if reason is not None:
        details.update({"epsilon_lower_bound": 0.0, "method": "fdp-one-run", "p_value": None})
        return CheckResult("canary_one_run", INCONCLUSIVE, reason, None, details)
    rows = _guesses(scores, included)
    level = alpha / len(rows)
    family = claim_family(claim)
    cert = certify(family, claim, _rule(rows, m, level))
    claim_curve = family.curve(cert.claim_scale)
    p = _claim_p_value(claim_curve, rows, m)
    steinke = max(steinke_epsilon(m, r["guesses"], r["correct"], claim.delta, level) for r in rows)
    perfect = [{**r, "correct": r["guesses"]} for r in rows if r["guesses"] == max(x["guesses"] for x in rows)]
    ceiling = certify(family, claim, _rule(perfect, m, level)).epsilon
    needed = _canaries_needed(claim_curve, level, m) if ceiling < claim.epsilon else m
    details.update({
        "epsilon_lower_bound": cert.epsilon, "method": "fdp-one-run", "p_value": p, "mu_lower": cert.mu,
        "certified": cert.to_dict(), "grid": rows, "level_per_rule": level,
        "steinke": {"epsilon_lower_bound": steinke, "method": "steinke-2023 (eps, delta)"},
        "ceiling": {"epsilon": ceiling, "canaries_needed": needed}, "seconds": time.perf_counter() - t0,
        "ratio": cert.epsilon / claim.epsilon if claim.epsilon > 0 else math.inf,
    })
    notes: list[str] = []
    if batched:
        notes.append("canaries simulated on the batched instrument (independent runs of chunks of canaries, "
                     "claimed sampler)")
    elif not own:
        notes.append("batches simulated from the claimed sampler (the trainer's sampler was not used)")
    if t_steps < claim.steps:
        notes.append(f"audited the first {t_steps} of {claim.steps} steps against the whole run's curve (valid, looser)")
    if ceiling < claim.epsilon:
        more = f"about {needed} canaries" if needed else "more than 10^6 canaries"
        notes.append(f"{m} canaries cannot certify eps_lb above {ceiling:.3g} even with perfect guesses; "
                     f"rejecting the claim needs {more}")
    mu = f", mu_lb={cert.mu:.3g}" if cert.mu is not None else ""
    ev = (f"eps_lb={cert.epsilon:.3g} (f-DP one-run test{mu}) vs claimed {claim.epsilon:.3g}; p={p:.2g} for the "
          f"claimed curve; Steinke et al. eps_lb={steinke:.3g}; {m} canaries x {t_steps} steps")
    verdict = VIOLATION if cert.epsilon > claim.epsilon else PASS
    return CheckResult("canary_one_run", verdict, ev, 1 - alpha, details, tuple(notes), p_value=p)
