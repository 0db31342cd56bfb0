"""``dpaudit attack``: membership inference (loss, LiRA) and model inversion on a model.

Thin click layer over :mod:`dpaudit.attacks.report`; see docs/attacks.md.
"""

from __future__ import annotations

import sys

import click

from cli.common import echo_json

ATTACK_CHOICES = ["loss", "lira", "inversion", "all"]


@click.command("attack")
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False))
@click.option("--attack", "attacks", type=click.Choice(ATTACK_CHOICES), multiple=True,
              help="Attack(s) to run; repeatable. Default: loss and inversion "
                   "(LiRA trains shadow models: ask for it with --attack lira or all).")
@click.option("--shadow-models", "-k", type=int, default=8, show_default=True,
              help="Number of LiRA shadow models (each trained on a random half).")
@click.option("--workers", type=int, default=None,
              help="Processes training shadow models (1 = in-process; default: in-process for "
                   "digits, min(CPUs, 4) for MNIST-sized data).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Folder with the MNIST / Fashion-MNIST files (default: the model's, or $DPAUDIT_DATA).")
@click.option("--confidence", type=float, default=0.95, show_default=True,
              help="Confidence of the empirical epsilon lower bound.")
@click.option("--threshold-selection", "method", type=click.Choice(["bonferroni", "split"]),
              default="bonferroni", show_default=True,
              help="Valid threshold choice for the bound: Bonferroni over fixed order-statistic "
                   "thresholds, or a held-out half of the scores.")
@click.option("--report", "report_dir", type=click.Path(file_okay=False), default=None,
              help="Write report.json, roc.png, inversion.png and report.md into DIR.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--device", default="cpu", show_default=True, help="torch device (cpu, cuda, cuda:N).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of shadow splits / split halves.")
@click.option("--inversion-iters", type=int, default=5000, show_default=True,
              help="MI-FACE iteration cap (alpha).")
@click.option("--members", "members_npz", type=click.Path(dir_okay=False), default=None,
              help="Third-party model: .npz with the training members (arrays x, y).")
@click.option("--non-members", "nonmembers_npz", type=click.Path(dir_okay=False), default=None,
              help="Third-party model: .npz with non-members (arrays x, y).")
@click.option("--arch", type=click.Choice(["cnn", "mlp", "logreg"]), default=None,
              help="Architecture of a third-party state_dict (TorchScript needs none).")
@click.option("--num-classes", type=int, default=None,
              help="Third-party model: number of classes (default: from the labels).")
@click.option("--claimed-epsilon", type=float, default=None,
              help="Third-party model: its claimed epsilon.")
@click.option("--claimed-delta", type=float, default=None,
              help="Third-party model: its claimed delta.")
def attack(model_path, attacks, shadow_models, workers, data_dir, confidence, method, report_dir,
           as_json, device, seed, inversion_iters, members_npz, nonmembers_npz, arch,
           num_classes, claimed_epsilon, claimed_delta):
    """Attack MODEL (a model.pt from `dpaudit train`, or a third-party model with
    --members/--non-members) and compare the leakage with its privacy claim."""
    from dpaudit.errors import InvalidParameterError

    if (members_npz is None) != (nonmembers_npz is None):
        raise InvalidParameterError("give both --members and --non-members (or neither)")
    chosen = ("loss", "lira", "inversion") if "all" in attacks else tuple(dict.fromkeys(attacks))
    if not chosen:
        chosen = ("loss", "inversion")

    from dpaudit.attacks.inversion import InversionConfig
    from dpaudit.attacks.report import AttackOptions, report_json, run_attacks, write_report
    from dpaudit.attacks.target import target_from_model_file, target_from_third_party

    options = AttackOptions(
        attacks=chosen, shadow_models=shadow_models, confidence=confidence, method=method,
        device=device, workers=workers, progress=(not as_json) and sys.stderr.isatty(),
        seed=seed, inversion=InversionConfig(max_iter=inversion_iters),
    )
    from dpaudit.runtime import resolve_device

    resolve_device(device)
    if members_npz is not None:
        target = target_from_third_party(
            model_path, members_npz, nonmembers_npz, arch=arch, num_classes=num_classes,
            claimed_epsilon=claimed_epsilon, claimed_delta=claimed_delta, device=device,
        )
    else:
        if arch is not None or claimed_epsilon is not None:
            raise InvalidParameterError(
                "--arch / --claimed-epsilon are for third-party models (with --members)"
            )
        target = target_from_model_file(model_path, data_dir=data_dir, device=device)
    report = run_attacks(target, options)
    if report_dir is not None:
        write_report(report, report_dir)
    if as_json:
        import json

        echo_json(json.loads(report_json(report)))
        return
    _print_summary(report, report_dir)


def _print_summary(report, report_dir) -> None:
    d = report.to_dict()
    m = d["membership"]
    if m is not None:
        ce = m["claimed_epsilon"]
        click.echo(f"membership inference ({', '.join(m['attacks'])}); headline: {m['attack']}")
        for name, a in m["attacks"].items():
            tprs = "  ".join(f"TPR@{float(k):g}={v:.3f}" for k, v in a["tpr_at_fpr"].items())
            click.echo(f"  {name:13s} AUC={a['auc']:.4f}  adv={a['advantage']:.4f}  {tprs}  "
                       f"eps_lb={a['epsilon_lower_bound']:.3f}")
        click.echo(
            f"  epsilon lower bound {m['epsilon_lower_bound']:.3f} at confidence "
            f"{m['confidence']:g}; claimed epsilon "
            f"{'none' if ce is None else f'{ce:.3f}'} -> verdict: {m['verdict']}"
        )
        if m["caps"]:
            c = m["caps"]
            gdp = "" if c["auc_gdp"] is None else f" (GDP approximation {c['auc_gdp']:.4f})"
            click.echo(f"  caps of the claim: AUC <= {c['auc']:.4f}{gdp}, "
                       f"advantage <= {c['advantage']:.4f}, "
                       f"TPR@0.001 <= {c['tpr_at_fpr'].get('0.001', float('nan')):.4f}")
        for note in m["attacks"][m["attack"]]["notes"]:
            click.echo(f"  note: {note}")
    inv = d["inversion"]
    if inv is not None:
        click.echo(
            f"model inversion (MI-FACE): eval-classifier accuracy {inv['eval_accuracy']:.3f}, "
            f"MSE {inv['mse']:.4f} (baseline {inv['baseline_mse']:.4f}), "
            f"SSIM {inv['ssim']:.4f} (baseline {inv['baseline_ssim']:.4f})"
        )
    for note in d["notes"]:
        click.echo(f"note: {note}")
    if report_dir is not None:
        click.echo(f"report written to {report_dir}")
