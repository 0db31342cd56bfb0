"""Multi-run white-box audit with a Dirac gradient canary, tested against the claimed
mechanism's own trade-off curve (f-DP).

Threat model (Nasr, Hayes, Steinke, Balle, Tramèr, Jagielski, Carlini, Terzis 2023, "Tight
Auditing of Differentially Private Machine Learning", USENIX Security, arXiv:2302.07956;
their strongest threat model, white-box gradient canaries with every update observed): the
adversary chooses the canary's gradient ``C·e_j`` and sees each step's update; every other
example has zero gradient. The canary is in the data set (world 1) or not (world 0); the
sampler decides when it is in a batch. This is the strongest adversary DP-SGD's analysis
covers, and for it the claimed analysis is tight.

Per step the adversary reads ``o_t = u_t[j]·B/C``; under the claim ``o_t ~ N(0, σ²)`` in
world 0 and ``(1-q) N(0, σ²) + q N(1, σ²)`` in world 1. A run's score is the claimed
mechanism's log-likelihood ratio summed over steps (:func:`llr`; the privacy loss of the
claimed pair, so Neyman-Pearson optimal against the claim -- and a fixed function of the
claim, never fitted to the audit's data).

Decision (:mod:`dpaudit.stats.fdp_test`): simultaneous Clopper-Pearson corners (FPR̄, FNR̄)
at data-independent order-statistic thresholds; the claimed mechanism's noise family
(:mod:`dpaudit.stats.family`, exact mu-GDP when nothing is subsampled, else the dominating
PLD pair) is rejected where a corner lies below its curve. ``epsilon_lower_bound`` is the
certified figure of :mod:`dpaudit.audit.certify` (method ``"fdp-multi-run"``): it decides
the verdict (``violation`` when above the claimed epsilon); ``p_value`` is the test of the
claimed curve itself. Reported beside, from the same corners: the ``cp-bonferroni`` figure
(Kairouz et al. 2015 Thm 2.1 per corner -- certifies epsilon at delta with no assumption on
the curve's shape), and the GDP-route *estimate* (Nasr et al. 2023; Dong, Roth, Su 2022,
Cor. 2.13: mu bound at the a-priori threshold 0, exact for unsubsampled Gaussians, an
approximation under subsampling), which decides nothing.

Runs are simulated on the batched instrument when the adapter opts in, else one by one
through the executor (:mod:`dpaudit.audit.simulate`).
"""

from __future__ import annotations

import math
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np

from dpaudit.audit.adapter import Claim, TrainerAdapter, to_flat
from dpaudit.audit.certify import Certified, certify, claim_family
from dpaudit.audit.probe_model import (
    LinearProbe,
    device_of,
    dirac_batch,
    linear_loss,
    run_generator,
)
from dpaudit.audit.simulate import (
    Effect,
    Progress,
    batched_multi_run,
    llr,
    not_reached,
    reach_effect,
    run_batches,
    supports_batched,
)
from dpaudit.audit.verdict import INCONCLUSIVE, PASS, VIOLATION, CheckResult
from dpaudit.executors import chunks, make_executor, share

__all__ = ["MultiRunData", "canary_audit", "canary_scores", "dirac_run", "gdp_route", "llr", "run_batches"]


@dataclass(frozen=True)
class MultiRunData:
    """Scores of the runs with (``s_in``) and without (``s_out``) the canary, the canary's
    measured effect, and how they were simulated."""

    s_in: np.ndarray
    s_out: np.ndarray
    effect: Effect
    trainer_sampler: bool
    batched: bool


def dirac_run(adapter: TrainerAdapter, seed: int, with_canary: bool, steps: int,
              dim: int = 2) -> tuple[float, bool, Effect]:
    """One simulated training run on a 2-coordinate LinearProbe; returns (likelihood-ratio
    score, trainer sampler used, measured effect of the canary)."""
    claim = adapter.claim()
    batches, own = run_batches(adapter, claim, claim.dataset_size, steps, seed)
    dev = device_of(adapter)
    gen = run_generator(seed, dev)
    model = LinearProbe(dim).to(dev)
    scale = claim.expected_batch_size / claim.clip
    obs = np.empty(len(batches))
    present = np.zeros(len(batches), dtype=bool)
    for t, bt in enumerate(batches):
        present[t] = bool(with_canary and np.any(bt == 0))
        n_fill = max(1, len(bt) - int(present[t]))
        x, y = dirac_batch(dim, n_fill, [0] if present[t] else [], claim.clip, dev)
        u = to_flat(adapter.privatized_gradient(model, x, y, loss_fn=linear_loss, generator=gen, step=t))
        obs[t] = float(u[0]) * scale
    effect = Effect.of(obs, present) if with_canary else Effect()
    return float(np.sum(llr(obs, claim.sample_rate, claim.noise_multiplier))), own, effect


