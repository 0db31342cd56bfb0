"""Multi-run white-box audit with a Dirac gradient canary (Nasr et al. 2023).

Threat model (Nasr, Hayes, Steinke, Balle, Tramèr, Jagielski, Carlini, Terzis 2023, "Tight
Auditing of Differentially Private Machine Learning", USENIX Security, arXiv:2302.07956;
their strongest threat model, white-box gradient canaries with all updates observed): the
adversary chooses the canary's gradient and sees every intermediate update (white box);
all other examples have zero gradient (:class:`~dpaudit.audit.probe_model.LinearProbe`
fillers). The canary is the Dirac gradient ``C·e_0``. It is in the dataset (world 1) or not
(world 0); the trainer's own sampler decides when it is in a batch. This is the strongest
adversary DP-SGD's analysis covers, so for a correct trainer the audit can approach the
claimed ε, and any ε lower bound above the claim is a violation.

Per step t the adversary reads ``o_t = u_t[0]·B/C`` (in units of the sensitivity); under
the claim ``o_t ~ N(0, σ²)`` in world 0 and the mixture ``(1-q) N(0, σ²) + q N(1, σ²)`` in
world 1. The score of a run is the claimed mechanism's log-likelihood ratio summed over
steps (Neyman-Pearson optimal for the claimed mechanism):

    s = Σ_t log(1 - q + q·exp((2 o_t - 1) / (2σ²)))

(a fixed function of the claim -- never fitted on the audit's data -- so any bug that
changes the distributions can only make the two worlds easier to tell apart or leave them
as they are).

Two estimates from R runs per world:

* **Clopper-Pearson route** (rigorous, drives the verdict): the empirical ε lower bound
  ``max(ln((1-δ-FNR̄)/FPR̄), ln((1-δ-FPR̄)/FNR̄))`` (Kairouz et al. 2015, Thm 2.1) with
  Clopper-Pearson upper bounds and a valid (Bonferroni over a data-independent grid)
  threshold choice -- :func:`dpaudit.stats.epsilon_lower_bound_from_scores`.
* **GDP route** (estimate; Nasr et al. 2023's GDP-based ε estimation): assume the trade-off curve is μ-GDP
  (Dong, Roth, Su 2022, Def. 2.7), bound μ from one a-priori threshold (s = 0, the
  likelihood-ratio midpoint): ``μ̄ = Φ⁻¹(1-FPR̄) - Φ⁻¹(FNR̄)`` with Clopper-Pearson bounds
  (each at α/2), and convert with Cor. 2.13: ``δ(ε) = Φ(-ε/μ + μ/2) - e^ε Φ(-ε/μ - μ/2)``.
  Exact for Gaussian mechanisms without subsampling; for subsampled mechanisms it rests on
  the GDP central limit theorem (Dong, Roth, Su 2022, Sec. 3 and Sec. 5 for subsampled SGD), so it is reported, not used
  for the verdict.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import Executor
from typing import Any

import numpy as np

from dpaudit.audit.adapter import (
    Claim,
    TrainerAdapter,
    optional_method,
    poisson_batches,
    shuffle_batches,
    to_flat,
)
from dpaudit.audit.probe_model import (
    LinearProbe,
    device_of,
    dirac_batch,
    linear_loss,
    run_generator,
)
from dpaudit.audit.verdict import PASS, VIOLATION, CheckResult
from dpaudit.executors import chunks, make_executor, share

#: Use the trainer's own sampler while ``dataset_size * steps`` stays below this (cost).
SAMPLER_BUDGET = 20_000_000


def llr(obs: np.ndarray, sample_rate: float, noise_multiplier: float) -> np.ndarray:
    """Per-observation log-likelihood ratio of ``(1-q)N(0,σ²) + qN(1,σ²)`` to ``N(0,σ²)``."""
    z = (2.0 * np.asarray(obs, dtype=np.float64) - 1.0) / (2.0 * noise_multiplier**2)
    if sample_rate >= 1.0:
        return z
    return np.logaddexp(math.log1p(-sample_rate), math.log(sample_rate) + z)


def run_batches(adapter: TrainerAdapter, claim: Claim, n: int, steps: int, seed: int) -> tuple[list[np.ndarray], bool]:
    """The trainer's batches if it has a sampler and the cost is moderate, else the claimed
    sampler simulated here. Returns ``(batches, used_trainer_sampler)``."""
    sampler = optional_method(adapter, "sample_batches")
    if sampler is not None and n * steps <= SAMPLER_BUDGET:
        return [np.asarray(b, dtype=np.int64).reshape(-1) for b in sampler(n, steps, seed)][:steps], True
    if claim.batching == "poisson":
        return poisson_batches(n, steps, claim.sample_rate, seed), False
    return shuffle_batches(n, steps, claim.batch_size, seed), False


def dirac_run_score(adapter: TrainerAdapter, seed: int, with_canary: bool, steps: int, dim: int = 2) -> tuple[float, bool]:
    """One simulated training run; returns (likelihood-ratio score, used trainer sampler)."""
    claim = adapter.claim()
    n = claim.dataset_size
    batches, own = run_batches(adapter, claim, n, steps, seed)
    dev = device_of(adapter)
    gen = run_generator(seed, dev)
    model = LinearProbe(dim).to(dev)
    scale = claim.expected_batch_size / claim.clip
    obs = np.empty(len(batches))
    for t, bt in enumerate(batches):
        has = bool(with_canary and np.any(bt == 0))
        n_fill = max(1, len(bt) - int(has))
        x, y = dirac_batch(dim, n_fill, [0] if has else [], claim.clip, dev)
        u = to_flat(adapter.privatized_gradient(model, x, y, loss_fn=linear_loss, generator=gen, step=t))
        obs[t] = float(u[0]) * scale
    return float(np.sum(llr(obs, claim.sample_rate, claim.noise_multiplier))), own


def _run_chunk(adapter: TrainerAdapter, seeds: list[int], flags: list[bool], steps: int) -> list[tuple[float, bool]]:
    import multiprocessing

    if multiprocessing.parent_process() is not None:  # a pool worker: one thread each
        import torch

        torch.set_num_threads(1)
    return [dirac_run_score(adapter, s, f, steps) for s, f in zip(seeds, flags)]


def gdp_route(in_scores: np.ndarray, out_scores: np.ndarray, delta: float, alpha: float,
              threshold: float = 0.0) -> dict[str, float]:
    """μ lower bound and GDP ε estimate from one a-priori threshold (see module docstring)."""
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


def canary_scores(adapter: TrainerAdapter, *, runs: int, seed: int = 0, steps: int | None = None,
                  executor: str | Executor | None = "inline", workers: int | None = None) -> tuple[np.ndarray, np.ndarray, bool]:
    """``runs`` runs per world; returns (scores with canary, scores without, trainer sampler used)."""
    claim = adapter.claim()
    t_steps = int(steps or claim.steps)
    total = 2 * runs
    seeds = [seed * 1_000_003 + 7919 * i + 1 for i in range(total)]
    flags = [i % 2 == 0 for i in range(total)]
    ex = make_executor(executor, workers)
    n_parts = 1 if executor in (None, "inline") else 4 * (workers or 4)
    shared = share(ex, adapter)  # Ray: stored once, not once per chunk
    futs = [ex.submit(_run_chunk, shared, [seeds[i] for i in r], [flags[i] for i in r], t_steps)
            for r in chunks(total, n_parts)]
    res: list[tuple[float, bool]] = []
    try:
        for f in futs:
            res.extend(f.result())
    finally:  # an executor made here: cancel what is left if a run failed or on Ctrl-C
        if not isinstance(executor, Executor):
            ex.shutdown(cancel_futures=True)
    scores = np.array([r[0] for r in res])
    fl = np.array(flags)
    return scores[fl], scores[~fl], all(r[1] for r in res)


def canary_audit(adapter: TrainerAdapter, *, alpha: float, runs: int = 500, seed: int = 0,
                 steps: int | None = None, executor: str | Executor | None = "inline",
                 workers: int | None = None) -> CheckResult:
    """Multi-run Dirac canary audit; ``violation`` if the Clopper-Pearson ε lower bound (at
    confidence 1 - alpha) exceeds the claimed ε."""
    from dpaudit.stats import epsilon_lower_bound_from_scores

    claim = adapter.claim()
    t0 = time.perf_counter()
    s_in, s_out, own = canary_scores(adapter, runs=runs, seed=seed, steps=steps, executor=executor, workers=workers)
    lb = epsilon_lower_bound_from_scores(s_in, s_out, delta=claim.delta, confidence=1 - alpha, method="bonferroni")
    gdp = gdp_route(s_in, s_out, claim.delta, alpha)
    secs = time.perf_counter() - t0
    t_steps = int(steps or claim.steps)
    details: dict[str, Any] = {
        "runs_per_world": runs, "steps": t_steps, "seconds": secs,
        "epsilon_lower_cp": lb.epsilon, "cp": lb.to_dict(), "gdp": gdp,
        "claimed_epsilon": claim.epsilon,
        "ratio_cp": lb.epsilon / claim.epsilon if claim.epsilon > 0 else math.inf,
        "ratio_gdp": gdp["epsilon_lower"] / claim.epsilon if claim.epsilon > 0 else math.inf,
        "trainer_sampler": own,
    }
    notes: list[str] = []
    if not own:
        notes.append("batches simulated from the claimed sampler (the trainer's sampler was not used)")
    if t_steps < claim.steps:
        notes.append(f"audited the first {t_steps} of {claim.steps} steps (a valid but looser lower bound)")
    ev = (f"eps_lb={lb.epsilon:.3g} (Clopper-Pearson) / GDP-route eps_lb={gdp['epsilon_lower']:.3g} "
          f"(mu_lb={gdp['mu_lower']:.3g}) vs claimed {claim.epsilon:.3g}; {runs} runs per world x {t_steps} steps")
    verdict = VIOLATION if lb.epsilon > claim.epsilon else PASS
    return CheckResult("canary_multi_run", verdict, ev, 1 - alpha, details, tuple(notes))
