"""Run a set of checks against a trainer and collect the verdicts.

The family-wise false-alarm probability is ``1 - confidence``: it is split evenly over the
checks that run (Bonferroni), so a correct trainer passes *every* check with probability at
least ``confidence``. Exact (deterministic) checks spend their share without needing it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor

from dpaudit.audit.adapter import TrainerAdapter
from dpaudit.audit.checks import DEFAULT_MAX_CANARY_STEPS, check_options, resolve_checks
from dpaudit.audit.verdict import INCONCLUSIVE, AuditReport, CheckResult
from dpaudit.errors import InvalidParameterError


def audit(
    adapter: TrainerAdapter,
    *,
    checks: str | Sequence[str] | None = None,
    confidence: float = 0.95,
    runs: int = 200,
    canaries: int = 1000,
    canary_steps: int | None = None,
    seed: int = 0,
    executor: str | Executor | None = "inline",
    workers: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> AuditReport:
    """Audit ``adapter``: probes first, then the canary audits; one verdict per check.

    Args:
        checks: which checks (see :func:`resolve_checks`); default all.
        confidence: family-wise confidence (0 < c < 1), Bonferroni-split over the checks.
        runs: simulated training runs *per world* for the multi-run canary audit.
        canaries: canaries of the one-run audit.
        canary_steps: audit only the first steps of the run (cheaper, looser; still valid);
            default ``min(claim.steps, DEFAULT_MAX_CANARY_STEPS)``.
        seed: seeds every random choice of the auditor.
        executor: ``inline`` / ``thread`` / ``process`` or a ``concurrent.futures.Executor``
            for the multi-run audit's runs.
        progress: called with each check's name before it runs.
    """
    from dpaudit.audit import canaries as canary_mod
    from dpaudit.audit import one_run, probes, reaccount

    check_options(confidence, runs, canaries, canary_steps)
    names = resolve_checks(checks)
    claim = adapter.claim()
    if canary_steps is None:
        canary_steps = min(int(claim.steps), DEFAULT_MAX_CANARY_STEPS)
    alpha = (1.0 - float(confidence)) / len(names)
    table: dict[str, Callable[[], CheckResult]] = {
        "accounting": lambda: reaccount.accounting_check(claim),
        "sensitivity": lambda: probes.sensitivity_probe(adapter, alpha=alpha, seed=seed),
        "noise_variance": lambda: probes.noise_variance_probe(adapter, alpha=alpha, seed=seed),
        "fresh_noise": lambda: probes.fresh_noise_probe(adapter, alpha=alpha, seed=seed),
        "per_sample_gradients": lambda: probes.per_sample_probe(adapter, alpha=alpha, seed=seed),
        "sampler": lambda: probes.sampler_probe(adapter, alpha=alpha, seed=seed),
        "canary_multi_run": lambda: canary_mod.canary_audit(
            adapter, alpha=alpha, runs=int(runs), seed=seed, steps=canary_steps, executor=executor, workers=workers),
        "canary_one_run": lambda: one_run.one_run_audit(
            adapter, alpha=alpha, canaries=int(canaries), seed=seed, steps=canary_steps),
    }
    t0 = time.perf_counter()
    results = []
    for name in names:
        if progress is not None:
            progress(name)
        try:
            results.append(table[name]())
        except InvalidParameterError:
            raise
        except Exception as exc:  # noqa: BLE001 - a trainer that crashes on a probe is reported
            results.append(CheckResult(name, INCONCLUSIVE, f"the check could not run: {type(exc).__name__}: {exc}"))
    return AuditReport(
        trainer=getattr(adapter, "name", type(adapter).__name__),
        claim=claim.to_dict(),
        checks=tuple(results),
        confidence=float(confidence),
        seconds=time.perf_counter() - t0,
    )
