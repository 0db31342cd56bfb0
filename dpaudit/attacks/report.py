"""Run the attacks on a :class:`~dpaudit.attacks.target.Target` and write the report.

Several membership tests on one target: each test's epsilon bound is computed at confidence
``1 - (1 - c) / A`` for A tests (Bonferroni), so the reported maximum over tests still holds
with confidence ``c``.  The headline membership numbers (``membership.auc`` ...) are those of
the test that gave the largest bound (ties: the larger AUC); all tests are listed under
``membership.attacks``.

Files (all of them or none: :func:`write_report`): ``report.json`` (the same document
``--json`` prints), ``roc.png`` (ROC curves on log-log axes, with the claimed (eps, delta)
cap), ``inversion.png`` (reconstructions above the members' class means) and ``report.md``.
:func:`check_report_dir` refuses an unusable folder or a missing matplotlib before any work.
"""

from __future__ import annotations

import concurrent.futures as cf
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dpaudit import stats
from dpaudit.attacks.inversion import COSTS, InversionResult, model_inversion
from dpaudit.attacks.membership import MembershipResult, evaluate_scores, loss_scores
from dpaudit.attacks.options import AttackOptions, check_report_dir
from dpaudit.attacks.target import Target
from dpaudit.io import atomic_folder, dumps_json
from dpaudit.plotting import pyplot

#: Files of a report folder, in the order they are listed.
REPORT_FILES: tuple[str, ...] = ("report.json", "roc.png", "inversion.png", "report.md")


@dataclass(frozen=True)
class AttackReport:
    """Everything the attacks found.  ``membership``: test name -> result (in run order);
    ``primary``: the headline test; ``inversion``: MI-FACE result or None."""

    target: str
    dataset: str | None
    membership: dict[str, MembershipResult]
    primary: str | None
    inversion: InversionResult | None
    confidence: float
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        """JSON-able report; key names are a public interface (see docs/attacks.md)."""
        mem = None
        if self.membership and self.primary is not None:
            head = self.membership[self.primary].to_dict()
            mem = {
                "attack": self.primary,
                "auc": head["auc"],
                "tpr_at_fpr": head["tpr_at_fpr"],
                "balanced_accuracy": head["balanced_accuracy"],
                "advantage": head["advantage"],
                "epsilon_lower_bound": head["epsilon_lower_bound"],
                "confidence": self.confidence,
                "claimed_epsilon": head["claimed_epsilon"],
                "claimed_delta": head["claimed_delta"],
                "verdict": head["verdict"],
                "caps": head["caps"],
                "n_members": head["n_members"],
                "n_nonmembers": head["n_nonmembers"],
                "attacks": {k: v.to_dict() for k, v in self.membership.items()},
            }
        return {
            "target": self.target,
            "dataset": self.dataset,
            "membership": mem,
            "inversion": self.inversion.to_dict() if self.inversion is not None else None,
            "notes": list(self.notes),
        }


    def to_text(self) -> str:
        """The human-readable summary ``dpaudit attack`` prints (see docs/attacks.md)."""
        d = self.to_dict()
        lines: list[str] = []
        if d["membership"] is not None:
            lines += _membership_text(d["membership"])
            lines += [membership_verdict_line(self), f"  {headline_explanation(self)}"]
        if self.inversion is not None:
            inv = d["inversion"]
            lines.append(self.inversion.verdict_line())
            lines.append(
                f"  eval accuracy {inv['eval_accuracy']:.3f} (raw {inv['raw_eval_accuracy']:.3f}, blank/mean "
                f"baseline {inv['baseline_eval_accuracy']:.3f}; classifier test accuracy "
                f"{inv['eval_classifier_accuracy']:.3f}), MSE {inv['mse']:.4f} (baseline "
                f"{inv['baseline_mse']:.4f}), SSIM {inv['ssim']:.4f} (baseline {inv['baseline_ssim']:.4f})"
            )
        lines += [f"note: {note}" for note in d["notes"]]
        return "\n".join(lines)

    def to_json(self) -> str:
        """The report as JSON text (non-finite floats become null)."""
        return dumps_json(self.to_dict())

    def to_markdown(self) -> str:
        """A short human-readable summary for report.md (see docs/attacks.md)."""
        return report_markdown(self)

    def files(self) -> tuple[str, ...]:
        """The names :func:`write_report` writes for this report (plots only for what ran)."""
        skip = {"roc.png"} if not self.membership else set()
        if self.inversion is None:
            skip.add("inversion.png")
        return tuple(n for n in REPORT_FILES if n not in skip)