def _run_chunk(adapter: TrainerAdapter, seeds: list[int], flags: list[bool], steps: int) -> list[tuple[float, bool, Effect]]:
    import multiprocessing

    if multiprocessing.parent_process() is not None:  # a pool worker: one thread each
        import torch

        torch.set_num_threads(1)
    return [dirac_run(adapter, s, f, steps) for s, f in zip(seeds, flags)]


def _loop_multi_run(adapter: TrainerAdapter, runs: int, seed: int, steps: int, executor: str | Executor | None,
                    workers: int | None, progress: Progress | None) -> MultiRunData:
    total = 2 * runs
    seeds = [seed * 1_000_003 + 7919 * i + 1 for i in range(total)]
    flags = [i % 2 == 0 for i in range(total)]
    ex = make_executor(executor, workers)
    n_parts = 1 if executor in (None, "inline") else 4 * (workers or 4)
    parts = chunks(total, max(n_parts, min(total, 50)))
    try:
        shared = share(ex, adapter)  # Ray: stored once, not once per chunk
        futs = [ex.submit(_run_chunk, shared, [seeds[i] for i in r], [flags[i] for i in r], steps) for r in parts]
        res: list[tuple[float, bool, Effect]] = []
        for k, f in enumerate(futs):
            res.extend(f.result())
            if progress is not None:
                progress(k + 1, len(futs))
    finally:  # an executor made here: cancel what is left if a run failed or on Ctrl-C
        if not isinstance(executor, Executor):
            ex.shutdown(cancel_futures=True)
    scores = np.array([r[0] for r in res])
    fl = np.array(flags)
    effect = sum((r[2] for r in res), Effect())
    return MultiRunData(scores[fl], scores[~fl], effect, all(r[1] for r in res), False)


def multi_run_data(adapter: TrainerAdapter, *, runs: int, seed: int = 0, steps: int | None = None,
                   executor: str | Executor | None = "inline", workers: int | None = None,
                   progress: Progress | None = None) -> MultiRunData:
    """``runs`` simulated runs per world (batched instrument when the adapter opts in)."""
    claim = adapter.claim()
    t_steps = int(steps or claim.steps)
    if supports_batched(adapter):
        s_in, s_out, effect = batched_multi_run(adapter, claim, int(runs), t_steps, seed, progress)
        return MultiRunData(s_in, s_out, effect, False, True)
    return _loop_multi_run(adapter, int(runs), seed, t_steps, executor, workers, progress)


def canary_scores(adapter: TrainerAdapter, *, runs: int, seed: int = 0, steps: int | None = None,
                  executor: str | Executor | None = "inline", workers: int | None = None) -> tuple[np.ndarray, np.ndarray, bool]:
    """``runs`` runs per world; returns (scores with canary, scores without, trainer sampler used)."""
    d = multi_run_data(adapter, runs=runs, seed=seed, steps=steps, executor=executor, workers=workers)
    return d.s_in, d.s_out, d.trainer_sampler


def gdp_route(in_scores: np.ndarray, out_scores: np.ndarray, delta: float, alpha: float,
              threshold: float = 0.0) -> dict[str, float]:
    """GDP-route *estimate* (module docstring): mu lower bound at one a-priori threshold and
    the (eps, delta) of that mu-GDP curve. Exact for unsubsampled Gaussian mechanisms; under
    subsampling it assumes the curve is GDP (the CLT of Dong et al. 2022, Sec. 3), so it is
    reported, never used for a verdict."""
    from scipy.stats import norm

    from dpaudit.stats import clopper_pearson, gdp_epsilon

    n1, n0 = len(in_scores), len(out_scores)
    fp = int(np.sum(out_scores > threshold))
    fn = int(np.sum(in_scores <= threshold))
    fpr_hi = clopper_pearson(fp, n0, 1 - alpha, two_sided=True)[1]
    fnr_hi = clopper_pearson(fn, n1, 1 - alpha, two_sided=True)[1]
    mu_lb = max(0.0, float(norm.isf(fpr_hi) - norm.ppf(fnr_hi)))
    fpr = min(max(fp / n0, 0.5 / n0), 1 - 0.5 / n0)
    fnr = min(max(fn / n1, 0.5 / n1), 1 - 0.5 / n1)
    mu_hat = max(0.0, float(norm.isf(fpr) - norm.ppf(fnr)))
    return {
        "fpr": fp / n0, "fnr": fn / n1, "fpr_upper": fpr_hi, "fnr_upper": fnr_hi,
        "mu_lower": mu_lb, "mu_hat": mu_hat,
        "epsilon_lower": gdp_epsilon(mu_lb, delta) if mu_lb > 0 else 0.0,
        "epsilon_hat": gdp_epsilon(mu_hat, delta) if mu_hat > 0 else 0.0,
    }


def _ceiling(family: Any, claim: Claim, runs: int, alpha: float, n_ranks: int) -> dict[str, Any]:
    """What a perfectly separating outcome of this size would certify, and the runs per
    world below which the claim cannot be rejected at all."""
    from scipy.special import ndtri

    from dpaudit.stats.fdp_test import perfect_corner, runs_needed

    p0, p1 = perfect_corner(runs, runs, alpha, n_ranks)
    mu = float(ndtri(1.0 - p0) - ndtri(p1))
    ceil = certify(family, claim, lambda c: bool(c(p0) > p1), mu_lower=mu)
    claim_curve = family.curve(ceil.claim_scale)
    return {"epsilon": ceil.epsilon, "corner": [p0, p1],
            "runs_needed": runs_needed(claim_curve, alpha, n_ranks)}


