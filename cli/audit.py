"""``dpaudit audit``: verify a DP trainer (thin layer over :func:`dpaudit.audit.audit`).

Exit status: 0 when no check found a violation, 1 when one did, 2 on a usage error.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from cli.common import echo_json


def _load_trainer(spec: str, claim):
    """Import ``module:function`` and call it (with ``claim=`` when claim flags were given)."""
    from dpaudit.audit import TrainerAdapter
    from dpaudit.errors import InvalidParameterError

    if ":" not in spec:
        raise InvalidParameterError(f"--trainer must look like module:function, got {spec!r}")
    module, func = spec.split(":", 1)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        factory = getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as exc:
        raise InvalidParameterError(f"cannot load trainer {spec!r}: {exc}") from None
    if not callable(factory):
        raise InvalidParameterError(f"{spec} is not callable (expected a factory returning a TrainerAdapter)")
    adapter = factory(claim=claim) if claim is not None else factory()
    if not isinstance(adapter, TrainerAdapter):
        raise InvalidParameterError(
            f"{spec} returned {type(adapter).__name__}, not a TrainerAdapter "
            "(needs name, claim() and privatized_gradient())")
    return adapter


def _claim(epsilon, delta, sample_rate, batch_size, dataset_size, noise_multiplier, clip, steps, batching):
    from dpaudit.audit import Claim
    from dpaudit.errors import InvalidParameterError

    if noise_multiplier is None or steps is None:
        raise InvalidParameterError("give --noise-multiplier and --steps (the claimed mechanism)")
    if sample_rate is None:
        if batch_size is None or dataset_size is None:
            raise InvalidParameterError("give --sample-rate, or --batch-size and --dataset-size")
        if dataset_size < 1 or not 1 <= batch_size <= dataset_size:
            raise InvalidParameterError("need 1 <= --batch-size <= --dataset-size")
        sample_rate = batch_size / dataset_size
    if epsilon is None:  # what the trainer would claim: the tightest sound accountant
        from dpaudit.accounting import epsilon as account

        probe = Claim(epsilon=0.0, delta=delta, sample_rate=sample_rate, noise_multiplier=noise_multiplier,
                      clip=clip, steps=steps, batching=batching, dataset_size=dataset_size)
        epsilon = account(probe.to_run(), delta, "pld").epsilon
    return Claim(epsilon=epsilon, delta=delta, sample_rate=sample_rate, noise_multiplier=noise_multiplier,
                 clip=clip, steps=steps, batching=batching, dataset_size=dataset_size)


@click.command("audit")
@click.option("--trainer", default=None, metavar="MODULE:FUNCTION",
              help="Factory returning a TrainerAdapter (called with claim=... when claim flags are given).")
@click.option("--model", "model_path", default=None, type=click.Path(dir_okay=False, exists=True),
              help="A model.pt from `dpaudit train`: audit the reference trainer against its recorded claim.")
@click.option("--builtin", default=None, type=click.Choice(["reference", "opacus"]),
              help="Audit a built-in adapter (default: reference when --trainer is absent).")
@click.option("--epsilon", type=float, default=None, help="Claimed epsilon (default: PLD figure of the parameters).")
@click.option("--delta", type=float, default=1e-5, show_default=True, help="Claimed delta.")
@click.option("--sample-rate", type=float, default=None, help="Claimed q (or --batch-size with --dataset-size).")
@click.option("--batch-size", type=int, default=None, help="Expected batch size B (q = B/N).")
@click.option("--dataset-size", type=int, default=None, help="Training-set size N.")
@click.option("--noise-multiplier", type=float, default=None, help="Claimed sigma.")
@click.option("--clip", type=float, default=1.0, show_default=True, help="Claimed clipping norm C.")
@click.option("--steps", type=int, default=None, help="Claimed number of noisy steps.")
@click.option("--batching", default="poisson", show_default=True, type=click.Choice(["poisson", "shuffle"]))
@click.option("--checks", default="all", show_default=True,
              help="all, probes, audits, or a comma list (accounting, sensitivity, noise_variance, fresh_noise, "
                   "per_sample_gradients, sampler, canary_multi_run, canary_one_run).")
@click.option("--runs", type=int, default=200, show_default=True, help="Multi-run canary audit: runs per world.")
@click.option("--canaries", type=int, default=1000, show_default=True, help="One-run audit: number of canaries.")
@click.option("--canary-steps", type=int, default=None, help="Audit only the first steps (cheaper, looser).")
@click.option("--confidence", type=float, default=0.95, show_default=True, help="Family-wise confidence.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--executor", default="process", show_default=True, type=click.Choice(["inline", "thread", "process"]))
@click.option("--workers", type=int, default=None, help="Executor workers (default: the executor's).")
@click.option("--device", default="cpu", show_default=True, help="Device of the built-in adapters (cpu, cuda, cuda:N).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--report", "report_dir", default=None, type=click.Path(file_okay=False),
              help="Write report.json and report.md into this folder.")
def audit(trainer, model_path, builtin, epsilon, delta, sample_rate, batch_size, dataset_size, noise_multiplier, clip, steps,
          batching, checks, runs, canaries, canary_steps, confidence, seed, executor, workers, device, as_json,
          report_dir):
    """Verify a DP trainer: probes, canary audits and re-accounting, one verdict per check."""
    from dpaudit.audit import OpacusAdapter, ReferenceAdapter, resolve_checks
    from dpaudit.audit import audit as run_audit
    from dpaudit.errors import InvalidParameterError

    if sum(bool(x) for x in (trainer, builtin, model_path)) > 1:
        raise InvalidParameterError("give one of --trainer, --builtin, --model")
    resolve_checks(checks)  # fail fast on a typo, before any work
    has_claim = noise_multiplier is not None or steps is not None
    if model_path:
        from dpaudit.audit import Claim
        from dpaudit.training.checkpoint import read_model_file

        claim = Claim.from_metadata(read_model_file(model_path)["metadata"])
        adapter = ReferenceAdapter(claim, device)
    elif trainer:
        claim = _claim(epsilon, delta, sample_rate, batch_size, dataset_size, noise_multiplier, clip, steps,
                       batching) if has_claim else None
        adapter = _load_trainer(trainer, claim)
    else:
        claim = _claim(epsilon, delta, sample_rate, batch_size, dataset_size, noise_multiplier, clip, steps, batching)
        adapter = OpacusAdapter(claim, device) if builtin == "opacus" else ReferenceAdapter(claim, device)

    def progress(name: str) -> None:
        if not as_json:
            click.echo(f"... {name}", err=True)

    report = run_audit(adapter, checks=checks, confidence=confidence, runs=runs, canaries=canaries,
                       canary_steps=canary_steps, seed=seed, executor=executor, workers=workers, progress=progress)
    if report_dir:
        report.write(report_dir)
    if as_json:
        echo_json(report.to_dict())
    else:
        click.echo(report.to_text())
    if report.verdict == "violation":
        sys.exit(1)