def _membership_text(m: dict[str, Any]) -> list[str]:
    ce = m["claimed_epsilon"]
    lines = [f"membership inference ({', '.join(m['attacks'])}); headline: {m['attack']}"]
    for name, a in m["attacks"].items():
        tprs = "  ".join(f"TPR@{float(k):g}={v:.3f}" for k, v in a["tpr_at_fpr"].items())
        lines.append(f"  {name:13s} AUC={a['auc']:.4f}  adv={a['advantage']:.4f}  {tprs}  "
                     f"eps_lb={a['epsilon_lower_bound']:.3f}")
    lines.append(
        f"  epsilon lower bound {m['epsilon_lower_bound']:.3f} at confidence "
        f"{m['confidence']:g}; claimed epsilon "
        f"{'none' if ce is None else f'{ce:.3f}'} -> verdict: {m['verdict']}"
    )
    if m["caps"]:
        c = m["caps"]
        gdp = "" if c["auc_gdp"] is None else f" (GDP approximation {c['auc_gdp']:.4f})"
        lines.append(f"  caps of the claim: AUC <= {c['auc']:.4f}{gdp}, "
                     f"advantage <= {c['advantage']:.4f}, "
                     f"TPR@0.001 <= {c['tpr_at_fpr'].get('0.001', float('nan')):.4f}")
    lines += [f"  note: {note}" for note in m["attacks"][m["attack"]]["notes"]]
    return lines


def membership_verdict_line(report: AttackReport) -> str:
    """One sentence: the headline test, its bound against the claim, and the verdict."""
    head = report.membership[str(report.primary)]
    claim = "no claim" if head.claimed_epsilon is None else f"claimed epsilon {head.claimed_epsilon:.3g}"
    meaning = {"violation": "the claim is false at this confidence",
               "consistent": "no evidence against the claim (not a proof of privacy)",
               "no-claim": "nothing to compare with"}[head.verdict]
    return (f"membership inference: eps_lb = {head.bound.epsilon:.3f} ({report.primary}, confidence "
            f"{report.confidence:g}) vs {claim} -> {head.verdict}: {meaning}")


def headline_explanation(report: AttackReport) -> str:
    """Which test, tail and threshold produced the headline bound, and why it is valid."""
    from dpaudit.attacks.membership import bound_explanation

    return f"headline {report.primary}: " + bound_explanation(report.membership[str(report.primary)].bound)

def _run_lira(target: Target, options: AttackOptions, executor: cf.Executor | None) -> tuple[Any, list[str]]:
    """LiRA scores and notes, or (None, why not) when the target records no recipe."""
    if target.metadata is None or target.member_idx is None or target.nonmember_idx is None:
        return None, ["LiRA skipped: it needs a dpaudit model file (training configuration and member split)"]
    from dpaudit.attacks.lira import lira, shadow_recipe
    from dpaudit.errors import InvalidParameterError

    try:
        recipe = shadow_recipe(target.metadata, data_dir=(target.config or {}).get("data_dir"))
    except InvalidParameterError as exc:
        return None, [f"LiRA skipped: {exc}"]
    res = lira(
        target.model, recipe, target.member_idx, target.nonmember_idx,
        n_shadows=options.shadow_models, seed=options.seed, device=options.device,
        executor=executor, workers=options.workers, progress=options.progress,
        dataset=target.dataset, pool_test=target.nonmembers_in_test, augment_queries=options.augment,
    )
    variance = "global" if res.global_variance else "per-example"
    return res, [f"LiRA: {res.n_shadows} shadow models, {variance} variance; "
                 f"{len(res.online_members)} members and {len(res.online_nonmembers)} non-members scored",
                 *(f"LiRA: {n}" for n in res.notes)]