def _not_reached_result(reason: str, details: dict[str, Any]) -> CheckResult:
    return CheckResult("canary_multi_run", INCONCLUSIVE, reason, None, details)


def _evidence(claim: Claim, cert: Certified, p: float, cp: float, gdp: dict[str, float], runs: int, steps: int,
              batched: bool) -> str:
    mu = f", mu_lb={cert.mu:.3g}" if cert.mu is not None else ""
    how = "batched" if batched else "one by one"
    return (f"eps_lb={cert.epsilon:.3g} (f-DP test of the claimed mechanism's curve{mu}) vs claimed "
            f"{claim.epsilon:.3g}; p={p:.2g} for the claimed curve; cp-bonferroni eps_lb={cp:.3g}; GDP-route "
            f"estimate {gdp['epsilon_hat']:.3g}; {runs} runs per world x {steps} steps ({how})")


def canary_audit(adapter: TrainerAdapter, *, alpha: float, runs: int = 500, seed: int = 0,
                 steps: int | None = None, executor: str | Executor | None = "inline",
                 workers: int | None = None, progress: Progress | None = None) -> CheckResult:
    """Multi-run Dirac canary audit at level ``alpha`` (module docstring)."""
    from dpaudit.stats.fdp_test import curve_p_value, gdp_mu_lower, rate_corners

    claim = adapter.claim()
    t0 = time.perf_counter()
    t_steps = int(steps or claim.steps)
    reason = not_reached(reach_effect(adapter, claim, seed + 99))
    if reason is not None:
        return _not_reached_result(reason, {"epsilon_lower_bound": 0.0, "method": "fdp-multi-run", "p_value": None,
                                            "claimed_epsilon": claim.epsilon})
    data = multi_run_data(adapter, runs=runs, seed=seed, steps=t_steps, executor=executor, workers=workers,
                          progress=progress)
    d_eff, se_eff = data.effect.estimate()
    details: dict[str, Any] = {"runs_per_world": runs, "steps": t_steps, "batched": data.batched,
                               "trainer_sampler": data.trainer_sampler, "claimed_epsilon": claim.epsilon,
                               "canary_effect": {"mean": d_eff, "se": se_eff}}
    reason = not_reached(data.effect)
    if reason is not None:
        details.update({"epsilon_lower_bound": 0.0, "method": "fdp-multi-run", "p_value": None})
        return _not_reached_result(reason, details)
    corners = rate_corners(data.s_in, data.s_out, alpha)
    family = claim_family(claim)
    cert = certify(family, claim, corners.rejects, mu_lower=gdp_mu_lower(corners) if family.gaussian else None)
    p = curve_p_value(family.curve(cert.claim_scale), corners)
    cp = corners.cp_epsilon(claim.delta)
    gdp = gdp_route(data.s_in, data.s_out, claim.delta, alpha)
    ceiling = _ceiling(family, claim, runs, alpha, corners.ranks.size)
    details.update({
        "epsilon_lower_bound": cert.epsilon, "method": "fdp-multi-run", "p_value": p,
        "mu_lower": cert.mu, "certified": cert.to_dict(),
        "cp_bonferroni": {"epsilon_lower_bound": cp, "method": "cp-bonferroni"},
        "gdp_estimate": {**gdp, "method": "gdp-route (estimate)"},
        "ceiling": ceiling, "corners": corners.to_dict(), "seconds": time.perf_counter() - t0,
        "ratio": cert.epsilon / claim.epsilon if claim.epsilon > 0 else math.inf,
    })
    notes: list[str] = ["the GDP-route figure is an estimate (it assumes a GDP-shaped curve) and decides nothing"]
    if data.batched:
        notes.append("runs simulated on the batched instrument with the claimed sampler (the sampler check "
                     "audits the trainer's own)")
    elif not data.trainer_sampler:
        notes.append("batches simulated from the claimed sampler (the trainer's sampler was not used)")
    if t_steps < claim.steps:
        notes.append(f"audited the first {t_steps} of {claim.steps} steps against the whole run's curve "
                     "(valid: a prefix is a post-processing of the run; looser)")
    if ceiling["epsilon"] < claim.epsilon:
        notes.append(f"{runs} runs per world cannot certify eps_lb above {ceiling['epsilon']:.3g} even with perfect "
                     f"separation; rejecting the claim needs at least {ceiling['runs_needed']} runs per world")
    verdict = VIOLATION if cert.epsilon > claim.epsilon else PASS
    ev = _evidence(claim, cert, p, cp, gdp, runs, t_steps, data.batched)
    return CheckResult("canary_multi_run", verdict, ev, 1 - alpha, details, tuple(notes), p_value=p)
