"""``dpaudit attack``: membership inference (loss, LiRA) and model inversion on a model.

Thin click layer over :mod:`dpaudit.attacks`; see docs/attacks.md. Every argument (files,
pairs, claim, confidence, report folder, matplotlib) is checked before torch is imported.
"""

from __future__ import annotations

import sys

import click

from cli.common import echo_json, executor_options, open_executor
from dpaudit.attacks.options import ATTACK_CHOICES
from dpaudit.stats import METHODS


@click.command("attack")
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False))
@click.option("--attack", "attacks", type=click.Choice(ATTACK_CHOICES), multiple=True,
              help="Attack(s) to run; repeatable. Default: loss and inversion "
                   "(LiRA trains shadow models: ask for it with --attack lira or all).")
@click.option("--shadow-models", "-k", type=int, default=8, show_default=True,
              help="Number of LiRA shadow models (each trained on a random half).")
@executor_options(default=None, workers_help="Shadow models trained at once (1 = in-process without --executor; "
                                              "default: in-process for digits, min(CPUs, 4) processes for MNIST-sized data).")
@click.option("--augment/--no-augment", default=None,
              help="LiRA also queries each example shifted by one pixel (and flipped, for "
                   "Fashion-MNIST, CIFAR-10); none for the 8x8 digits. Default: only when the "
                   "target trained with an augmentation (its training augmentations are the "
                   "queries that carry signal).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Folder with the MNIST / Fashion-MNIST files (default: the model's, or $DPAUDIT_DATA).")
@click.option("--confidence", type=float, default=0.95, show_default=True,
              help="Confidence of the empirical epsilon lower bound.")
@click.option("--threshold-selection", "method", type=click.Choice(METHODS),
              default="bonferroni", show_default=True,
              help="Valid threshold choice for the bound: Bonferroni over fixed order-statistic "
                   "thresholds, or a held-out half of the scores.")
@click.option("--report", "report_dir", type=click.Path(file_okay=False), default=None,
              help="Write report.json, roc.png, inversion.png and report.md into DIR (all or none).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--device", default="cpu", show_default=True, help="torch device (cpu, cuda, cuda:N).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of shadow splits / split halves.")
@click.option("--inversion-iters", type=int, default=5000, show_default=True,
              help="MI-FACE iteration cap (alpha).")
@click.option("--inversion-cost", type=click.Choice(["logit", "log-prob", "paper"]), default="logit",
              show_default=True,
              help="MI-FACE cost: minus the class score (Simonyan et al. 2014), -log p, or the paper's 1 - p.")
@click.option("--members", "members_npz", type=click.Path(dir_okay=False), default=None,
              help="Third-party model: .npz with the training members (arrays x, y).")
@click.option("--non-members", "nonmembers_npz", type=click.Path(dir_okay=False), default=None,
              help="Third-party model: .npz with non-members (arrays x, y).")
@click.option("--arch", default=None, metavar="ARCH",
              help="Architecture of a third-party state_dict: one of the reference trainer's "
                   "(see `dpaudit train --help`; TorchScript needs none).")
@click.option("--num-classes", type=int, default=None,
              help="Third-party model: number of classes (default: from the labels).")
@click.option("--claimed-epsilon", type=float, default=None,
              help="Third-party model: its claimed epsilon.")
@click.option("--claimed-delta", type=float, default=None,
              help="Third-party model: its claimed delta.")
def attack(model_path, attacks, shadow_models, executor, workers, ray_address, augment, data_dir, confidence, method,
           report_dir,           as_json, device, seed, inversion_iters, inversion_cost, members_npz, nonmembers_npz, arch,
           num_classes, claimed_epsilon, claimed_delta):
    """Attack MODEL (a model.pt from `dpaudit train`, or a third-party model with
    --members/--non-members) and compare the leakage with its privacy claim."""
    from dpaudit.attacks.inversion import InversionConfig
    from dpaudit.attacks.options import AttackOptions, check_report_dir, resolve_attacks
    from dpaudit.attacks.target import check_target_inputs
    from dpaudit.modelfile import NotADpauditModelError

    # Everything until resolve_device is torch-free: bad input is refused at once.
    third_party = members_npz is not None or nonmembers_npz is not None
    if (members_npz is None) != (nonmembers_npz is None):
        raise click.UsageError("give both --members and --non-members (or neither)")
    if not third_party and (arch, num_classes, claimed_epsilon, claimed_delta) != (None,) * 4:
        raise click.UsageError(
            "--arch, --num-classes and --claimed-epsilon/--claimed-delta are for third-party models (with --members)")
    options = AttackOptions(
        attacks=resolve_attacks(attacks), shadow_models=shadow_models, confidence=confidence, method=method,
        device=device, workers=workers, progress=(not as_json) and sys.stderr.isatty(),
        seed=seed, augment=augment, inversion=InversionConfig(max_iter=inversion_iters, cost=inversion_cost.replace("-", "_")),
    )
    if report_dir is not None:
        check_report_dir(report_dir)
    check_target_inputs(model_path, members_npz, nonmembers_npz, arch=arch, num_classes=num_classes,
                        claimed_epsilon=claimed_epsilon, claimed_delta=claimed_delta, data_dir=data_dir)

    from dpaudit.attacks.report import run_attacks, write_report
    from dpaudit.attacks.target import target_from_model_file, target_from_third_party
    from dpaudit.runtime import resolve_device

    resolve_device(device)
    if third_party:
        target = target_from_third_party(
            model_path, members_npz, nonmembers_npz, arch=arch, num_classes=num_classes,
            claimed_epsilon=claimed_epsilon, claimed_delta=claimed_delta, device=device,
        )
    else:
        try:
            target = target_from_model_file(model_path, data_dir=data_dir, device=device)
        except NotADpauditModelError as exc:
            raise NotADpauditModelError(
                f"{exc}; for other models give --members X.npz --non-members Y.npz (and --arch for a state_dict)"
            ) from None
    with open_executor(executor, workers, ray_address, device=device) as ex:
        report = run_attacks(target, options, executor=ex)
    if report_dir is not None:
        write_report(report, report_dir)
    if as_json:
        echo_json(report.to_dict())
        return
    click.echo(report.to_text())
    if report_dir is not None:
        click.echo(f"report written to {report_dir}")