def run_attacks(
    target: Target, options: AttackOptions | None = None, executor: cf.Executor | None = None
) -> AttackReport:
    """Run the chosen attacks (``options``: default :class:`AttackOptions`).  ``executor``
    (optional) trains LiRA's shadow models."""
    options = options if options is not None else AttackOptions()
    notes = list(target.notes)
    scores: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if "loss" in options.attacks:
        scores["loss"] = (
            loss_scores(target.model, *target.members, options.device),
            loss_scores(target.model, *target.nonmembers, options.device),
        )
    if "lira" in options.attacks:
        lira_res, lira_notes = _run_lira(target, options, executor)
        notes += lira_notes
        if lira_res is not None:
            scores["lira_online"] = (lira_res.online_members, lira_res.online_nonmembers)
            scores["lira_offline"] = (lira_res.offline_members, lira_res.offline_nonmembers)
    membership: dict[str, MembershipResult] = {}
    primary = None
    if scores:
        per_test = 1.0 - (1.0 - options.confidence) / len(scores)
        split_note = (
            (f"confidence {options.confidence:g} Bonferroni-split over {len(scores)} membership "
             f"tests: each bound at {per_test:.6g}",)
            if len(scores) > 1 else ()
        )
        for name, (ms, ns) in scores.items():
            membership[name] = evaluate_scores(
                name, ms, ns, claimed_epsilon=target.claimed_epsilon,
                claimed_delta=target.claimed_delta, confidence=per_test, method=options.method,
                rng=options.seed, notes=split_note,
            )
        primary = max(
            membership, key=lambda k: (membership[k].bound.epsilon, membership[k].roc.auc)
        )
    inversion = None
    if "inversion" in options.attacks:
        inversion = model_inversion(
            target.model, target.members, target.heldout, target.num_classes, test=target.test,
            config=options.inversion, device=options.device, seed=options.seed,
        )
    return AttackReport(
        target=target.name,
        dataset=None if target.metadata is None else target.metadata.get("dataset"),
        membership=membership,
        primary=primary,
        inversion=inversion,
        confidence=options.confidence,
        notes=tuple(notes),
    )


# --------------------------------------------------------------------------- output files
def report_json(report: AttackReport) -> str:
    """The report as JSON text (non-finite floats become null)."""
    return report.to_json()


def _caption(fig: Any, text: str, width: int = 110) -> None:
    """A wrapped caption under the axes of ``fig``."""
    import textwrap

    fig.text(0.01, 0.01, textwrap.fill(text, width), ha="left", va="bottom", fontsize=7, wrap=True)


def _short(name: str, n: int = 40) -> str:
    return name if len(name) <= n else "..." + name[-(n - 3):]


