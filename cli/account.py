"""``dpaudit account`` and ``dpaudit compare``: epsilon of a DP-SGD run.

Thin click layer over :mod:`dpaudit.accounting.report`; never imports torch.
"""

from __future__ import annotations

import click

from cli.common import echo_json
from dpaudit.accounting import (
    ACCOUNTANTS,
    BATCHING_CHOICES,
    DEFAULT_DELTA,
    RELATIONS,
    STEPS_RULES,
    TIGHTEST,
)
from dpaudit.accounting.events import DEFAULT_BATCH_SIZE, DEFAULT_DATASET_SIZE, DEFAULT_EPOCHS

ACCOUNTANT_CHOICES = [*ACCOUNTANTS, "all"]


def _run_options(f):
    """Options shared by ``account`` and ``compare`` that describe the run."""
    opts = [
        click.option("--dataset-size", "-n", type=int, default=None,
                     help=f"Number of training examples N (default {DEFAULT_DATASET_SIZE} unless --sample-rate)."),
        click.option("--batch-size", "-b", type=int, default=None,
                     help=f"(Expected) batch size B (default {DEFAULT_BATCH_SIZE} unless --sample-rate)."),
        click.option("--sample-rate", "-q", type=float, default=None,
                     help="Sampling rate q = B/N; replaces --batch-size (--dataset-size is then "
                          "shown only)."),
        click.option("--noise-multiplier", "-s", type=str, default=None,
                     help="sigma (noise std / clip norm); one value or comma-separated per epoch."),
        click.option("--epochs", "-e", type=float, default=None,
                     help=f"Number of epochs (default {DEFAULT_EPOCHS} unless --steps); see --steps-rule."),
        click.option("--steps", type=int, default=None,
                     help="Number of steps; replaces --epochs (e.g. --steps 14062 for what Opacus "
                          "runs as 60 epochs of q = 256/60000)."),
        click.option("--steps-rule", type=click.Choice(STEPS_RULES), default=STEPS_RULES[0],
                     show_default=True,
                     help="How --epochs become steps: whole_epochs = epochs x steps per epoch "
                          "(round(N/B) Poisson, ceil(N/B) shuffle and balls-in-bins; what "
                          "`dpaudit train` runs: "
                          "14040 for 60 epochs of 256/60000); expected = floor(epochs x N/B) "
                          "(Opacus' get_noise_multiplier: 14062)."),
        click.option("--delta", "-d", type=float, default=DEFAULT_DELTA, show_default=True,
                     help="Target delta."),
        click.option("--batching", type=click.Choice(BATCHING_CHOICES), default=BATCHING_CHOICES[0],
                     show_default=True,
                     help="How batches are drawn: poisson, shuffle (fixed-size batches of a "
                          "random permutation) or balls-in-bins (each example in one uniformly "
                          "random batch per epoch; also spelled balls_in_bins)."),
        click.option("--relation", type=click.Choice(RELATIONS),
                     default=None,
                     help="Neighbouring relation (default: add_remove for Poisson and "
                          "balls-in-bins, replace_zero for shuffle)."),
        click.option("--plan", "plan_path", type=click.Path(dir_okay=False), default=None,
                     help="Account a saved plan (plan.json from `dpaudit plan --out`)."),
        click.option("--json", "as_json", is_flag=True, help="Print JSON."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _build_run(dataset_size, batch_size, sample_rate, noise_multiplier, epochs, steps,
               steps_rule, batching, relation, plan_path, delta):
    """Return (run, delta) from CLI values or a saved plan."""
    from dpaudit.accounting.report import run_from_values
    from dpaudit.errors import InvalidParameterError

    if plan_path is not None:
        from dpaudit.allocation import Plan

        plan = Plan.load(plan_path)
        return plan.run, plan.delta
    if noise_multiplier is None:
        raise InvalidParameterError("give --noise-multiplier (or --plan plan.json)")
    run = run_from_values(
        dataset_size=dataset_size, batch_size=batch_size, sample_rate=sample_rate,
        noise_multiplier=noise_multiplier, epochs=epochs, steps=steps, batching=batching,
        relation=relation, steps_rule=steps_rule,
    )
    return run, delta


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    if x != x or x == float("inf"):
        return "inf"
    return f"{x:.4g}" if abs(x) < 1e4 else f"{x:.3e}"


@click.command("account")
@_run_options
@click.option("--accountant", "-a", type=click.Choice(ACCOUNTANT_CHOICES), default=TIGHTEST,
              show_default=True, help=f"Accountant ({TIGHTEST} = tight reference; all = every one).")
def account(dataset_size, batch_size, sample_rate, noise_multiplier, epochs, steps, steps_rule,
            delta, batching, relation, plan_path, as_json, accountant):
    """Epsilon spent by a DP-SGD run (an upper bound at the given delta).

    \b
    Example:
      dpaudit account -n 60000 -b 256 -s 1.1 -e 60 -d 1e-5 --accountant all
    """
    from dpaudit.accounting.report import account_run

    run, delta = _build_run(dataset_size, batch_size, sample_rate, noise_multiplier, epochs,
                            steps, steps_rule, batching, relation, plan_path, delta)
    result = account_run(run, delta, accountant)
    if as_json:
        echo_json(result)
        return
    click.echo(_describe(run, delta))
    for r in result["results"]:
        line = f"  {r['accountant']:<7} epsilon = {_fmt(r['epsilon'])}"
        if r.get("parameter") is not None:
            line += f"   (order {r['parameter']:.3g})"
        if not r.get("sound", True):
            line += "   [HEURISTIC: under-reports here, not a valid bound]"
        click.echo(line)
        for note in r.get("notes", []):
            click.echo(f"          note: {note}")
    if run.batching == "shuffle":
        lower = result.get("epsilon_lower")
        known = (f"true epsilon >= {_fmt(lower)} (Chua et al. lower bound)" if lower is not None
                 else "no non-trivial lower bound was obtained (see notes)")
        click.echo(
            f"  shuffled batches: {known}; the Poisson figure often quoted for this run is "
            f"{_fmt(result.get('epsilon_if_poisson'))}, which does not apply."
        )
        click.echo("  for fixed epochs with Poisson-level privacy use --batching balls-in-bins.")
    elif run.batching == "balls_in_bins":
        lower = result.get("epsilon_lower")
        known = (f"true epsilon in [{_fmt(lower)}, {_fmt(result['epsilon'])}]" if lower is not None
                 else "no non-trivial lower bound was obtained (see notes)")
        click.echo(
            f"  balls-in-bins batches: {known}; Poisson sampling at q = B/N would give "
            f"{_fmt(result.get('epsilon_if_poisson'))}."
        )


def _compare_note(r) -> str:
    """The short note of one ``compare`` row."""
    if r["accountant"] == "yu2019":
        return "heuristic (Yu et al. 2019)" if r.get("sound", True) else "heuristic; UNDER-REPORTS here"
    if r["accountant"] in ("chua_lower", "allocation_lower"):
        return "lower bound on the true epsilon"
    if r["batching"] == "balls_in_bins" and r["accountant"] != "pld":
        return "no amplification claimed (use pld)"
    if r["batching"] in ("shuffle", "balls_in_bins") and r.get("epsilon_lower") is not None:
        return f"lower bound {_fmt(r['epsilon_lower'])}"
    return ""


def _describe(run, delta) -> str:
    n = f"N={run.dataset_size}, B={run.batch_size}, " if run.dataset_size else ""
    sig = sorted(set(run.noise_multipliers))
    sig_s = f"{sig[0]:g}" if len(sig) == 1 else f"{min(sig):g}..{max(sig):g} (per epoch)"
    return (
        f"{n}q={run.sample_rate:.6g}, sigma={sig_s}, steps={run.total_steps} "
        f"({run.epochs} epochs), batching={run.batching} ({run.relation}), delta={delta:g}"
    )


@click.command("compare")
@_run_options
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Save a PNG of epsilon vs epochs per accountant and batching (needs matplotlib).")
def compare(dataset_size, batch_size, sample_rate, noise_multiplier, epochs, steps, steps_rule,
            delta, batching, relation, plan_path, as_json, plot_path):
    """Every accountant x every batching (Poisson, shuffle, balls-in-bins) side by side on the
    same run, with the proven lower bounds of shuffle and balls-in-bins."""
    from dpaudit.accounting.report import compare_run

    if plot_path is not None:  # refuse before the work, not after it
        from dpaudit.io import check_writable
        from dpaudit.plotting import require_matplotlib

        require_matplotlib("--plot")
        check_writable(plot_path, "plot")
    run, delta = _build_run(dataset_size, batch_size, sample_rate, noise_multiplier, epochs,
                            steps, steps_rule, batching, relation, plan_path, delta)
    table = compare_run(run, delta, curves=plot_path is not None)
    if plot_path is not None:
        from dpaudit.accounting.plot import plot_compare

        plot_compare(table, plot_path)
    if as_json:
        echo_json({k: v for k, v in table.items() if k not in ("curves", "lower_curves")})
        return
    click.echo(_describe(run, delta))
    click.echo(f"  {'accountant':<16} {'batching':<13} {'epsilon':>10}  {'sound':<5} note")
    for r in table["rows"]:
        click.echo(
            f"  {r['accountant']:<16} {r['batching']:<13} {_fmt(r['epsilon']):>10}  "
            f"{'yes' if r.get('sound', True) else 'NO':<5} {_compare_note(r)}"
        )
    if plot_path is not None:
        click.echo(f"plot written to {plot_path}")
