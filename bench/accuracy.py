"""Accuracy table: plain DP-SGD vs update screening (SA-DPSGD, DPSUR) on MNIST and
Fashion-MNIST at several epsilons (delta = 1e-5), mean +- std over seeds, wall time per run.

Every run is one call of :func:`dpaudit.training.train` with the data set's defaults
(docs/screening.md: Tramer & Boneh's end-to-end tanh CNN, batch 512, lr 0.5, momentum 0.9,
C = 0.1, PLD accounting, EMA of the weights); the methods differ only in ``screening``, and
every run spends the same (epsilon, delta) -- screening runs pay for their validation
queries with a larger gradient sigma. The test set is used once, for the final figure.

``--tune`` runs on a validation split instead (90 % of the training set trains, the
held-out 10 % is scored; the test set is not touched): use it to choose hyper-parameters.

Results go to a JSON file after every run (``--out``); re-running with the same ``--out``
resumes (cells already there are skipped). Runs execute in ``--jobs`` worker processes (each
with ``--threads`` torch threads), e.g. 12 on one GPU.

    python bench/accuracy.py --data-dir /work/shared/datasets --datasets mnist,fashion-mnist \\
        --epsilons 1,2,3 --methods plain,sa,dpsur --seeds 0,1,2 --device cuda --jobs 12 \\
        --out acc.json --markdown acc.md --plot docs/accuracy.png
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import as_completed

METHODS = {"plain": "none", "sa": "sa", "dpsur": "dpsur"}
ANCHORS = [
    "Tramer & Boneh 2021 end-to-end CNN, epsilon = 3: MNIST 98.1 %, Fashion-MNIST 86.0 % "
    "(batch 512, lr 0.5, momentum 0.9, C = 0.1, sigma = 1.23, 40 epochs).",
    "DPSUR (Fu et al. 2024), epsilon = 2: MNIST 98.70 % (ScatterNet features; its accounting "
    "charges accepted steps only, see docs/screening.md).",
    "SA-DPSGD (Fu et al. 2022): MNIST 98.35 %, Fashion-MNIST 87.41 % (un-noised, uncharged "
    "screening: not a sound epsilon).",
]


#: Published / requested reference points drawn on the plot (never used in a result).
GOALS = {"mnist": 98.4, "fashion-mnist": 87.5}
TB_ANCHOR = {"mnist": 98.1, "fashion-mnist": 86.0}


def cell_key(c: dict) -> str:
    key = f"{c['dataset']}|{c['epsilon']:g}|{c['method']}|{c['seed']}|{'tune' if c.get('tune') else 'test'}"
    return key + (f"|{c['tag']}" if c.get("tag") else "")


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs)"


def run_cell(cell: dict, opts: dict) -> dict:
    """One training run (in a worker process); returns the result row."""
    import numpy as np
    import torch

    from dpaudit.training import TrainConfig, train
    from dpaudit.training.evaluation import evaluate

    extra = dict(opts.get("overrides") or {})
    if cell.get("tune"):
        # score every held-out example each epoch (the figures of docs/benchmarks.md did)
        extra.setdefault("eval_size", None)
    cfg = TrainConfig(
        dataset=cell["dataset"], data_dir=opts["data_dir"], epsilon=float(cell["epsilon"]),
        delta=1e-5, screening=METHODS[cell["method"]], seed=int(cell["seed"]),
        device=opts["device"], threads=int(opts["threads"]), accountant="pld",
        ema_decay=opts["ema"], member_fraction=0.9 if cell.get("tune") else 1.0, **extra,
    )
    t0 = time.perf_counter()
    res = train(cfg, progress=False)
    wall = time.perf_counter() - t0
    m = res.metadata
    row = {
        **cell,
        "test_accuracy": m["test_accuracy"] if not cell.get("tune") else None,
        "test_accuracy_raw": m["test_accuracy_raw"] if not cell.get("tune") else None,
        "epsilon_spent": m["epsilon"],
        "sigma": m["noise_multipliers"][0] if m["noise_multipliers"] else None,
        "epochs_trained": m["epochs_trained"],
        "screening": m["screening"],
        "levers": m["levers"],
        "config": {k: m["config"].get(k) for k in ("epochs", "batch_size", "lr", "momentum", "clip",
                                                    "screen_clip", "screen_sigma", "screen_batch_size",
                                                    "screen_beta", "ema_decay", "lr_schedule",
                                                    "arch_kwargs")},
        "wall_seconds": wall,
        "device": device_name(opts["device"]),
        "threads": int(opts["threads"]),
    }
    if cell.get("tune"):
        # held-out 10 % of the training set: raw (last history row) and published (EMA) weights
        non = np.asarray(m["split"]["nonmember_indices"])
        from dpaudit.training import load_dataset

        ds = load_dataset(cell["dataset"], opts["data_dir"])
        dev = next(res.model.parameters()).device
        xv = torch.from_numpy(np.ascontiguousarray(ds.x_train[non])).to(dev)
        yv = torch.from_numpy(ds.y_train[non]).to(dev)
        row["val_accuracy"] = evaluate(res.model, xv, yv)
        row["val_accuracy_raw"] = m["history"][-1].get("val_accuracy")
        row["val_curve"] = [round(h.get("val_accuracy", float("nan")), 4) for h in m["history"]]
    return row


def load_results(path: str | None) -> dict[str, dict]:
    if not path or not os.path.exists(path):
        return {}
    with open(path) as f:
        data = json.load(f)
    return {cell_key(r): r for r in data.get("results", [])}


def save_results(path: str, results: dict[str, dict], command: str) -> None:
    from dpaudit.io import atomic_write_text

    atomic_write_text(path, json.dumps({"command": command, "results": list(results.values())},
                                       indent=1, allow_nan=False))


def _fmt(vals: list[float]) -> str:
    if not vals:
        return "-"
    m = 100 * statistics.fmean(vals)
    if len(vals) == 1:
        return f"{m:.2f} (n=1)"
    return f"{m:.2f} ± {100 * statistics.stdev(vals):.2f} (n={len(vals)})"


def _recipe(r: dict) -> str:
    """The training recipe of a result row, in words (what the table cells share)."""
    c = r.get("config", {})
    ak = c.get("arch_kwargs") or {}
    extra = ", ".join(f"{k}={v}" for k, v in sorted(ak.items()) if v)
    return (f"{c.get('epochs')} epochs, batch {c.get('batch_size')}, lr {c.get('lr')} "
            f"({c.get('lr_schedule') or 'constant'}), momentum {c.get('momentum')}, C {c.get('clip')}, "
            f"EMA {c.get('ema_decay')}" + (f", model options {extra}" if extra else ""))


def markdown(results: dict[str, dict], command: str) -> str:
    rows = [r for r in results.values() if not r.get("tune") and not r.get("timing_only")]
    tune = [r for r in results.values() if r.get("tune")]
    timing = [r for r in results.values() if r.get("timing_only")]
    out = ["# Accuracy: plain DP-SGD vs update screening (SA-DPSGD, DPSUR), sound accounting", "",
           f"Command: `{command}`", "",
           "Test accuracy in % (mean ± sample std over seeds), delta = 1e-5, PLD accountant; every "
           "screening run is charged for every candidate update and every validation query, so all "
           "methods spend the same (epsilon, delta). Wall time: median seconds per run on the "
           "device named (runs shared the device with the other runs of the batch).", ""]
    datasets = sorted({r["dataset"] for r in rows})
    eps = sorted({float(r["epsilon"]) for r in rows})
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    for d in datasets:
        recipes = sorted({_recipe(r) for r in rows if r["dataset"] == d})
        out += [f"## {d}", ""] + [f"Recipe: {rc}" for rc in recipes] + [""]
        out += ["| method | " + " | ".join(f"ε = {e:g}" for e in eps)
                + " | σ (ε=" + f"{eps[len(eps) // 2]:g}) | accept rate | wall s/run | device |",
                "|---|" + "---|" * (len(eps) + 4)]
        for m in methods:
            sel = [r for r in rows if r["dataset"] == d and r["method"] == m]
            if not sel:
                continue
            cells = [_fmt([r["test_accuracy"] for r in sel if float(r["epsilon"]) == e]) for e in eps]
            mid = [r for r in sel if float(r["epsilon"]) == eps[len(eps) // 2]]
            sig = f"{mid[0]['sigma']:.3f}" if mid and mid[0]["sigma"] else "-"
            acc = [r["screening"]["accepted"] / max(1, r["screening"]["validation_releases"])
                   for r in sel if r.get("screening")]
            ar = f"{statistics.fmean(acc):.2f}" if acc else "1"
            wall = statistics.median([r["wall_seconds"] for r in sel]) if sel else float("nan")
            dev = sorted({r["device"] for r in sel})
            out.append(f"| {m} | " + " | ".join(cells) + f" | {sig} | {ar} | {wall:.0f} | {'; '.join(dev)} |")
        out.append("")
    if tune:
        out += ["## Hyper-parameter check on a validation split (10 % of train held out; no test data)",
                "", "| dataset | ε | method | seed | overrides | val acc (EMA) | val acc (raw) | wall s |",
                "|---|---|---|---|---|---|---|---|"]
        for r in sorted(tune, key=cell_key):
            out.append(f"| {r['dataset']} | {r['epsilon']:g} | {r['method']} | {r['seed']} | "
                       f"{r.get('tag', '')} | {100 * r['val_accuracy']:.2f} | "
                       f"{100 * (r['val_accuracy_raw'] or math.nan):.2f} | {r['wall_seconds']:.0f} |")
        out.append("")
    if timing:
        out += ["## Wall time of single runs (not in the table above)", "",
                "| dataset | ε | method | test acc | wall s | device | torch threads |", "|---|---|---|---|---|---|---|"]
        for r in timing:
            out.append(f"| {r['dataset']} | {r['epsilon']:g} | {r['method']} | {100 * r['test_accuracy']:.2f} | "
                       f"{r['wall_seconds']:.0f} | {r['device']} | {r['threads']} |")
        out.append("")
    out += ["Anchors (published, not re-run here):", ""] + [f"- {a}" for a in ANCHORS] + [""]
    return "\n".join(out)


def plot(results: dict[str, dict], path: str) -> None:
    from dpaudit.plotting import pyplot, save_figure

    plt = pyplot()
    rows = [r for r in results.values() if not r.get("tune") and not r.get("timing_only")]
    datasets = sorted({r["dataset"] for r in rows})
    fig, axes = plt.subplots(1, max(1, len(datasets)), figsize=(5 * max(1, len(datasets)), 3.8),
                             squeeze=False)
    for ax, d in zip(axes[0], datasets):
        for m in METHODS:
            sel = [r for r in rows if r["dataset"] == d and r["method"] == m]
            eps = sorted({float(r["epsilon"]) for r in sel})
            if not eps:
                continue
            mean = [100 * statistics.fmean([r["test_accuracy"] for r in sel if float(r["epsilon"]) == e])
                    for e in eps]
            std = [100 * statistics.stdev(v) if len(v) > 1 else 0.0 for v in
                   ([r["test_accuracy"] for r in sel if float(r["epsilon"]) == e] for e in eps)]
            ax.errorbar(eps, mean, yerr=std, marker="o", capsize=3, label=m)
        if d in GOALS:
            ax.plot([2.0], [GOALS[d]], marker="*", ms=12, ls="none", color="k", label="issue goal (ε=2)")
        if d in TB_ANCHOR:
            ax.plot([3.0], [TB_ANCHOR[d]], marker="x", ms=9, ls="none", color="tab:red",
                    label="Tramer & Boneh 2021 (ε=3)")
        ax.set_title(f"{d} (δ = 1e-5, sound accounting)")
        ax.set_xlabel("ε")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend()
    save_figure(fig, path)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default="mnist,fashion-mnist")
    ap.add_argument("--epsilons", default="1,2,3")
    ap.add_argument("--methods", default="plain,sa,dpsur")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--data-dir", default=os.environ.get("DPAUDIT_DATA"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--jobs", type=int, default=1, help="parallel worker processes (Ray: tasks at once)")
    ap.add_argument("--executor", choices=("process", "ray"), default="process",
                    help="runs in local worker processes or as Ray tasks (docs/scaling.md)")
    ap.add_argument("--ray-address", default=None,
                    help="Ray cluster for --executor ray (default: $DPAUDIT_RAY_ADDRESS, else a local runtime)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run")
    ap.add_argument("--ema", type=float, default=0.995, help="EMA decay (negative: off)")
    ap.add_argument("--tune", action="store_true", help="score on a validation split, not the test set")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="TrainConfig override, e.g. epochs=40 (repeatable; recorded as the cell tag)")
    ap.add_argument("--out", default=None, help="results JSON (resumed if it exists)")
    ap.add_argument("--markdown", default=None)
    ap.add_argument("--plot", default=None)
    ap.add_argument("--report-only", action="store_true",
                    help="run nothing: write --markdown/--plot from the results in --out")
    a = ap.parse_args(argv)
    bad = [m for m in a.methods.split(",") if m not in METHODS]
    if bad:
        ap.error(f"unknown method {bad[0]!r} (plain, sa, dpsur)")
    if a.report_only:
        a.seeds = ""
    return a


def _cells(a: argparse.Namespace, tag: str, results: dict[str, dict]) -> list[tuple[str, dict]]:
    """The runs still to do. Seeds outermost, then epsilons in the order given: a run cut
    short still holds whole (dataset x method) comparisons for the first seed and epsilon."""
    cells = []
    for s in filter(None, a.seeds.split(",")):
        for e in a.epsilons.split(","):
            for d in a.datasets.split(","):
                for m in a.methods.split(","):
                    c = {"dataset": d, "epsilon": float(e), "method": m, "seed": int(s),
                         "tune": a.tune, "tag": tag}
                    if cell_key(c) not in results:
                        cells.append((cell_key(c), c))
    return cells


def _run_all(cells: list[tuple[str, dict]], opts: dict, a: argparse.Namespace,
             done: Callable[[str, dict], None]) -> None:
    """Run the cells inline (``--jobs 1``) or in worker processes with ``--threads`` threads
    each (:func:`dpaudit.executors.make_executor`, the project's thread policy)."""
    from dpaudit.executors import make_executor

    if a.jobs <= 1 and a.executor == "process":  # in order, each result saved as it comes
        for key, c in cells:
            done(key, run_cell(c, opts))
        return
    with make_executor(a.executor, a.jobs, threads_per_worker=a.threads, address=a.ray_address,
                       device=a.device) as ex:
        futs = {ex.submit(run_cell, c, opts): key for key, c in cells}
        for f in as_completed(futs):
            try:
                done(futs[f], f.result())
            except Exception as exc:  # keep the other runs going; report the failure
                print(f"{futs[f]}: FAILED {exc!r}", flush=True)


def main(argv: list[str] | None = None) -> None:
    a = _parse_args(argv)
    command = "python bench/accuracy.py " + " ".join(shlex.quote(x) for x in (argv or sys.argv[1:]))
    overrides = {}
    for item in a.overrides:
        k, _, v = item.partition("=")
        overrides[k] = json.loads(v)
    tag = ",".join(f"{k}={v}" for k, v in overrides.items())
    opts = {"data_dir": a.data_dir, "device": a.device, "threads": a.threads,
            "ema": a.ema if a.ema >= 0 else None, "overrides": overrides}
    results = load_results(a.out)
    cells = _cells(a, tag, results)
    print(f"{len(cells)} runs to do ({len(results)} already in {a.out})", flush=True)

    def done(key: str, row: dict) -> None:
        results[key] = row
        acc = row["test_accuracy"] if not row.get("tune") else row["val_accuracy"]
        print(f"{key}: acc {acc:.4f} eps {row['epsilon_spent']:.4f} sigma {row['sigma']:.3f} "
              f"{row['wall_seconds']:.0f} s", flush=True)
        if a.out:
            save_results(a.out, results, command)

    _run_all(cells, opts, a, done)
    if a.markdown:
        from dpaudit.io import atomic_write_text

        atomic_write_text(a.markdown, markdown(results, command))
    if a.plot:
        plot(results, a.plot)


if __name__ == "__main__":
    main()
