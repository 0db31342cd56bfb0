"""Run a set of checks against a trainer and collect the verdicts.

The family-wise false-alarm probability is ``1 - confidence`` (default 0.999): it is split
evenly over the *statistical* checks that run (Bonferroni; the exact checks need none), so a
correct trainer passes every check with probability at least ``confidence``.

Before any check runs, the adapter is copied once (``copy.deepcopy``): the fresh-noise probe
starts every simulated run from a new copy of that snapshot, as a new training run would
start (state such as a step counter starts again).
"""

from __future__ import annotations

import copy
import inspect
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any

from dpaudit.audit.adapter import TrainerAdapter
from dpaudit.audit.checks import (
    DEFAULT_CANARIES,
    DEFAULT_CONFIDENCE,
    DEFAULT_MAX_CANARY_STEPS,
    DEFAULT_RUNS,
    STATISTICAL,
    check_options,
    resolve_checks,
)
from dpaudit.audit.verdict import INCONCLUSIVE, AuditReport, CheckResult
from dpaudit.errors import InvalidParameterError

#: ``progress(check, done, total)``: called when a check starts (done = 0) and as its work
#: advances; ``done == total`` when it is finished.
AuditProgress = Callable[[str, int, int], None]


def _progress3(progress: Callable[..., None] | None) -> AuditProgress | None:
    """Accept the three-argument callback, or a one-argument one (the check's name, as
    before): that one is called once per check, when it starts."""
    if progress is None:
        return None
    try:
        params = [p for p in inspect.signature(progress).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
    except (TypeError, ValueError):
        params = []
    if len(params) == 1 and params[0].kind != params[0].VAR_POSITIONAL:
        def one(name: str, done: int, total: int) -> None:
            if done == 0:
                progress(name)

        return one
    return progress


def _snapshot(adapter: TrainerAdapter) -> Callable[[], TrainerAdapter] | None:
    try:
        pristine = copy.deepcopy(adapter)
        copy.deepcopy(pristine)
    except Exception:  # noqa: BLE001 - an uncopyable adapter: the probe says so in a note
        return None
    return lambda: copy.deepcopy(pristine)


def _executor_failure(exc: BaseException) -> str | None:
    """A readable sentence for a process pool that could not start its workers."""
    from concurrent.futures.process import BrokenProcessPool

    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, BrokenProcessPool) or "bootstrapping phase" in text or "freeze_support" in text:
        return ("the process executor's workers could not start: they re-import the script that started the "
                "audit, so a script must run it under `if __name__ == \"__main__\":` (or use the thread or "
                f"inline executor) [{text}]")
    return None


def audit(
    adapter: TrainerAdapter,
    *,
    checks: str | Sequence[str] | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
    runs: int | None = None,
    canaries: int | None = None,
    canary_steps: int | None = None,
    seed: int = 0,
    executor: str | Executor | None = "inline",
    workers: int | None = None,
    progress: Callable[..., None] | None = None,
) -> AuditReport:
    """Audit ``adapter``: probes first, then the canary audits; one verdict per check.

    Args:
        checks: which checks (see :func:`resolve_checks`); default all.
        confidence: family-wise confidence (0.5 <= c < 1), Bonferroni-split over the
            statistical checks.
        runs: simulated training runs *per world* for the multi-run canary audit; default
            2000 when the adapter opts in to the batched instrument, else 200.
        canaries: canaries of the one-run audit; default 10000 (batched) or 1000.
        canary_steps: audit only the first steps of the run (cheaper, looser; still valid);
            default ``min(claim.steps, DEFAULT_MAX_CANARY_STEPS)``.
        seed: seeds every random choice of the auditor.
        executor: ``inline`` / ``thread`` / ``process`` or a ``concurrent.futures.Executor``
            for the per-run loop of adapters without the batched instrument.
        progress: ``progress(check, done, total)`` as each check advances (or a one-argument
            callable, called with each check's name when it starts).
    """
    from dpaudit.audit.simulate import supports_batched

    check_options(confidence, runs, canaries, canary_steps)
    names = resolve_checks(checks)
    claim = adapter.claim()
    mode = "batched" if supports_batched(adapter) else "loop"
    n_runs = int(runs) if runs is not None else DEFAULT_RUNS[mode]
    n_canaries = int(canaries) if canaries is not None else DEFAULT_CANARIES[mode]
    if canary_steps is None:
        canary_steps = min(int(claim.steps), DEFAULT_MAX_CANARY_STEPS)
    n_stat = sum(n in STATISTICAL for n in names)
    alpha = (1.0 - float(confidence)) / max(1, n_stat)
    fresh = _snapshot(adapter) if "fresh_noise" in names else None
    report = _progress3(progress)
    t0 = time.perf_counter()
    results = []
    for name in names:
        def sub(done: int, total: int, _name: str = name) -> None:
            if report is not None:
                report(_name, done, total)

        sub(0, 1)
        t_check = time.perf_counter()
        results.append(_run_one(name, _table(adapter, claim, alpha, seed, n_runs, n_canaries, int(canary_steps),
                                             executor, workers, fresh, sub)))
        results[-1].details.setdefault("seconds", time.perf_counter() - t_check)
        sub(1, 1)
    return AuditReport(
        trainer=getattr(adapter, "name", type(adapter).__name__),
        claim=claim.to_dict(),
        checks=tuple(results),
        confidence=float(confidence),
        seconds=time.perf_counter() - t0,
    )


def _table(adapter: TrainerAdapter, claim: Any, alpha: float, seed: int, runs: int, canaries: int, steps: int,
           executor: str | Executor | None, workers: int | None, fresh: Callable[[], TrainerAdapter] | None,
           sub: Callable[[int, int], None]) -> dict[str, Callable[[], CheckResult]]:
    from dpaudit.audit import canaries as canary_mod
    from dpaudit.audit import one_run, probes, reaccount

    return {
        "accounting": lambda: reaccount.accounting_check(claim),
        "sensitivity": lambda: probes.sensitivity_probe(adapter, alpha=alpha, seed=seed),
        "noise_variance": lambda: probes.noise_variance_probe(adapter, alpha=alpha, seed=seed),
        "fresh_noise": lambda: probes.fresh_noise_probe(adapter, alpha=alpha, seed=seed, fresh=fresh),
        "per_sample_gradients": lambda: probes.per_sample_probe(adapter, alpha=alpha, seed=seed),
        "sampler": lambda: probes.sampler_probe(adapter, alpha=alpha, seed=seed),
        "canary_multi_run": lambda: canary_mod.canary_audit(
            adapter, alpha=alpha, runs=runs, seed=seed, steps=steps, executor=executor, workers=workers,
            progress=sub),
        "canary_one_run": lambda: one_run.one_run_audit(
            adapter, alpha=alpha, canaries=canaries, seed=seed, steps=steps, progress=sub),
    }


def _run_one(name: str, table: dict[str, Callable[[], CheckResult]]) -> CheckResult:
    try:
        return table[name]()
    except InvalidParameterError:
        raise
    except Exception as exc:  # noqa: BLE001 - a trainer that crashes on a probe is reported
        why = _executor_failure(exc) or f"the check could not run: {type(exc).__name__}: {exc}"
        return CheckResult(name, INCONCLUSIVE, why)
