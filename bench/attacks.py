"""Attack statistics benchmark: dpaudit.stats beside its anchor libraries.

* Clopper-Pearson: ``clopper_pearson`` vs ``scipy.stats.binomtest(...).proportion_ci("exact")``;
* ROC metrics: ``roc_metrics`` vs scikit-learn's ``roc_curve`` + ``roc_auc_score``;
* epsilon lower bound from n member + n non-member scores ("bonferroni" and "split");
* optionally (``--shadows K``) LiRA shadow training on digits: in-process vs a process pool;
* ``--lira MODEL.pt [MODEL2.pt ...] --shadows K``: the LiRA experiment of docs/benchmarks.md
  (section Attacks): K matched shadows trained once (wall and CPU time, workers' CPU
  included), then every target on the same population scored with the first 8, 16, ... K
  shadows, with and without the augmented queries; ``--save`` keeps the shadows' confidences;
* ``--curve SHADOWS.npz MODEL``: the shadow-count curve figure from saved shadows;
* ``--inversion MODEL ...``: MI-FACE on each model (``--inversion-seeds`` jitter seeds each,
  ``--cost``/``--jitter`` to compare configurations), recognition, SSIM and times, one figure.

One process; in every round each case runs once (interleaved), and the median over rounds is
reported, so background load hits all cases alike; one untimed warm-up call each.

Usage::

    python bench/attacks.py [--repeats 7] [--n 10000] [--shadows 0] [--workers 2]
    python bench/attacks.py --lira model.pt --shadows 64 --workers 2 --data-dir D [--save s.npz]
    python bench/attacks.py --curve s.npz model.pt --figure docs/attacks_lira_curve.png
    python bench/attacks.py --inversion a.pt b.pt ... --data-dir D [--inversion-seeds 3]
        [--cost logit] [--jitter 1] --figure docs/attacks_inversion.png
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import numpy as np


def _cases(n: int) -> dict[str, Callable[[], object]]:
    from scipy.stats import binomtest
    from sklearn.metrics import roc_auc_score, roc_curve

    from dpaudit import stats

    rng = np.random.default_rng(0)
    m, nm = rng.normal(1, 1, n), rng.normal(0, 1, n)
    y = np.r_[np.ones(n), np.zeros(n)]
    s = np.r_[m, nm]
    ks = rng.integers(0, 1000, 200)

    def sk_roc():
        roc_curve(y, s)
        return roc_auc_score(y, s)

    return {
        "clopper_pearson x200 (dpaudit)": lambda: [stats.clopper_pearson(int(k), 1000) for k in ks],
        "clopper_pearson x200 (scipy binomtest)": lambda: [
            binomtest(int(k), 1000).proportion_ci(0.95, "exact") for k in ks
        ],
        f"roc_metrics n={n} (dpaudit)": lambda: stats.roc_metrics(m, nm).auc,
        f"roc_curve+auc n={n} (sklearn)": sk_roc,
        f"eps_lb bonferroni n={n}": lambda: stats.epsilon_lower_bound_from_scores(m, nm).epsilon,
        f"eps_lb split n={n}": lambda: stats.epsilon_lower_bound_from_scores(
            m, nm, method="split", rng=0
        ).epsilon,
    }


def _shadow_bench(k: int, workers: int) -> list[str]:
    import torch

    from dpaudit.attacks.lira import InlineExecutor, lira
    from dpaudit.attacks.shadows import shadow_recipe
    from dpaudit.training import TrainConfig, load_dataset, train

    torch.set_num_threads(1)
    ds = load_dataset("digits")
    target = train(TrainConfig(no_privacy=True, member_fraction=0.5, threads=1), dataset=ds,
                   progress=False)
    meta = target.metadata
    mem = np.array(meta["split"]["member_indices"])
    non = np.array(meta["split"]["nonmember_indices"])
    rows = []
    for label, kw in (("in-process", {"executor": InlineExecutor()}),
                      (f"process pool x{workers}", {"workers": workers})):
        t0 = time.perf_counter()
        lira(target.model, shadow_recipe(meta), mem, non, n_shadows=k, dataset=ds, **kw)
        rows.append(f"| LiRA {k} shadows, digits cnn, {label} | {time.perf_counter() - t0:.1f} s |")
    return rows


def _curve(k: int) -> list[int]:
    ks, c = [], 8
    while c < k:
        ks.append(c)
        c *= 2
    return [*ks, k]


def _lira_rows(name: str, target, shadows, confidence: float) -> list[str]:
    import dataclasses

    from dpaudit.attacks.lira import lira_from_shadows
    from dpaudit.attacks.membership import evaluate_scores

    rows = []
    for aug in ("all", "identity"):
        sh = shadows if aug == "all" else dataclasses.replace(
            shadows, phi=shadows.phi[:, :1], augmentations=shadows.augmentations[:1])
        if aug == "identity" and len(shadows.augmentations) == 1:
            continue
        for k in _curve(shadows.n_shadows):
            res = lira_from_shadows(target.model, sh.first(k), dataset=target.dataset,
                                    pool_test=target.nonmembers_in_test)
            for test, ms, ns in (("online", res.online_members, res.online_nonmembers),
                                 ("offline", res.offline_members, res.offline_nonmembers)):
                r = evaluate_scores(test, ms, ns, claimed_epsilon=target.claimed_epsilon,
                                    claimed_delta=target.claimed_delta, confidence=confidence)
                t = r.roc.to_dict()["tpr_at_fpr"]
                rows.append(f"| {name} | {k} | {len(sh.augmentations)} | {test} | {r.roc.auc:.4f} | "
                            f"{100 * t['0.001']:.2f} % | {100 * t['0.01']:.2f} % | {r.bound.epsilon:.3f} | "
                            f"{r.verdict} |")
    return rows


def _lira_experiment(paths: list[str], k: int, workers: int, data_dir: str | None,
                     save: str | None, confidence: float) -> None:
    import os
    import platform
    import resource

    from dpaudit.attacks.lira import shadow_recipe, train_shadows
    from dpaudit.attacks.target import target_from_model_file

    targets = [target_from_model_file(p, data_dir=data_dir) for p in paths]
    first = targets[0]
    if first.metadata is None or first.member_idx is None or first.nonmember_idx is None:
        raise SystemExit(f"{paths[0]} is not a dpaudit model file")
    for t in targets[1:]:
        if t.member_idx is None or not np.array_equal(t.member_idx, first.member_idx):
            raise SystemExit("targets sharing shadows must share their member split")
    recipe = shadow_recipe(first.metadata, data_dir=data_dir)
    t0, c0 = time.perf_counter(), time.process_time()
    shadows = train_shadows(recipe, first.member_idx, first.nonmember_idx, k, workers=workers,
                            dataset=first.dataset, pool_test=first.nonmembers_in_test, progress=True,
                            checkpoint=(lambda s: _save_shadows(save, s)) if save else None)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"# {k} shadows of {paths[0]}: {wall:.0f} s wall, {cpu + child.ru_utime + child.ru_stime:.0f} s CPU "
          f"(this process and its workers), {workers} workers, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs (shared machine)")
    print("# " + "; ".join(shadows.notes))
    if save:
        _save_shadows(save, shadows)
    print("| target | shadows | queries | LiRA | AUC | TPR@0.1% FPR | TPR@1% FPR | eps_lb | verdict |")
    print("|---|---|---|---|---|---|---|---|---|")
    for p, t in zip(paths, targets):
        for row in _lira_rows(os.path.basename(p), t, shadows, confidence):
            print(row, flush=True)


def _save_shadows(path: str, shadows) -> None:
    """The shadows' confidences to ``path`` (also called with the finished prefix while they
    train, so an interrupted run keeps its first shadows)."""
    from dpaudit.io import atomic_outputs

    with atomic_outputs([path]) as (tmp,):
        with open(tmp, "wb") as f:
            np.savez_compressed(f, population=shadows.population, in_mask=shadows.in_mask, phi=shadows.phi,
                                n_members=shadows.n_members, augmentations=np.array(shadows.augmentations))


def _load_shadows(path: str, target, data_dir: str | None):
    from dpaudit.attacks.lira import ShadowSet, shadow_recipe

    with np.load(path, allow_pickle=False) as z:
        return ShadowSet(population=z["population"], n_members=int(z["n_members"]), in_mask=z["in_mask"],
                         phi=z["phi"], augmentations=tuple((bool(a[0]), int(a[1]), int(a[2])) for a in z["augmentations"]),
                         recipe=shadow_recipe(target.metadata, data_dir=data_dir))


def _curve_figure(saved: str, model: str, data_dir: str | None, out: str) -> None:
    """Shadow-count curve (AUC and TPR at 0.1 % FPR, online and offline) from saved shadows."""
    import dataclasses

    from dpaudit.attacks.lira import lira_from_shadows
    from dpaudit.attacks.target import target_from_model_file
    from dpaudit.plotting import pyplot
    from dpaudit.stats import roc_metrics

    target = target_from_model_file(model, data_dir=data_dir)
    shadows = _load_shadows(saved, target, data_dir)
    ks = _curve(shadows.n_shadows)
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.9))
    fig.subplots_adjust(bottom=0.3, top=0.85, wspace=0.3)
    variants = [("all queries", shadows)]
    if len(shadows.augmentations) > 1:
        variants.append(("image only", dataclasses.replace(shadows, phi=shadows.phi[:, :1],
                                                           augmentations=shadows.augmentations[:1])))
    for label, sh in variants:
        rows = []
        for k in ks:
            res = lira_from_shadows(target.model, sh.first(k), dataset=target.dataset)
            on = roc_metrics(res.online_members, res.online_nonmembers)
            off = roc_metrics(res.offline_members, res.offline_nonmembers)
            rows.append((on.auc, off.auc, on.to_dict()["tpr_at_fpr"]["0.001"], off.to_dict()["tpr_at_fpr"]["0.001"]))
            print(f"{label} k={k}: online AUC {on.auc:.4f} TPR@0.1% {rows[-1][2]:.4f}; offline AUC {off.auc:.4f} "
                  f"TPR@0.1% {rows[-1][3]:.4f}", flush=True)
        r = np.array(rows)
        axes[0].plot(ks, r[:, 0], "o-", label=f"online, {label}")
        axes[0].plot(ks, r[:, 1], "s--", label=f"offline, {label}")
        axes[1].plot(ks, 100 * r[:, 2], "o-", label=f"online, {label}")
        axes[1].plot(ks, 100 * r[:, 3], "s--", label=f"offline, {label}")
    for ax, what in ((axes[0], "AUC"), (axes[1], "TPR at 0.1 % FPR (%)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_xlabel("shadow models")
        ax.set_ylabel(what)
        ax.legend(fontsize=7)
    fig.suptitle(f"LiRA against {os.path.basename(model)}: strength vs number of shadows", fontsize=10)
    fig.text(0.01, 0.01, "Matched shadows (the target's recipe and training-set size), the first k of one set "
             "of paired shadows; per-example variances at 64, pooled below. 'all queries': the image and its "
             "one-pixel shifts; 'image only': the image alone. Command: python bench/attacks.py --curve "
             f"{os.path.basename(saved)} {os.path.basename(model)}", fontsize=7, wrap=True)
    fig.savefig(out, dpi=110)


def _inversion_rows(models: list[str], data_dir: str | None, config, seeds: int) -> list[tuple]:
    """MI-FACE ``seeds`` times (seeds 0..seeds-1 of the jitter) on each model: one printed line
    per run (recognised classes, SSIM and contrast, wall and CPU time), one summary line per
    model, and (label, reconstructions, labels read, recognised) of seed 0 for the figure."""
    import dataclasses

    from dpaudit.attacks.inversion import model_inversion
    from dpaudit.attacks.target import target_from_model_file

    rows = []
    for path in models:
        t = target_from_model_file(path, data_dir=data_dir)
        eps = t.claimed_epsilon
        label = f"{t.metadata.get('dataset') if t.metadata else ''}, {'no DP' if eps is None else f'eps={eps:.2g}'}"
        counts, ssims, nearer = [], [], []
        for seed in range(seeds):
            t0, c0 = time.perf_counter(), time.process_time()
            res = model_inversion(t.model, t.members, t.heldout, t.num_classes, test=t.test,
                                  config=dataclasses.replace(config, seed=seed))
            d = res.to_dict()
            counts.append(res.n_recognised)
            ssims.append(d["ssim"])
            nearer.append(d["member_nearer_classes"])
            print(f"{path} ({label}) seed {seed}: {res.n_recognised}/{len(res.recognised)} recognised, "
                  f"SSIM {d['ssim']:.3f} (mean image {d['baseline_ssim']:.3f}), contrast "
                  f"{float(np.mean(res.contrast)):.3f}, judge {res.eval_classifier_accuracy:.3f}, iterations "
                  f"{int(res.iterations.max())}, member nearer in {d['member_nearer_classes']} classes (p = "
                  f"{d['member_nearer_p_value']:.2g}); {time.perf_counter() - t0:.0f} s wall, "
                  f"{time.process_time() - c0:.0f} s CPU", flush=True)
            if seed == 0:
                rows.append((label, res.reconstructions, res.eval_predictions, res.recognised))
        print(f"{path} ({label}): recognised {counts} (mean {np.mean(counts):.1f}), SSIM mean "
              f"{np.mean(ssims):.3f}, member nearer {nearer} of {len(res.recognised)} classes", flush=True)
    return rows


def _inversion_figure(models: list[str], data_dir: str | None, out: str, config, seeds: int) -> None:
    """MI-FACE on each model (one row each, seed 0, titled with its result) into one figure."""
    from dpaudit.attacks.inversion import COSTS
    from dpaudit.plotting import pyplot

    rows = _inversion_rows(models, data_dir, config, seeds)
    plt = pyplot()
    h = 1.45 * len(rows) + 1.1
    fig, axes = plt.subplots(len(rows), 10, figsize=(11, h), squeeze=False)
    fig.subplots_adjust(top=1 - 0.55 / h, bottom=0.6 / h, hspace=0.6, wspace=0.05)
    for r, (label, rec, pred, ok) in enumerate(rows):
        for c in range(10):
            ax = axes[r][c]
            ax.imshow(rec[c, 0], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{c}->{int(pred[c])}{'' if ok[c] else ' x'}", fontsize=7,
                         color="black" if ok[c] else "red")
        axes[r][0].set_ylabel(f"{label}\n{int(ok.sum())}/10", fontsize=7)
    fig.suptitle("MI-FACE reconstructions with and without DP (title: class -> label read by an independent "
                 "classifier; red x: not recognised)", fontsize=9)
    fig.text(0.01, 0.01, f"Each row: one model, jitter seed 0; cost {COSTS[config.cost]}, zero start, "
             f"jitter {config.jitter}, the paper's stopping rule. Command: python bench/attacks.py "
             "--inversion MODELS --figure FIG", fontsize=7)
    fig.savefig(out, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--shadows", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--lira", nargs="+", default=None, metavar="MODEL")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--save", default=None)
    ap.add_argument("--confidence", type=float, default=0.95)
    ap.add_argument("--curve", nargs=2, default=None, metavar=("SHADOWS.npz", "MODEL"))
    ap.add_argument("--inversion", nargs="+", default=None, metavar="MODEL")
    ap.add_argument("--figure", default=None)
    ap.add_argument("--cost", default="logit", help="MI-FACE cost (logit, log_prob, paper)")
    ap.add_argument("--jitter", type=int, default=1, help="MI-FACE jitter in pixels")
    ap.add_argument("--inversion-seeds", type=int, default=1, help="MI-FACE runs per model (jitter seeds)")
    args = ap.parse_args()
    if args.curve:
        _curve_figure(args.curve[0], args.curve[1], args.data_dir, args.figure or "lira_curve.png")
        return
    if args.inversion:
        from dpaudit.attacks.inversion import InversionConfig

        _inversion_figure(args.inversion, args.data_dir, args.figure or "inversion.png",
                          InversionConfig(cost=args.cost, jitter=args.jitter), args.inversion_seeds)
        return
    if args.lira:
        _lira_experiment(args.lira, args.shadows or 64, args.workers, args.data_dir, args.save, args.confidence)
        return
    cases = _cases(args.n)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for fn in cases.values():
        fn()
    for _ in range(args.repeats):
        for name, fn in cases.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    print("| case | median time |")
    print("|---|---|")
    for name, ts in times.items():
        print(f"| {name} | {statistics.median(ts) * 1e3:.2f} ms |")
    if args.shadows:
        for row in _shadow_bench(args.shadows, args.workers):
            print(row)


if __name__ == "__main__":
    main()
