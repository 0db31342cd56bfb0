"""Accuracy table: plain DP-SGD vs update screening (SA-DPSGD, DPSUR) on MNIST, Fashion-MNIST
and CIFAR-10, end to end and on ScatterNet features, at several epsilons (delta = 1e-5), mean
+- std over seeds, wall and CPU time per run, the hardware each ran on.

Every run is one call of :func:`dpaudit.training.train` with the data set's defaults
(``DATASET_DEFAULTS``, or ``FEATURE_DEFAULTS`` for the ScatterNet route; EMA 0.995 is part of
both), plus the overrides of the cell; the methods differ only in ``screening``, and every run
spends the same (epsilon, delta) -- screening runs pay for their validation queries, and
ScatterNet runs with data normalisation for their private statistics, with a larger gradient
sigma. The test set is used once per run, for the final figure.

Routes (``--routes``): ``e2e`` trains the data set's CNN on pixels; ``scatternet`` trains on
the cached ScatterNet features (Tramer & Boneh 2021). They are separate rows of the table.

``--tune`` runs on a validation split instead (90 % of the training set trains, the held-out
10 % is scored; the test set is not touched); ``--grid 'batch_size=1024,2048;lr=2,4'`` runs
every combination (``lr_per_512=b`` sets lr = b x batch / 512, Tramer & Boneh's scaling), and
``--points 'batch_size=1024,lr=2;epochs=20'`` exactly the points listed. ``--recipe tuned`` then trains each (data set, route, epsilon) test cell
with the grid point of best mean validation accuracy (plain DP-SGD's choice, also used for the
screening methods); the chosen overrides are the cell's tag and the table lists the
``dpaudit train`` flags that reproduce it.

Results go to a JSON file after every run (``--out``); re-running with the same ``--out``
resumes (cells already there are skipped). Runs execute in ``--jobs`` worker processes (each
with ``--threads`` torch threads).

    python bench/accuracy.py --data-dir /work/shared/datasets --datasets mnist,fashion-mnist,cifar10 \\
        --routes scatternet --epsilons 1,2,3 --methods plain --seeds 0 --tune \\
        --grid 'batch_size=1024,2048,4096;lr=2,4' --out acc.json
    python bench/accuracy.py --data-dir /work/shared/datasets --datasets mnist,fashion-mnist,cifar10 \\
        --routes scatternet --epsilons 1,2,3 --methods plain,sa,dpsur --seeds 0,1,2 \\
        --recipe tuned --out acc.json --markdown acc.md --plot docs/accuracy.png
"""

from __future__ import annotations

import argparse
import itertools
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
from typing import Any

METHODS = {"plain": "none", "sa": "sa", "dpsur": "dpsur"}
ROUTES = {"e2e": "none", "scatternet": "scatternet"}
DATASETS = ("mnist", "fashion-mnist", "cifar10")

#: Published reference points drawn on the plot and listed under the table (never used in a
#: result): the screening paper (SA-DPSGD, Fu et al. 2022; its accounting is not sound) at
#: epsilon = 2, Tramer & Boneh 2021 at epsilon = 3, and the issue's goals at epsilon = 2.
SCREENING_PAPER = {"mnist": 98.35, "fashion-mnist": 87.41, "cifar10": 60.92}
TB_E2E = {"mnist": 98.1, "fashion-mnist": 86.0, "cifar10": 59.2}
TB_SCATTER = {"mnist": 98.7, "fashion-mnist": 89.7, "cifar10": 69.3}
GOALS = {"mnist": 98.4, "fashion-mnist": 87.5, "cifar10": 61.0}
ANCHORS = [
    "SA-DPSGD (Fu, Chen, Ling 2022), epsilon = 2: MNIST 98.35 %, Fashion-MNIST 87.41 %, "
    "CIFAR-10 60.92 % (end-to-end CNNs; un-noised, uncharged screening: not a sound epsilon).",
    "Tramer & Boneh 2021, epsilon = 3, end-to-end tanh CNNs: MNIST 98.1 %, Fashion-MNIST 86.0 %, "
    "CIFAR-10 59.2 %.",
    "Tramer & Boneh 2021, epsilon = 3, ScatterNet: MNIST 98.7 %, Fashion-MNIST 89.7 % (linear), "
    "CIFAR-10 69.3 % (ScatterNet + CNN; their ScatterNet + linear: 67.0 %).",
    "DPSUR (Fu et al. 2024), epsilon = 2, ScatterNet + linear: MNIST 98.70 %, Fashion-MNIST 89.34 %, "
    "CIFAR-10 69.40 % (charges accepted steps only, see docs/screening.md).",
]
#: TrainConfig field -> `dpaudit train` flag, for the reproduce-this-cell column.
_FLAGS = {"batch_size": "--batch-size", "lr": "--lr", "epochs": "--epochs", "momentum": "--momentum",
          "clip": "--clip", "lr_schedule": "--lr-schedule", "ema_decay": "--ema",
          "norm_sigma": "--norm-sigma", "screen_sigma": "--screen-sigma", "screen_clip": "--screen-clip",
          "screen_batch_size": "--screen-batch-size", "arch": "--model"}


