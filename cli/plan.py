"""``dpaudit plan``: per-epoch noise schedules that spend exactly a target (epsilon, delta).

Thin click layer over :mod:`dpaudit.allocation`; never imports torch (nor scipy.optimize).
Outputs (``--out``, ``--plot``) are checked before solving and written all-or-nothing.
"""

from __future__ import annotations

from typing import Any

import click

from cli.common import echo_json, progress_bars
from dpaudit.accounting import (
    BATCHING_CHOICES,
    DEFAULT_DELTA,
    SOUND_ACCOUNTANTS,
    STEPS_RULES,
    TIGHTEST,
)
from dpaudit.accounting.events import DEFAULT_BATCH_SIZE, DEFAULT_DATASET_SIZE, DEFAULT_EPOCHS
from dpaudit.allocation.schedules import SCHEDULES


def _f(x: float | None, digits: int = 5) -> str:
    if x is None:
        return "-"
    return f"{x:.{digits}g}"


def _header(plan: Any, sample_rate_given: bool) -> list[str]:
    run = plan.run
    if run.dataset_size and run.batch_size and not sample_rate_given:
        size = f"dataset size {run.dataset_size}, batch size {run.batch_size} (q = {run.sample_rate:.6g})"
    else:
        size = f"sample rate q = {run.sample_rate:.6g}"
    lines = [
        f"target: epsilon = {plan.target_epsilon:g}, delta = {plan.delta:g}",
        f"run: {size}, {run.epochs} epochs x {run.steps_per_epoch} steps "
        f"({run.total_steps} steps), batching {run.batching}",
        f"accountant: {plan.accountant}; schedule: {plan.schedule.name} ({plan.schedule.describe()})",
        f"sigma_0 = {plan.scale:.6g}; epsilon spent = {plan.epsilon:.6g} "
        f"({plan.evaluations} accountant evaluations)",
    ]
    if plan.runtime_rule is not None:
        r = plan.runtime_rule
        lines.append(
            f"runtime rule: sigma *= {r.factor:g} after {r.patience} epochs without validation "
            f"improvement, sigma >= {r.min_sigma:.6g}; worst case epsilon = {plan.epsilon:.6g}, "
            f"best case (no decay) = {_f(plan.best_case_epsilon, 6)}"
        )
    return lines


def _check_outputs(out: str | None, plot: str | None) -> None:
    """Refuse unwritable outputs and a missing matplotlib before any solving."""
    from dpaudit.io import check_writable
    from dpaudit.plotting import require_matplotlib

    if plot is not None:
        require_matplotlib("--plot")
        check_writable(plot, "plot")
    if out is not None:
        check_writable(out, "plan file")


def _write_outputs(plans: list[Any], out: str | None, plot: str | None) -> None:
    """Write the plan file and/or the plot, all or nothing."""
    from dpaudit.allocation.plot import plot_plans
    from dpaudit.io import atomic_outputs

    targets = [p for p in (out, plot) if p is not None]
    if not targets:
        return
    with atomic_outputs(targets) as tmps:
        paths = dict(zip(targets, tmps))
        if out is not None:
            paths[out].write_text(plans[0].to_json() + "\n", encoding="utf-8")
        if plot is not None:
            plot_plans(plans, paths[plot])


def _print_comparison(plans: list[Any], accountant: str, sample_rate_given: bool) -> None:
    for line in _header(plans[0], sample_rate_given)[:2]:
        click.echo(line)
    click.echo(f"accountant: {accountant}")
    click.echo("")
    click.echo(f"{'schedule':<11} {'sigma first':>11} {'sigma last':>10} {'sigma mean':>10} "
               f"{'eps spent':>10}  shape")
    for p in plans:
        sig = p.noise_multipliers
        click.echo(f"{p.schedule.name:<11} {sig[0]:>11.4f} {sig[-1]:>10.4f} "
                   f"{sum(sig) / len(sig):>10.4f} {p.epsilon:>10.5f}  {p.schedule.describe()}")
    for p in plans:
        if p.best_case_epsilon is not None:
            click.echo(f"\nvalidation: epsilon is the worst case; best case (no decay) "
                       f"spends {p.best_case_epsilon:.5f}")


def _print_plan(p: Any, sample_rate_given: bool) -> None:
    for line in _header(p, sample_rate_given):
        click.echo(line)
    click.echo("")
    click.echo(f"{'epoch':>5} {'sigma':>10} {'eps spent':>10}")
    cum = p.cumulative_epsilon or (None,) * p.epochs
    for e, (s, c) in enumerate(zip(p.noise_multipliers, cum), start=1):
        click.echo(f"{e:>5} {s:>10.5f} {_f(c, 6):>10}")
    for n in p.notes:
        click.echo(f"note: {n}")


@click.command("plan")
@click.option("--epsilon", "target", type=float, required=True,
              help="Target epsilon to spend (the plan spends it within 1e-3, never above).")