def roc_figure(report: AttackReport) -> Any:
    """ROC curves of every membership test on log-log axes, the chance line, the
    (eps, delta) cap TPR <= min(e^eps FPR + delta, ...) of the claim and the headline bound's
    operating point, with a title and a caption (a matplotlib figure)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 7.2))
    fig.subplots_adjust(bottom=0.30, top=0.92)
    floor = 1e-4
    for name, res in report.membership.items():
        fpr, tpr = np.maximum(res.roc.fpr, floor), np.maximum(res.roc.tpr, floor)
        ax.plot(fpr, tpr, label=f"{name} (AUC {res.roc.auc:.3f}, eps_lb {res.bound.epsilon:.2f})")
    grid = np.logspace(-4, 0, 200)
    ax.plot(grid, grid, "k:", lw=1, label="chance")
    first = next(iter(report.membership.values()), None)
    if first is not None and first.claimed_epsilon is not None and math.isfinite(first.claimed_epsilon):
        cap = stats.dp_tpr_cap(grid, first.claimed_epsilon, first.claimed_delta or 0.0)
        ax.plot(grid, cap, "r--", lw=1, label=f"most any attack can reach at claimed eps={first.claimed_epsilon:.3g}")
    head = report.membership.get(str(report.primary))
    if head is not None and head.bound.epsilon > 0:
        b = head.bound
        pt_fpr, pt_tpr = b.fp / max(b.fp + b.tn, 1), b.tp / max(b.tp + b.fn, 1)
        ax.plot([max(pt_fpr, floor)], [max(pt_tpr, floor)], "ko", ms=5, label="threshold of the headline eps_lb")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(floor, 1)
    ax.set_ylim(floor, 1)
    ax.set_xlabel("false positive rate (non-members called members)")
    ax.set_ylabel("true positive rate (members found)")
    ax.set_title(f"Membership inference ROC: {_short(report.target)}", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    text = ("Each curve: one attack's trade-off over all thresholds (log-log axes: the low-FPR corner "
            "is where confident membership claims live). ")
    if head is not None:
        text += membership_verdict_line(report) + ". " + headline_explanation(report) + "."
    _caption(fig, text)
    return fig


def inversion_figure(result: InversionResult, title: str = "") -> Any:
    """Grid with a title and a caption: top row the MI-FACE reconstructions labelled with the
    evaluation classifier's verdict, bottom row the members' class means."""
    plt = pyplot()
    k = len(result.reconstructions)
    fig, axes = plt.subplots(2, k, figsize=(max(6.4, 1.2 * k), 3.9), squeeze=False)
    fig.subplots_adjust(top=0.78, bottom=0.27, wspace=0.1, hspace=0.35)
    for i in range(k):
        for row, img in ((0, result.reconstructions[i]), (1, result.class_means[i])):
            ax = axes[row][i]
            im = np.nan_to_num(np.asarray(img, dtype=np.float64))
            im = im[0] if im.shape[0] == 1 else np.transpose(im, (1, 2, 0))
            ax.imshow(im, cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        mark = "ok" if result.recognised[i] else "no"
        axes[0][i].set_title(f"{i}: read {int(result.eval_predictions[i])} ({mark})", fontsize=7,
                             color="black" if result.recognised[i] else "red")
    axes[0][0].set_ylabel("MI-FACE", fontsize=8)
    axes[1][0].set_ylabel("class mean", fontsize=8)
    fig.suptitle(f"Model inversion (MI-FACE){': ' + _short(title) if title else ''}\n"
                 f"{result.n_recognised} of {k} classes recognisable -> {result.verdict}", fontsize=9)
    cfg = result.config
    _caption(fig, f"Top: for each class, the input found by gradient descent on {COSTS[cfg.cost]} from a "
                  f"constant start (pixel value {cfg.start:g}; {'one-pixel jitter, ' if cfg.jitter else ''}"
                  f"Fredrikson et al. 2015, Alg. 1), titled with the label an independent "
                  f"classifier reads in it ('ok' = its own class and not near-constant; blank images "
                  f"never count). Bottom: the mean of the target's training members of that class "
                  f"(not available to the attacker; for comparison only). Blank/mean baseline images "
                  f"score {result.baseline_eval_accuracy:.2f}.", width=int(18 * max(6.4, 1.2 * k)))
    return fig


def _save_png(fig: Any, path: Path) -> None:
    fig.savefig(path, format="png", dpi=120)
    pyplot().close(fig)


def _membership_markdown(report: AttackReport, m: dict[str, Any]) -> list[str]:
    ce = m["claimed_epsilon"]
    lines = [
        "## Membership inference",
        "",
        f"**Verdict:** {membership_verdict_line(report)}.",
        "",
        f"- headline test: **{m['attack']}**; verdict: **{m['verdict']}**",
        f"- empirical epsilon lower bound: **{m['epsilon_lower_bound']:.3f}** "
        f"(confidence {m['confidence']:g}) vs claimed epsilon "
        f"{'none' if ce is None else f'{ce:.3f}'}"
        + ("" if m["claimed_delta"] is None else f" at delta {m['claimed_delta']:g}"),
        f"- where it comes from: {headline_explanation(report)}",
        f"- AUC {m['auc']:.4f}, advantage {m['advantage']:.4f}, balanced accuracy "
        f"{m['balanced_accuracy']:.4f}",
        "- TPR at FPR: " + ", ".join(f"{k}: {v:.4f}" for k, v in m["tpr_at_fpr"].items()),
        "",
        "| test | AUC | TPR@0.1% | advantage | eps_lb | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for name, a in m["attacks"].items():
        lines.append(
            f"| {name} | {a['auc']:.4f} | {a['tpr_at_fpr'].get('0.001', float('nan')):.4f} | "
            f"{a['advantage']:.4f} | {a['epsilon_lower_bound']:.3f} | {a['verdict']} |"
        )
    if m["caps"]:
        c = m["caps"]
        auc_gdp = c["auc_gdp"]
        lines += [
            "",
            f"Caps of the claim (eps={c['epsilon']:.3g}, delta={c['delta']:g}): AUC <= "
            f"{c['auc']:.4f} (GDP approximation {'n/a' if auc_gdp is None else f'{auc_gdp:.4f}'}), "
            f"advantage <= {c['advantage']:.4f}, TPR at FPR 0.1% <= "
            f"{c['tpr_at_fpr'].get('0.001', float('nan')):.4f}.",
        ]
    head_notes = m["attacks"][m["attack"]]["notes"]
    if head_notes:
        lines += [""] + [f"- note: {n}" for n in head_notes]
    return lines + ["", "![Membership inference ROC curves](roc.png)", ""]


def _inversion_markdown(result: InversionResult) -> list[str]:
    inv = result.to_dict()
    k = len(result.recognised)
    rows = ["| class | read as | recognised | contrast | target conf. | MSE | SSIM | baseline MSE | baseline SSIM |",
            "|---|---|---|---|---|---|---|---|---|"]
    pc = inv["per_class"]
    for c in range(k):
        rows.append(f"| {c} | {pc['predicted'][c]} | {'yes' if pc['recognised'][c] else 'no'} | "
                    f"{pc['contrast'][c]:.3f} | {pc['target_confidence'][c]:.3f} | {pc['mse'][c]:.4f} | "
                    f"{pc['ssim'][c]:.3f} | {pc['baseline_mse'][c]:.4f} | {pc['baseline_ssim'][c]:.3f} |")
    return [
        "## Model inversion (MI-FACE)",
        "",
        f"**Verdict:** {result.verdict_line()}.",
        "",
        f"- honest recognition rate (eval_accuracy): **{inv['eval_accuracy']:.3f}**; the classifier's "
        f"plain accuracy on the reconstructions {inv['raw_eval_accuracy']:.3f}; on blank/mean images "
        f"{inv['baseline_eval_accuracy']:.3f} (it reads the blank image as {inv['baseline_predictions']['blank']} "
        f"and the mean image as {inv['baseline_predictions']['mean']})",
        f"- evaluation classifier: {inv['eval_classifier']}; test accuracy "
        f"{inv['eval_classifier_accuracy']:.3f} (confusion matrix in report.json)",
        f"- MSE to members' class means {inv['mse']:.4f} (baseline {inv['baseline_mse']:.4f}); "
        f"SSIM {inv['ssim']:.4f} (baseline {inv['baseline_ssim']:.4f})",
        f"- membership: the nearest training member is nearer than the nearest held-out image in "
        f"{inv['member_nearer_classes']} of {k} classes (p = {inv['member_nearer_p_value']:.2g}; about half "
        f"is what a reconstruction without membership information gets): "
        + ("the reconstructions resemble training members more than other images of their class"
           if inv["member_nearer_p_value"] < 0.05 else "no sign that they reveal members rather than classes"),
        "",
        *rows,
        "",
        "![MI-FACE reconstructions above the members' class means](inversion.png)",
        "",
    ]


def report_markdown(report: AttackReport) -> str:
    """A short human-readable summary (see docs/attacks.md for how to read each number)."""
    d = report.to_dict()
    lines = [f"# Attack report: {report.target}", ""]
    if d["membership"] is not None:
        lines += _membership_markdown(report, d["membership"])
    if report.inversion is not None:
        lines += _inversion_markdown(report.inversion)
    if d["notes"]:
        lines += ["## Notes", ""] + [f"- {n}" for n in d["notes"]] + [""]
    return "\n".join(lines)


def write_report(report: AttackReport, directory: str | os.PathLike[str]) -> list[Path]:
    """Write report.json, roc.png, inversion.png (each plot when its attack ran) and
    report.md into ``directory`` (created if missing): all of them or none. Returns the
    paths written."""
    out = check_report_dir(directory)
    names = report.files()
    with atomic_folder(out, names) as tmps:
        paths = dict(zip(names, tmps))
        paths["report.json"].write_text(report.to_json() + "\n", encoding="utf-8")
        if "roc.png" in paths:
            _save_png(roc_figure(report), paths["roc.png"])
        if report.inversion is not None:
            _save_png(inversion_figure(report.inversion, report.target), paths["inversion.png"])
        paths["report.md"].write_text(report_markdown(report), encoding="utf-8")
    return [out / n for n in names]