def cell_key(c: dict) -> str:
    key = (f"{c['dataset']}|{c.get('route', 'e2e')}|{c['epsilon']:g}|{c['method']}|{c['seed']}|"
           f"{'tune' if c.get('tune') else 'test'}")
    return key + (f"|{c['tag']}" if c.get("tag") else "")


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    return f"cpu ({model or platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs)"


def _config(cell: dict, opts: dict) -> Any:
    from dpaudit.training import TrainConfig

    extra = dict(opts.get("overrides") or {})
    extra.update(cell.get("overrides") or {})
    if "lr_per_512" in extra:  # Tramer & Boneh's scaling: lr = base x batch / 512
        if "batch_size" not in extra:
            raise ValueError("lr_per_512 needs batch_size in the same overrides")
        extra["lr"] = float(extra.pop("lr_per_512")) * int(extra["batch_size"]) / 512
    if cell.get("tune"):
        extra.setdefault("eval_size", None)  # score every held-out example each epoch
    return TrainConfig(
        dataset=cell["dataset"], data_dir=opts["data_dir"], epsilon=float(cell["epsilon"]),
        delta=1e-5, screening=METHODS[cell["method"]], seed=int(cell["seed"]),
        device=opts["device"], threads=int(opts["threads"]), accountant="pld",
        features=ROUTES[cell.get("route", "e2e")], feature_cache=opts.get("feature_cache"),
        member_fraction=0.9 if cell.get("tune") else 1.0, **extra,
    )


_CONFIG_KEYS = ("arch", "arch_kwargs", "features", "epochs", "batch_size", "lr", "momentum", "clip",
                "screen_clip", "screen_sigma", "screen_batch_size", "screen_beta", "ema_decay",
                "lr_schedule", "norm_sigma", "norm_clip")


def run_cell(cell: dict, opts: dict) -> dict:
    """One training run (in a worker process); returns the result row."""
    from dpaudit.training import train

    cfg = _config(cell, opts)
    load0, cpu0, t0 = os.getloadavg()[0], time.process_time(), time.perf_counter()
    res = train(cfg, progress=False)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
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
        "input_statistics": m.get("input_statistics"),
        "config": {k: m["config"].get(k) for k in _CONFIG_KEYS},
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "load_average": [round(load0, 2), round(os.getloadavg()[0], 2)],
        "device": device_name(opts["device"]),
        "threads": int(opts["threads"]),
    }
    if cell.get("tune"):
        row.update(_validation_scores(res, cfg))
    return row


def _validation_scores(res: Any, cfg: Any) -> dict:
    """Held-out 10 % of the training set: published (EMA) weights and the raw last iterate."""
    import numpy as np
    import torch

    from dpaudit.training import load_dataset
    from dpaudit.training.evaluation import evaluate
    from dpaudit.training.trainer import _with_features

    m = res.metadata
    non = np.asarray(m["split"]["nonmember_indices"])
    dev = next(res.model.parameters()).device
    ds = _with_features(cfg, load_dataset(cfg.dataset, cfg.data_dir), dev, from_files=True)
    xv = torch.from_numpy(np.ascontiguousarray(ds.x_train[non])).to(dev)
    yv = torch.from_numpy(np.asarray(ds.y_train[non])).to(dev)
    return {"val_accuracy": evaluate(res.model, xv, yv),
            "val_accuracy_raw": m["history"][-1].get("val_accuracy") if m["history"] else None,
            "val_curve": [round(h.get("val_accuracy", float("nan")), 4) for h in m["history"]]}


