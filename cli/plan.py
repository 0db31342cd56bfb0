"""``dpaudit plan``: per-epoch noise schedules that spend exactly a target (epsilon, delta).

Thin click layer over :mod:`dpaudit.allocation`; never imports torch (nor scipy.optimize).
"""

from __future__ import annotations

import click

from cli.common import echo_json

SCHEDULE_CHOICES = ["constant", "time", "exp", "step", "poly", "validation"]
ACCOUNTANT_CHOICES = ["rdp", "ma", "cdp", "pld"]
DEFAULT_DATASET_SIZE = 60000
DEFAULT_BATCH_SIZE = 256


def _f(x: float | None, digits: int = 5) -> str:
    if x is None:
        return "-"
    return f"{x:.{digits}g}"


def _header(plan, sample_rate_given: bool) -> list[str]:
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


def _plot(plans, path: str) -> None:
    from dpaudit.plotting import pyplot, save_figure

    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for p in plans:
        epochs = list(range(1, p.epochs + 1))
        ax1.plot(epochs, p.noise_multipliers, marker=".", label=p.schedule.name)
        if p.cumulative_epsilon:
            ax2.plot(epochs, p.cumulative_epsilon, marker=".", label=p.schedule.name)
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("noise multiplier sigma")
    ax1.set_title("noise per epoch")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel(f"epsilon spent (delta = {plans[0].delta:g})")
    ax2.axhline(plans[0].target_epsilon, color="grey", linestyle="--", linewidth=0.8)
    ax2.set_title(f"cumulative epsilon ({plans[0].accountant})")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    save_figure(fig, path)


@click.command("plan")
@click.option("--epsilon", "target", type=float, required=True,
              help="Target epsilon to spend (the plan spends it within 1e-3, never above).")
@click.option("--delta", "-d", type=float, default=1e-5, show_default=True, help="Target delta.")
@click.option("--dataset-size", "-n", type=int, default=None,
              help=f"Number of training examples N (default {DEFAULT_DATASET_SIZE} unless --sample-rate).")
@click.option("--batch-size", "-b", type=int, default=None,
              help=f"(Expected) batch size B (default {DEFAULT_BATCH_SIZE} unless --sample-rate).")
@click.option("--sample-rate", "-q", type=float, default=None,
              help="Sampling rate q = B/N; replaces --batch-size.")
@click.option("--epochs", type=float, default=30, show_default=True, help="Number of epochs.")
@click.option("--batching", type=click.Choice(["poisson", "shuffle"]), default="poisson",
              show_default=True, help="How batches are drawn.")
@click.option("--accountant", "-a", type=click.Choice(ACCOUNTANT_CHOICES), default="pld",
              show_default=True, help="Accountant (pld = the tightest sound one).")
@click.option("--schedule", type=click.Choice(SCHEDULE_CHOICES), default="constant",
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
def plan(target, delta, dataset_size, batch_size, sample_rate, epochs, batching, accountant,
         schedule, k, period, end_ratio, power, factor, patience, min_ratio, compare_schedules,
         as_json, out, plot):
    """Plan a noise schedule that spends exactly a target (epsilon, delta).

    Solves the schedule's scale sigma_0 so that the planned run spends epsilon within 1e-3
    of the target and never above it, under the chosen accountant and batching.
    """
    from dpaudit.allocation import compare_schedules as compare
    from dpaudit.allocation import make_schedule, solve_plan
    from dpaudit.errors import InvalidParameterError

    if sample_rate is not None and batch_size is not None:
        raise InvalidParameterError("give --batch-size or --sample-rate, not both")
    if sample_rate is None:
        dataset_size = DEFAULT_DATASET_SIZE if dataset_size is None else dataset_size
        batch_size = DEFAULT_BATCH_SIZE if batch_size is None else batch_size
    common = dict(dataset_size=dataset_size, batch_size=batch_size, sample_rate=sample_rate,
                  epochs=epochs, batching=batching, accountant=accountant)
    params = dict(k=k, period=period, end_ratio=end_ratio, power=power, factor=factor,
                  patience=patience, min_ratio=min_ratio)

    if compare_schedules:
        if out is not None:
            raise InvalidParameterError("--out saves one plan; drop --compare-schedules")
        if any(v is not None for v in params.values()):
            raise InvalidParameterError("--compare-schedules uses default schedule parameters")
        plans = compare(target, delta, **common)
        if as_json:
            echo_json({"schedules": [p.to_dict() for p in plans]})
        else:
            for line in _header(plans[0], sample_rate is not None)[:2]:
                click.echo(line)
            click.echo(f"accountant: {accountant}")
            click.echo("")
            click.echo(f"{'schedule':<11} {'sigma first':>11} {'sigma last':>10} {'sigma mean':>10} "
                       f"{'eps spent':>10}  shape")
            for p in plans:
                sig = p.noise_multipliers
                spent = f"{p.epsilon:.5f}"
                click.echo(f"{p.schedule.name:<11} {sig[0]:>11.4f} {sig[-1]:>10.4f} "
                           f"{sum(sig) / len(sig):>10.4f} {spent:>10}  {p.schedule.describe()}")
            for p in plans:
                if p.best_case_epsilon is not None:
                    click.echo(f"\nvalidation: epsilon is the worst case; best case (no decay) "
                               f"spends {p.best_case_epsilon:.5f}")
        if plot:
            _plot(plans, plot)
        return

    sched = make_schedule(schedule, **params)
    p = solve_plan(target, delta, schedule=sched, **common)
    if out:
        p.save(out)
    if plot:
        _plot([p], plot)
    if as_json:
        echo_json(p.to_dict())
        return
    for line in _header(p, sample_rate is not None):
        click.echo(line)
    click.echo("")
    click.echo(f"{'epoch':>5} {'sigma':>10} {'eps spent':>10}")
    cum = p.cumulative_epsilon or (None,) * p.epochs
    for e, (s, c) in enumerate(zip(p.noise_multipliers, cum), start=1):
        click.echo(f"{e:>5} {s:>10.5f} {_f(c, 6):>10}")
    for n in p.notes:
        click.echo(f"note: {n}")
    if out:
        click.echo(f"plan saved to {out}")
    if plot:
        click.echo(f"plot saved to {plot}")