@click.option("--delta", "-d", type=float, default=DEFAULT_DELTA, show_default=True, help="Target delta.")
@click.option("--dataset-size", "-n", type=int, default=None,
              help=f"Number of training examples N (default {DEFAULT_DATASET_SIZE} unless --sample-rate).")
@click.option("--batch-size", "-b", type=int, default=None,
              help=f"(Expected) batch size B (default {DEFAULT_BATCH_SIZE} unless --sample-rate).")
@click.option("--sample-rate", "-q", type=float, default=None,
              help="Sampling rate q = B/N; replaces --batch-size.")
@click.option("--epochs", type=float, default=DEFAULT_EPOCHS, show_default=True, help="Number of epochs.")
@click.option("--steps-rule", type=click.Choice(STEPS_RULES), default=STEPS_RULES[0], show_default=True,
              help="How --epochs become steps: whole_epochs = epochs x steps per epoch (what "
                   "`dpaudit train` runs); expected = floor(epochs x N/B) (Opacus).")
@click.option("--batching", type=click.Choice(BATCHING_CHOICES), default=BATCHING_CHOICES[0],
              show_default=True,
              help="How batches are drawn: poisson, shuffle or balls-in-bins (also balls_in_bins).")
@click.option("--accountant", "-a", type=click.Choice(SOUND_ACCOUNTANTS), default=TIGHTEST,
              show_default=True, help=f"Accountant ({TIGHTEST} = the tightest sound one).")
@click.option("--schedule", type=click.Choice(list(SCHEDULES)), default="constant",
              show_default=True, help="Noise schedule family.")
@click.option("--k", "k", type=float, default=None,
              help="Decay rate: time (sigma_0/(1+k t), default 0.05), exp (sigma_0 e^(-k t), "
                   "default 0.03); step factor (sigma_0 k^floor(t/period), default 0.7).")
@click.option("--period", type=int, default=None,
              help="step: epochs per step (default 10); poly: decay epochs (default epochs-1).")
@click.option("--end-ratio", type=float, default=None,
              help="poly: sigma_end / sigma_0 (default 0.5).")
@click.option("--power", type=float, default=None, help="poly: exponent (default 1).")
@click.option("--factor", type=float, default=None,
              help="validation: sigma multiplier on a plateau (default 0.9).")
@click.option("--patience", type=int, default=None,
              help="validation: epochs without improvement before decaying (default 3).")
@click.option("--min-ratio", type=float, default=None,
              help="validation: lowest sigma / sigma_0 (default 0.5).")
@click.option("--compare-schedules", is_flag=True,
              help="Solve every schedule (default parameters) side by side.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.option("--out", "out", type=click.Path(dir_okay=False), default=None,
              help="Save the plan as JSON (for `dpaudit train --plan` / `dpaudit account --plan`).")
@click.option("--plot", "plot", type=click.Path(dir_okay=False), default=None,
              help="Save a PNG of sigma and cumulative epsilon per epoch (needs matplotlib).")
def plan(target, delta, dataset_size, batch_size, sample_rate, epochs, steps_rule, batching,
         accountant, schedule, k, period, end_ratio, power, factor, patience, min_ratio,
         compare_schedules, as_json, out, plot):
    """Plan a noise schedule that spends exactly a target (epsilon, delta).

    Solves the schedule's scale sigma_0 so that the planned run spends epsilon within 1e-3
    of the target and never above it, under the chosen accountant and batching.
    """
    from dpaudit.accounting.events import fill_shape_defaults
    from dpaudit.allocation import compare_schedules as compare
    from dpaudit.allocation import make_schedule, solve_plan

    params = dict(k=k, period=period, end_ratio=end_ratio, power=power, factor=factor,
                  patience=patience, min_ratio=min_ratio)
    if compare_schedules and out is not None:
        raise click.UsageError("--out saves one plan; drop --compare-schedules")
    if compare_schedules and any(v is not None for v in params.values()):
        raise click.UsageError("--compare-schedules uses default schedule parameters")
    _check_outputs(out, plot)
    n, b, q = fill_shape_defaults(dataset_size, batch_size, sample_rate)
    common = dict(dataset_size=n, batch_size=b, sample_rate=q, epochs=epochs, batching=batching,
                  accountant=accountant, steps_rule=steps_rule)
    sched = None if compare_schedules else make_schedule(schedule, **params)
    with progress_bars("point", unit_if_unknown="eval", delay=1.0) as progress:
        if sched is None:
            plans = compare(target, delta, progress=progress, **common)
        else:
            plans = [solve_plan(target, delta, schedule=sched, progress=progress, **common)]
    _write_outputs(plans, out, plot)
    if as_json:
        echo_json({"schedules": [p.to_dict() for p in plans]} if compare_schedules else plans[0].to_dict())
    elif compare_schedules:
        _print_comparison(plans, accountant, sample_rate is not None)
    else:
        _print_plan(plans[0], sample_rate is not None)
    if not as_json:
        if out:
            click.echo(f"plan saved to {out}")
        if plot:
            click.echo(f"plot saved to {plot}")
