"""``dpaudit audit``: verify a DP trainer (thin layer over :func:`dpaudit.audit.audit`).

Every argument is checked before torch is imported (the claim, the checks, the counts, the
report folder and matplotlib for its figure), so a bad value is refused in well under a
second. A progress bar per check (with its ETA) goes to stderr when it is a terminal.

Exit status: 0 when no check found a violation, 1 when one did, 2 on a usage error.
"""

from __future__ import annotations

import sys

import click

from cli.common import echo_json, executor_options, open_executor, progress_bars
from dpaudit.accounting.events import BATCHING_CHOICES
from dpaudit.audit.checks import CHECK_GROUPS, CHECKS, DEFAULT_CONFIDENCE
from dpaudit.audit.loading import BUILTIN_ADAPTERS


@click.command("audit")
@click.option("--trainer", default=None, metavar="MODULE:FUNCTION",
              help="Factory returning a TrainerAdapter (called with claim=... when claim flags are given).")
@click.option("--model", "model_path", default=None, type=click.Path(dir_okay=False, exists=True),
              help="A model.pt from `dpaudit train`: audit the reference trainer against its recorded claim.")
@click.option("--builtin", default=None, type=click.Choice(BUILTIN_ADAPTERS),
              help="Audit a built-in adapter (default: reference when --trainer is absent).")
@click.option("--epsilon", type=float, default=None, help="Claimed epsilon (default: PLD figure of the parameters).")
@click.option("--delta", type=float, default=1e-5, show_default=True, help="Claimed delta.")
@click.option("--sample-rate", type=float, default=None, help="Claimed q (or --batch-size with --dataset-size).")
@click.option("--batch-size", type=int, default=None, help="Expected batch size B (q = B/N).")
@click.option("--dataset-size", type=int, default=None,
              help="Training-set size N (needed unless --batch-size gives B: the update is divided by B = qN).")
@click.option("--noise-multiplier", type=float, default=None, help="Claimed sigma.")
@click.option("--clip", type=float, default=1.0, show_default=True, help="Claimed clipping norm C.")
@click.option("--steps", type=int, default=None, help="Claimed number of noisy steps.")
@click.option("--batching", default="poisson", show_default=True, type=click.Choice(BATCHING_CHOICES))
@click.option("--checks", default="all", show_default=True,
              help=f"{', '.join(CHECK_GROUPS)}, or a comma list ({', '.join(CHECKS)}).")
@click.option("--runs", type=int, default=None,
              help="Multi-run canary audit: runs per world (default 2000 on the batched instrument, else 200).")
@click.option("--canaries", type=int, default=None,
              help="One-run audit: number of canaries (default 10000 on the batched instrument, else 1000).")
@click.option("--canary-steps", type=int, default=None, help="Audit only the first steps (cheaper, looser).")
@click.option("--confidence", type=float, default=DEFAULT_CONFIDENCE, show_default=True,
              help="Family-wise confidence of every 'violation' (split over the statistical checks).")
@click.option("--seed", type=int, default=0, show_default=True)
@executor_options(default="process")
@click.option("--device", default="cpu", show_default=True, help="Device of the built-in adapters (cpu, cuda, cuda:N).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--report", "report_dir", default=None, type=click.Path(file_okay=False),
              help="Write report.json, report.md and tradeoff.png into this folder.")
def audit(trainer, model_path, builtin, epsilon, delta, sample_rate, batch_size, dataset_size, noise_multiplier, clip, steps,
          batching, checks, runs, canaries, canary_steps, confidence, seed, executor, workers, ray_address, device,
          as_json, report_dir):
    """Verify a DP trainer: probes, canary audits and re-accounting, one verdict per check."""
    from dpaudit.audit import Claim, check_options, parse_adapter_spec, resolve_checks
    from dpaudit.io import check_output_dir

    # Everything below until the adapter is built is torch-free.
    if sum(bool(x) for x in (trainer, builtin, model_path)) > 1:
        raise click.UsageError("give one of --trainer, --builtin, --model")
    resolve_checks(checks)
    check_options(confidence, runs, canaries, canary_steps)
    if report_dir:
        from dpaudit.plotting import require_matplotlib

        check_output_dir(report_dir)
        if any(c == "canary_multi_run" for c in resolve_checks(checks)):
            require_matplotlib("the report's trade-off figure (--report)")
    has_claim = noise_multiplier is not None or steps is not None
    claim = None
    if trainer:
        parse_adapter_spec(trainer)
    if not model_path and (has_claim or not trainer):
        if noise_multiplier is None or steps is None:
            raise click.UsageError("give --noise-multiplier and --steps (the claimed mechanism)")
        if sample_rate is None and (batch_size is None or dataset_size is None):
            raise click.UsageError("give --sample-rate, or --batch-size and --dataset-size")
        if dataset_size is None and batch_size is None:
            raise click.UsageError("give --dataset-size (or --batch-size): the update is divided by B = q*N")
        claim = Claim.create(epsilon=epsilon, delta=delta, sample_rate=sample_rate, batch_size=batch_size,
                             dataset_size=dataset_size, noise_multiplier=noise_multiplier, clip=clip, steps=steps,
                             batching=batching)

    from dpaudit.audit import audit as run_audit
    from dpaudit.audit import builtin_adapter, load_adapter
    from dpaudit.runtime import configure_threads

    # The audit's trainer calls are small: one torch thread. On the shared 2-core machine a
    # default `audit --model` took 72 s CPU with 2 threads (spin-waiting) and 20 s with one.
    configure_threads(1)

    if model_path:
        adapter = builtin_adapter("reference", Claim.from_model_file(model_path), device)
    elif trainer:
        adapter = load_adapter(trainer, claim)
    else:
        assert claim is not None
        adapter = builtin_adapter(builtin or "reference", claim, device)

    with open_executor(executor, workers, ray_address, device=device) as ex, progress_bars("part") as progress:
        report = run_audit(adapter, checks=checks, confidence=confidence, runs=runs, canaries=canaries,
                           canary_steps=canary_steps, seed=seed, executor=ex, workers=workers, progress=progress)
    if report_dir:
        report.write(report_dir)
    if as_json:
        echo_json(report.to_dict())
    else:
        click.echo(report.to_text())
    if report.verdict == "violation":
        sys.exit(1)
