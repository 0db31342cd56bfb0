"""``dpaudit train``: the reference DP-SGD trainer on the command line (thin layer over
:func:`dpaudit.training.train`)."""

from __future__ import annotations

import json

import click

from cli.common import echo_json


def _parse_arch_kwargs(items: tuple[str, ...]) -> dict:
    from dpaudit.errors import InvalidParameterError

    out = {}
    for item in items:
        if "=" not in item:
            raise InvalidParameterError(f"--model-arg: expected KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


@click.command("train")
@click.option("--dataset", default="digits", show_default=True,
              type=click.Choice(["digits", "mnist", "fashion-mnist"]), help="Data set.")
@click.option("--data-dir", default=None, help="Folder with the IDX .gz files (default $DPAUDIT_DATA).")
@click.option("--model", "arch", default=None, type=click.Choice(["cnn", "mlp", "logreg"]),
              help="Architecture (default: the data set's, see docs/training.md).")
@click.option("--model-arg", "model_args", multiple=True, metavar="KEY=VALUE",
              help="Architecture option, e.g. hidden=[256] or center=true (repeatable).")
@click.option("--epsilon", type=float, default=None, help="Target epsilon (default 2 unless --plan/--noise-multiplier/--no-privacy).")
@click.option("--delta", type=float, default=None, help="Target delta (default 1e-5; must be < 1/N).")
@click.option("--epochs", type=int, default=None, help="Epochs (default: the data set's).")
@click.option("--batch-size", type=int, default=None, help="Expected batch size B (q = B/N).")
@click.option("--batching", default="poisson", show_default=True, type=click.Choice(["poisson", "shuffle"]))
@click.option("--schedule", default="constant", show_default=True,
              type=click.Choice(["constant", "time", "exp", "step", "poly", "validation"]),
              help="Noise schedule solved on the fly from --epsilon.")
@click.option("--plan", "plan_path", default=None, type=click.Path(dir_okay=False),
              help="Noise plan from `dpaudit plan --out` (sets epochs and epsilon).")
@click.option("--noise-multiplier", type=float, default=None,
              help="Explicit sigma per step instead of a plan (with --epsilon: stop at the budget).")
@click.option("--clip", type=float, default=None, help="Per-example clipping norm C.")
@click.option("--lr", type=float, default=None, help="Learning rate.")
@click.option("--momentum", type=float, default=None, help="SGD momentum.")
@click.option("--accountant", default="pld", show_default=True,
              type=click.Choice(["pld", "rdp", "ma", "cdp"]), help="Accountant for the ledger.")
@click.option("--member-fraction", type=float, default=1.0, show_default=True,
              help="Fraction of the train split used for training (rest held out, recorded).")
@click.option("--screening", default="none", show_default=True, type=click.Choice(["none", "sa", "dpsur"]),
              help="Update screening (SA-DPSGD / DPSUR) with every candidate and validation query "
                   "charged; see docs/screening.md.")
@click.option("--screen-clip", type=float, default=0.1, show_default=True,
              help="C_v: bound on each validation example's loss change.")
@click.option("--screen-sigma", type=float, default=None,
              help="sigma_v: noise multiplier of the validation query (default: the data set's).")
@click.option("--screen-batch-size", type=int, default=None,
              help="Expected validation batch size B_v, drawn from the training members.")
@click.option("--screen-beta", type=float, default=-1.0, show_default=True,
              help="DPSUR threshold: accept iff noisy sum < beta * C_v.")
@click.option("--ema", "ema_decay", type=float, default=None,
              help="Publish an exponential moving average of the weights with this decay (free).")
@click.option("--lr-schedule", default=None, type=click.Choice(["constant", "cosine", "linear"]),
              help="Learning-rate decay over the run (default: the data set's; free).")
@click.option("--no-privacy", is_flag=True, help="Plain SGD (no clipping, no noise).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N.")
@click.option("--threads", type=int, default=None, help="CPU threads (default: $OMP_NUM_THREADS, else min(physical cores, 4)).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the member split and initial weights (recorded).")
@click.option("--reproducible", is_flag=True,
              help="Also derive batch sampling and noise from --seed (NOT private against anyone knowing it).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Where to write model.pt.")
@click.option("--json", "as_json", is_flag=True, help="Print the metadata summary as JSON.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(**kw: object) -> None:
    """Train a model with the reference DP-SGD trainer and save it with its privacy ledger."""
    from pathlib import Path

    from dpaudit.errors import InvalidParameterError

    out = Path(str(kw["out"]))
    if not (out.parent if str(out.parent) else Path(".")).is_dir():
        raise InvalidParameterError(f"--out: folder {out.parent} does not exist")
    if kw["plan_path"] and not Path(str(kw["plan_path"])).is_file():
        raise FileNotFoundError(2, "plan not found", str(kw["plan_path"]))
    epsilon = kw["epsilon"]
    if epsilon is None and not (kw["no_privacy"] or kw["plan_path"] or kw["noise_multiplier"]):
        epsilon = 2.0
    if kw["no_privacy"] and epsilon is not None:
        raise InvalidParameterError("--no-privacy cannot be combined with --epsilon")
    if kw["plan_path"] and epsilon is not None:
        raise InvalidParameterError("--plan sets the budget; do not also give --epsilon")

    from dpaudit.training import TrainConfig, save_model
    from dpaudit.training import train as run_train

    cfg = TrainConfig(
        dataset=str(kw["dataset"]), data_dir=kw["data_dir"], arch=kw["arch"],
        arch_kwargs=_parse_arch_kwargs(kw["model_args"]), epsilon=epsilon, delta=kw["delta"],
        epochs=kw["epochs"], batch_size=kw["batch_size"], batching=str(kw["batching"]),
        schedule=str(kw["schedule"]), plan_path=kw["plan_path"], clip=kw["clip"], lr=kw["lr"],
        momentum=kw["momentum"], noise_multiplier=kw["noise_multiplier"],
        no_privacy=bool(kw["no_privacy"]), seed=int(kw["seed"]), device=str(kw["device"]),
        accountant=str(kw["accountant"]), member_fraction=float(kw["member_fraction"]),
        threads=kw["threads"], reproducible=bool(kw["reproducible"]),
        screening=str(kw["screening"]), screen_clip=float(kw["screen_clip"]),
        screen_sigma=kw["screen_sigma"], screen_batch_size=kw["screen_batch_size"],
        screen_beta=float(kw["screen_beta"]), ema_decay=kw["ema_decay"],
        **({"lr_schedule": str(kw["lr_schedule"])} if kw["lr_schedule"] else {}),
    )
    result = run_train(cfg, progress=not (kw["quiet"] or kw["as_json"]))
    save_model(out, result.model, result.metadata)
    m = result.metadata
    summary = {
        "out": str(out),
        "dataset": m["dataset"],
        "arch": m["arch"],
        "private": m["private"],
        "epsilon": m["epsilon"],
        "target_epsilon": m["target_epsilon"],
        "delta": m["delta"],
        "accountant": m["accountant"],
        "batching": m["batching"],
        "epochs_trained": m["epochs_trained"],
        "noise_multipliers": m["noise_multipliers"],
        "clip": m["clip"],
        "test_accuracy": m["test_accuracy"],
        "screening": m["screening"],
        "levers": m["levers"],
        "train_seconds": m["train_seconds"],
        "notes": m["notes"],
    }
    if kw["as_json"]:
        echo_json(summary)
        return
    eps = "not private" if not m["private"] else f"epsilon = {m['epsilon']:.4g} at delta = {m['delta']:g} ({m['accountant']}, {m['batching']} batching)"
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