# ----------------------------------------------------------------------------- results file
def load_results(path: str | None) -> dict[str, dict]:
    """Rows by cell key; rows written before routes existed are end-to-end rows."""
    if not path or not os.path.exists(path):
        return {}
    with open(path) as f:
        data = json.load(f)
    out = {}
    for r in data.get("results", []):
        r.setdefault("route", "e2e")
        out[cell_key(r)] = r
    return out


def save_results(path: str, results: dict[str, dict], command: str) -> None:
    from dpaudit.io import atomic_write_text

    atomic_write_text(path, json.dumps({"command": command, "results": list(results.values())},
                                       indent=1, allow_nan=False))


# ----------------------------------------------------------------------------- recipes
def parse_overrides(items: list[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        k, _, v = item.partition("=")
        out[k] = json.loads(v)
    return out


def parse_grid(spec: str | None) -> list[dict[str, Any]]:
    """'a=1,2;b=x,y' -> every combination as override dicts (values parsed as JSON when they
    parse, else strings); '' -> [{}]."""
    if not spec:
        return [{}]
    axes = []
    for part in filter(None, spec.split(";")):
        k, _, vals = part.partition("=")
        axes.append([(k.strip(), _json_or_str(v)) for v in vals.split(",")])
    return [dict(combo) for combo in itertools.product(*axes)]


def parse_points(spec: str | None) -> list[dict[str, Any]]:
    """'a=1,b=2;a=3' -> [{'a': 1, 'b': 2}, {'a': 3}] (explicit grid points); '' -> []."""
    points = []
    for part in filter(None, (spec or "").split(";")):
        point = {}
        for item in filter(None, part.split(",")):
            k, _, v = item.partition("=")
            point[k.strip()] = _json_or_str(v)
        points.append(point)
    return points


def _json_or_str(v: str) -> Any:
    try:
        return json.loads(v)
    except json.JSONDecodeError:
        return v


def tag_of(overrides: dict[str, Any]) -> str:
    return ",".join(f"{k}={json.dumps(v, sort_keys=True)}" for k, v in sorted(overrides.items()))


def tuned_overrides(results: dict[str, dict], dataset: str, route: str, eps: float) -> dict[str, Any] | None:
    """The tune grid point with the best mean validation accuracy (plain DP-SGD) for this
    (data set, route, epsilon); ``None`` without tune rows."""
    scores: dict[str, list[float]] = {}
    points: dict[str, dict] = {}
    for r in results.values():
        if (r.get("tune") and r["dataset"] == dataset and r.get("route", "e2e") == route
                and float(r["epsilon"]) == eps and r["method"] == "plain" and "overrides" in r):
            scores.setdefault(r["tag"], []).append(r["val_accuracy"])
            points[r["tag"]] = r["overrides"]
    if not scores:
        return None
    best = max(scores, key=lambda t: (statistics.fmean(scores[t]), t))
    return dict(points[best])


def _cells(a: argparse.Namespace, results: dict[str, dict], base: dict[str, Any]) -> list[tuple[str, dict]]:
    """The runs still to do. Seeds outermost, then epsilons in the order given: a run cut
    short still holds whole comparisons for the first seed and epsilon."""
    cells = []
    grid = (parse_points(a.points) or parse_grid(a.grid)) if a.tune else [{}]
    for s, e, d, route, m, point in itertools.product(
            filter(None, a.seeds.split(",")), a.epsilons.split(","), a.datasets.split(","),
            a.routes.split(","), a.methods.split(","), grid):
        over = {**base, **point}
        if a.recipe == "tuned" and not a.tune:
            over = {**(tuned_overrides(results, d, route, float(e)) or {}), **base}
        c = {"dataset": d, "route": route, "epsilon": float(e), "method": m, "seed": int(s),
             "tune": a.tune, "tag": tag_of(over), "overrides": over}
        if a.recipe == "tuned" and not a.tune:
            c["recipe"] = "tuned"
        if cell_key(c) not in results:
            cells.append((cell_key(c), c))
    return cells


# ----------------------------------------------------------------------------- report
def _fmt(vals: list[float]) -> str:
    if not vals:
        return "-"
    m = 100 * statistics.fmean(vals)
    if len(vals) == 1:
        return f"{m:.2f} (n=1)"
    return f"{m:.2f} ± {100 * statistics.stdev(vals):.2f} (n={len(vals)})"


def reproduce_flags(r: dict) -> str:
    """``dpaudit train`` flags that reproduce a row (beyond the data set and epsilon)."""
    flags = [f"--dataset {r['dataset']}", f"--epsilon {float(r['epsilon']):g}"]
    if r.get("route", "e2e") != "e2e":
        flags.append(f"--features {ROUTES[r['route']]}")
    if r["method"] != "plain":
        flags.append(f"--screening {METHODS[r['method']]}")
    for k, v in sorted((r.get("overrides") or {}).items()):
        if k in _FLAGS:
            flags.append(f"{_FLAGS[k]} {v}")
        elif k == "arch_kwargs":
            flags += [f"--model-arg {ak}={json.dumps(av)}" for ak, av in sorted(v.items())]
        else:
            flags.append(f"[{k}={json.dumps(v)}]")
    return " ".join(flags)


def _labels(sel: list[dict]) -> str:
    """Reduced settings of a cell, in words (fewer epochs than the data set's default)."""
    from dpaudit.training.config import DATASET_DEFAULTS, FEATURE_DEFAULTS

    out = set()
    for r in sel:
        d = {**DATASET_DEFAULTS.get(r["dataset"], {}),
             **FEATURE_DEFAULTS.get((r["dataset"], ROUTES[r.get("route", "e2e")]), {})}
        ep = (r.get("config") or {}).get("epochs")
        if ep is not None and d.get("epochs") and ep < d["epochs"]:
            out.add(f"{ep} epochs (default {d['epochs']})")
        if r.get("carried_over"):
            out.add("previous round")
    return "; ".join(sorted(out))


def _table_rows(rows: list[dict], d: str, eps: list[float]) -> list[str]:
    out = []
    for route, m in itertools.product(ROUTES, METHODS):
        sel = [r for r in rows if r["dataset"] == d and r.get("route", "e2e") == route and r["method"] == m]
        if not sel:
            continue
        cells = []
        for e in eps:
            es = [r for r in sel if float(r["epsilon"]) == e]
            lab = _labels(es)
            cells.append(_fmt([r["test_accuracy"] for r in es]) + (f" [{lab}]" if lab else ""))
        acc = [r["screening"]["accepted"] / max(1, r["screening"]["validation_releases"])
               for r in sel if r.get("screening")]
        ar = f"{statistics.fmean(acc):.2f}" if acc else "1"
        wall = statistics.median([r["wall_seconds"] for r in sel])
        cpus = [r["cpu_seconds"] for r in sel if r.get("cpu_seconds")]
        cpu = f"{statistics.median(cpus):.0f}" if cpus else "-"
        dev = "; ".join(sorted({r["device"] for r in sel}))
        out.append(f"| {route} | {m} | " + " | ".join(cells) + f" | {ar} | {wall:.0f} | {cpu} | {dev} |")
    return out


def _recipe_rows(rows: list[dict], d: str) -> list[str]:
    out = []
    seen = set()
    for r in sorted((r for r in rows if r["dataset"] == d), key=cell_key):
        flags = reproduce_flags(r)
        if flags in seen:
            continue
        seen.add(flags)
        c = r.get("config") or {}
        sig = f"{r['sigma']:.3f}" if r.get("sigma") else "-"
        out.append(f"| {r.get('route', 'e2e')} | {r['method']} | {float(r['epsilon']):g} | {c.get('arch')} "
                   f"| {c.get('epochs')} | {c.get('batch_size')} | {c.get('lr')} | {sig} | `{flags}` |")
    return out


def markdown(results: dict[str, dict], command: str) -> str:
    rows = [r for r in results.values() if not r.get("tune") and r.get("test_accuracy") is not None]
    tune = [r for r in results.values() if r.get("tune")]
    out = ["# Accuracy: plain DP-SGD vs update screening, end to end and on ScatterNet features", "",
           f"Command (last): `{command}`", "",
           "Test accuracy in % (mean ± sample std over seeds), delta = 1e-5, PLD accountant; all "
           "methods of a column spend the same (epsilon, delta): screening runs are charged for every "
           "candidate and every validation query, ScatterNet runs with data normalisation for the "
           "private statistics. Wall / CPU: median seconds per run (CPU = process time of the run; "
           "the machine was shared with other jobs, see `load_average` in the JSON). Labels in "
           "brackets: reduced settings; a dash: not run.", ""]
    eps = sorted({float(r["epsilon"]) for r in rows})
    for d in [x for x in DATASETS if any(r["dataset"] == x for r in rows)]:
        out += [f"#### {d}", "",
                "| route | method | " + " | ".join(f"ε = {e:g}" for e in eps)
                + " | accept rate | wall s/run | CPU s/run | device |",
                "|---|---|" + "---|" * (len(eps) + 4)]
        out += _table_rows(rows, d, eps) + [""]
        out += ["| route | method | ε | model | epochs | batch | lr | σ | reproduce with `dpaudit train` |",
                "|---|---|---|---|---|---|---|---|---|"] + _recipe_rows(rows, d) + [""]
    if tune:
        out += ["#### Validation runs (10 % of the training set held out; no test data)", "",
                "| dataset | route | ε | method | seed | overrides | val acc (EMA) | val acc (raw) | wall s | CPU s |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        for r in sorted(tune, key=cell_key):
            out.append(f"| {r['dataset']} | {r.get('route', 'e2e')} | {r['epsilon']:g} | {r['method']} | "
                       f"{r['seed']} | {r.get('tag', '')} | {100 * r['val_accuracy']:.2f} | "
                       f"{100 * (r['val_accuracy_raw'] or math.nan):.2f} | {r['wall_seconds']:.0f} | "
                       f"{_cpu(r)} |")
        out.append("")
    out += ["Anchors (published, not re-run here):", ""] + [f"- {a}" for a in ANCHORS] + [""]
    return "\n".join(out)


def _cpu(r: dict) -> str:
    return f"{r['cpu_seconds']:.0f}" if r.get("cpu_seconds") else "-"


def _mean_std(sel: list[dict], e: float) -> tuple[float, float]:
    v = [100 * r["test_accuracy"] for r in sel if float(r["epsilon"]) == e]
    return statistics.fmean(v), (statistics.stdev(v) if len(v) > 1 else 0.0)


def plot(results: dict[str, dict], path: str) -> None:
    from dpaudit.plotting import pyplot, save_figure

    plt = pyplot()
    rows = [r for r in results.values() if not r.get("tune") and r.get("test_accuracy") is not None]
    datasets = [x for x in DATASETS if any(r["dataset"] == x for r in rows)]
    fig, axes = plt.subplots(1, max(1, len(datasets)), figsize=(5.2 * max(1, len(datasets)), 4.2),
                             squeeze=False)
    for ax, d in zip(axes[0], datasets):
        for route, m in itertools.product(ROUTES, METHODS):
            sel = [r for r in rows if r["dataset"] == d and r.get("route", "e2e") == route and r["method"] == m]
            eps = sorted({float(r["epsilon"]) for r in sel})
            if eps:
                ms = [_mean_std(sel, e) for e in eps]
                ax.errorbar(eps, [a for a, _ in ms], yerr=[b for _, b in ms], marker="o", capsize=3,
                            ls="-" if route == "e2e" else "--", label=f"{route} {m}")
        ax.plot([2.0], [GOALS[d]], marker="*", ms=12, ls="none", color="k", label="goal (ε=2)")
        ax.plot([2.0], [SCREENING_PAPER[d]], marker="v", ms=8, ls="none", color="tab:purple",
                label="SA-DPSGD paper (ε=2, unsound)")
        ax.plot([3.0], [TB_E2E[d]], marker="x", ms=9, ls="none", color="tab:red", label="T&B end-to-end (ε=3)")
        ax.plot([3.0], [TB_SCATTER[d]], marker="P", ms=9, ls="none", color="tab:green",
                label="T&B ScatterNet (ε=3)")
        ax.set_title(f"{d} (δ = 1e-5, sound accounting)")
        ax.set_xlabel("ε")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    save_figure(fig, path)


# ----------------------------------------------------------------------------- main
def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--datasets", default="mnist,fashion-mnist,cifar10")
    ap.add_argument("--routes", default="e2e,scatternet", help="e2e, scatternet (comma-separated)")
    ap.add_argument("--epsilons", default="1,2,3")
    ap.add_argument("--methods", default="plain,sa,dpsur")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--data-dir", default=os.environ.get("DPAUDIT_DATA"))
    ap.add_argument("--feature-cache", default=None, help="ScatterNet feature cache folder")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--jobs", type=int, default=1, help="parallel worker processes (Ray: tasks at once)")
    ap.add_argument("--executor", choices=("process", "ray"), default="process",
                    help="runs in local worker processes or as Ray tasks (docs/scaling.md)")
    ap.add_argument("--ray-address", default=None,
                    help="Ray cluster for --executor ray (default: $DPAUDIT_RAY_ADDRESS, else a local runtime)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run")
    ap.add_argument("--tune", action="store_true", help="score on a validation split, not the test set")
    ap.add_argument("--grid", default=None, help="tune grid, e.g. 'batch_size=1024,2048;lr=2,4'")
    ap.add_argument("--points", default=None,
                    help="tune points instead of a grid, e.g. 'batch_size=1024,lr=2;batch_size=4096,lr=8'")
    ap.add_argument("--recipe", choices=("default", "tuned"), default="default",
                    help="tuned: each test cell uses its best validation grid point (from --out)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="TrainConfig override, e.g. epochs=10 (repeatable; recorded in the cell tag)")
    ap.add_argument("--out", default=None, help="results JSON (resumed if it exists)")
    ap.add_argument("--include", action="append", default=[], metavar="JSON",
                    help="further results files read (not written): reported, used by --recipe "
                         "tuned and skipped (repeatable; e.g. runs made by parallel jobs)")
    ap.add_argument("--markdown", default=None)
    ap.add_argument("--plot", default=None)
    ap.add_argument("--report-only", action="store_true",
                    help="run nothing: write --markdown/--plot from the results in --out")
    a = ap.parse_args(argv)
    for name, allowed in (("methods", METHODS), ("routes", ROUTES), ("datasets", DATASETS)):
        bad = [v for v in getattr(a, name).split(",") if v not in allowed]
        if bad:
            ap.error(f"unknown {name[:-1]} {bad[0]!r} ({', '.join(allowed)})")
    if a.report_only:
        a.seeds = ""
    return a


def _run_all(cells: list[tuple[str, dict]], opts: dict, a: argparse.Namespace,
             done: Callable[[str, dict], None]) -> None:
    """Run the cells inline (``--jobs 1``) or in worker processes with ``--threads`` threads
    each (:func:`dpaudit.executors.make_executor`, the project's thread policy)."""
    from dpaudit.executors import make_executor

    if a.jobs <= 1 and a.executor == "process":  # in order, each result saved as it comes
        for key, c in cells:
            try:
                done(key, run_cell(c, opts))
            except Exception as exc:  # keep the other runs going; report the failure
                print(f"{key}: FAILED {exc!r}", flush=True)
        return
    with make_executor(a.executor, a.jobs, threads_per_worker=a.threads, address=a.ray_address,
                       device=a.device) as ex:
        futs = {ex.submit(run_cell, c, opts): key for key, c in cells}
        for f in as_completed(futs):
            try:
                done(futs[f], f.result())
            except Exception as exc:
                print(f"{futs[f]}: FAILED {exc!r}", flush=True)


def main(argv: list[str] | None = None) -> None:
    a = _parse_args(argv)
    command = "python bench/accuracy.py " + " ".join(shlex.quote(x) for x in (argv or sys.argv[1:]))
    if a.plot:
        from dpaudit.plotting import require_matplotlib

        require_matplotlib()
    base = parse_overrides(a.overrides)
    opts = {"data_dir": a.data_dir, "device": a.device, "threads": a.threads,
            "feature_cache": a.feature_cache}
    results = {}
    for extra in a.include:
        results.update(load_results(extra))
    results.update(load_results(a.out))
    cells = _cells(a, results, base)
    print(f"{len(cells)} runs to do ({len(results)} already in {a.out})", flush=True)

    def done(key: str, row: dict) -> None:
        results[key] = row
        acc = row["test_accuracy"] if not row.get("tune") else row["val_accuracy"]
        print(f"{key}: acc {acc:.4f} eps {row['epsilon_spent']:.4f} sigma {row['sigma']:.3f} "
              f"{row['wall_seconds']:.0f} s wall {row['cpu_seconds']:.0f} s CPU", flush=True)
        if a.out:
            own = load_results(a.out)
            own[key] = row
            save_results(a.out, own, command)

    _run_all(cells, opts, a, done)
    if a.markdown:
        from dpaudit.io import atomic_write_text

        atomic_write_text(a.markdown, markdown(results, command))
    if a.plot:
        plot(results, a.plot)


if __name__ == "__main__":
    main()
