"""``dpaudit train``: the reference DP-SGD trainer on the command line (thin layer over
:func:`dpaudit.training.train`)."""

from __future__ import annotations

import json
from typing import Any

import click

from cli.common import echo_json
from dpaudit.accounting import BATCHING_CHOICES
from dpaudit.training.archs import ARCHS
from dpaudit.training.config import (
    AUGMENTATIONS,
    DEFAULT_DELTA,
    DEFAULT_EPSILON,
    LR_SCHEDULES,
    SCHEDULES,
    SCREENING_RULES,
    TRAIN_ACCOUNTANTS,
    TrainConfig,
)
from dpaudit.training.data import DATASETS
from dpaudit.training.features import FEATURES

_DEFAULT = TrainConfig()


def _parse_arch_kwargs(items: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--model-arg")
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


@click.command("train")
@click.option("--dataset", default=_DEFAULT.dataset, show_default=True,
              type=click.Choice(DATASETS), help="Data set.")
@click.option("--data-dir", default=None,
              help="Folder with the IDX .gz files or cifar-10-batches-py/ (default $DPAUDIT_DATA).")
@click.option("--features", default=_DEFAULT.features, show_default=True, type=click.Choice(FEATURES),
              help="Train on fixed features of the images (scatternet: Tramer & Boneh 2021; "
                   "needs kymatio), a separate route from end-to-end training.")
@click.option("--feature-cache", default=None, type=click.Path(file_okay=False),
              help="Feature cache folder (default $DPAUDIT_CACHE/features or ~/.cache/dpaudit/features).")
@click.option("--norm-sigma", type=float, default=None,
              help="Noise multiplier of private input statistics (model option input_norm=data; default 8).")
@click.option("--norm-clip", type=float, nargs=2, default=None, metavar="C_M C_S",
              help="Per-member bounds of those statistics (mean and mean-square vectors; default 1 1).")
@click.option("--model", "arch", default=None, type=click.Choice(ARCHS),
              help="Architecture (default: the data set's, see docs/training.md).")
@click.option("--model-arg", "model_args", multiple=True, metavar="KEY=VALUE",
              help="Architecture option, e.g. hidden=[256] or center=true (repeatable).")
@click.option("--epsilon", type=float, default=None, help=f"Target epsilon (default {DEFAULT_EPSILON:g} unless --plan/--noise-multiplier/--no-privacy).")
@click.option("--delta", type=float, default=None, help=f"Target delta (default {DEFAULT_DELTA:g}, or the plan's; must be < 1/N).")
@click.option("--epochs", type=int, default=None, help="Epochs (default: the data set's).")
@click.option("--batch-size", type=int, default=None, help="Expected batch size B (q = B/N).")
@click.option("--batching", default=_DEFAULT.batching, show_default=True, type=click.Choice(BATCHING_CHOICES))
@click.option("--schedule", default=_DEFAULT.schedule, show_default=True,
              type=click.Choice(SCHEDULES),
              help="Noise schedule solved on the fly from --epsilon.")
@click.option("--plan", "plan_path", default=None, type=click.Path(dir_okay=False),
              help="Noise plan from `dpaudit plan --out` (sets epochs and epsilon).")
@click.option("--noise-multiplier", type=float, default=None,
              help="Explicit sigma per step instead of a plan (with --epsilon: stop at the budget).")
@click.option("--clip", type=float, default=None, help="Per-example clipping norm C.")
@click.option("--lr", type=float, default=None, help="Learning rate.")
@click.option("--momentum", type=float, default=None, help="SGD momentum.")
@click.option("--accountant", default=_DEFAULT.accountant, show_default=True,
              type=click.Choice(TRAIN_ACCOUNTANTS), help="Accountant for the ledger.")
@click.option("--member-fraction", type=float, default=_DEFAULT.member_fraction, show_default=True,
              help="Fraction of the train split used for training (rest held out, recorded).")
@click.option("--screening", default=_DEFAULT.screening, show_default=True, type=click.Choice(SCREENING_RULES),
              help="Update screening (SA-DPSGD / DPSUR) with every candidate and validation query "
                   "charged; see docs/screening.md.")
@click.option("--screen-clip", type=float, default=_DEFAULT.screen_clip, show_default=True,
              help="C_v: bound on each validation example's loss change.")
@click.option("--screen-sigma", type=float, default=None,
              help="sigma_v: noise multiplier of the validation query (default: the data set's).")
@click.option("--screen-batch-size", type=int, default=None,
              help="Expected validation batch size B_v, drawn from the training members.")
@click.option("--screen-beta", type=float, default=_DEFAULT.screen_beta, show_default=True,
              help="DPSUR threshold: accept iff noisy sum < beta * C_v.")
@click.option("--ema", "ema_decay", type=float, default=None,
              help="Publish an exponential moving average of the weights with this decay (free; "
                   "default: the data set's, 0.995 for mnist, fashion-mnist, cifar10; 0: last iterate).")
@click.option("--lr-schedule", default=None, type=click.Choice(LR_SCHEDULES),
              help="Learning-rate decay over the run (default: the data set's; free).")
@click.option("--augment", default=None, type=click.Choice(("none", *AUGMENTATIONS)),
              help="Data-independent augmentation: flip-crop (CIFAR-10), shift (digits); default: the data set's.")
@click.option("--augment-multiplicity", type=int, default=_DEFAULT.augment_multiplicity, show_default=True,
              help="K augmented copies per example, gradients averaged before clipping (accounting unchanged).")
@click.option("--no-privacy", is_flag=True, help="Plain SGD (no clipping, no noise).")
@click.option("--device", default=_DEFAULT.device, show_default=True, help="cpu, cuda, cuda:N.")
@click.option("--threads", type=int, default=None, help="CPU threads (default: $OMP_NUM_THREADS, else min(physical cores, 4)).")
@click.option("--seed", type=int, default=_DEFAULT.seed, show_default=True,
              help="Seed of the member split and initial weights (recorded).")
@click.option("--reproducible", is_flag=True,
              help="Also derive batch sampling and noise from --seed (NOT private against anyone knowing it).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Where to write model.pt.")
@click.option("--json", "as_json", is_flag=True, help="Print the metadata summary as JSON.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(**kw: Any) -> None:
    """Train a model with the reference DP-SGD trainer and save it with its privacy ledger."""
    from dpaudit.io import check_writable
    from dpaudit.training.config import preflight

    cfg = _config(kw)
    preflight(cfg)  # values, budget rules, plan and data files: before torch is imported
    out = check_writable(kw["out"], "model file")

    from dpaudit.training.checkpoint import save_model
    from dpaudit.training.trainer import train as run_train

    result = run_train(cfg, progress=not (kw["quiet"] or kw["as_json"]))
    save_model(out, result.model, result.metadata)
    if kw["as_json"]:
        echo_json(_summary(str(out), result.metadata))
    else:
        _print_summary(str(out), result.metadata)


def _config(kw: dict[str, Any]) -> TrainConfig:
    """The library configuration the flags name (no defaults or rules of its own)."""
    fields = ("dataset", "data_dir", "arch", "epsilon", "delta", "epochs", "batch_size", "batching",
              "schedule", "plan_path", "clip", "lr", "momentum", "noise_multiplier", "no_privacy",
              "seed", "device", "accountant", "member_fraction", "threads", "reproducible",
              "screening", "screen_clip", "screen_sigma", "screen_batch_size", "screen_beta",
              "ema_decay", "lr_schedule", "augment", "augment_multiplicity", "features", "feature_cache",
              "norm_sigma")
    norm_clip = tuple(kw["norm_clip"]) if kw.get("norm_clip") else None
    return TrainConfig(arch_kwargs=_parse_arch_kwargs(kw["model_args"]), norm_clip=norm_clip,
                       **{k: kw[k] for k in fields})


def _summary(out: str, m: dict[str, Any]) -> dict[str, Any]:
    keys = ("dataset", "arch", "private", "epsilon", "target_epsilon", "delta", "accountant",
            "batching", "epochs_trained", "noise_multipliers", "clip", "test_accuracy", "screening",
            "levers", "features", "input_statistics", "train_seconds", "notes")
    return {"out": out, **{k: m[k] for k in keys}}


def _print_summary(out: str, m: dict[str, Any]) -> None:
    if m["private"]:
        eps = (f"epsilon = {m['epsilon']:.4g} at delta = {m['delta']:g} ({m['accountant']}, "
               f"{m['batching']} batching)")
    else:
        eps = "not private"
    click.echo(f"trained {m['arch']} on {m['dataset']}: {m['epochs_trained']} epochs in {m['train_seconds']:.1f} s")
    click.echo(f"privacy: {eps}")
    if m["private"]:
        sig = sorted(set(round(s, 4) for s in m["noise_multipliers"]))
        click.echo(f"noise multiplier(s): {', '.join(map(str, sig))}; clip C = {m['clip']:g}")
    click.echo(f"test accuracy: {m['test_accuracy']:.4f}")
    if m["screening"]:
        sc = m["screening"]
        click.echo(f"screening {sc['rule']}: {sc['accepted']} accepted, {sc['rejected']} rejected; "
                   f"{sc['validation_releases']} validation queries charged")
    for note in m["notes"]:
        click.echo(f"note: {note}")
    click.echo(f"saved {out}")
