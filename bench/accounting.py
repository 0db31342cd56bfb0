"""Accounting benchmark: epsilon and time per query for every dpaudit accountant beside
dp-accounting's RDP and PLD, on the standard DP-SGD configs and the two small-epsilon
configs of issue 15.

One process; the contenders run *interleaved* (round r runs every contender once on every
config) and the median over rounds is reported, so that background load hits all of them
alike. Each contender gets one untimed warm-up call first (imports, FFT size table). Two
timings per query:

* warm: dpaudit's per-(q, sigma) curve caches kept (a repeated query, e.g. in a loop);
* cold: those caches emptied (``dpaudit.accounting.clear_caches``) before the call, i.e.
  the first query for a new (q, sigma) in a warm process.

dp-accounting has no such caches (a fresh accountant per query). Contenders: dpaudit
``rdp``, ``ma``, ``cdp``, ``pld`` (automatic grid) and ``pld`` at dp-accounting's default
grid 1e-4 (like-for-like), dp-accounting's RDP and PLD at 1e-4.

Steps: the first config is 60 epochs of q = 256/60000 counted as Opacus does (floor of
60 x N/B = 14062 steps, ``steps_rule="expected"``); dpaudit's own trainer runs 14040.

Usage::

    python bench/accounting.py [--repeats 5] [--delta 1e-5] [--out FILE] [--fine]
    python bench/accounting.py --sweep 387     # pld vs rdp and its own fine grid, random configs
    python bench/accounting.py --balls-in-bins # the same configs under balls-in-bins batching
    python bench/accounting.py --reports       # only account_run / compare_run timings

``--balls-in-bins``: each config as a balls-in-bins run (t = ceil(1/q) batches per epoch, the
same steps), its ``pld`` random-allocation figure beside the Poisson figure of the same epochs
(``run.with_batching("poisson")``), the proven lower bounds of balls-in-bins and of shuffling,
and the CPU/wall time of the upper bound, of the lower bound and of the whole
``account_run`` (what ``dpaudit account --json`` computes), warm and cold.

``--fine`` adds, per config, one untimed tightness reference: dp-accounting's PLD at the
grid max(1e-7, min(2e-5, 1e-4 x dpaudit's pld epsilon)) (up to ~100 s per config); the column
"vs fine" compares with it. Prints a markdown table; ``--out`` writes it atomically.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time
from collections.abc import Callable

from dpaudit.accounting import DpSgdRun, clear_caches

CONFIGS: list[tuple[str, float, float, int]] = [
    # (label, q, sigma, steps)
    ("q=256/60000, sigma=1.1, 60 ep", 256 / 60000, 1.1,
     DpSgdRun.create(dataset_size=60000, batch_size=256, noise_multiplier=1.1, epochs=60,
                     steps_rule="expected").total_steps),
    ("q=0.01, sigma=4, 1e4 steps", 0.01, 4.0, 10_000),
    ("q=256/60000, sigma=0.8, 15 ep", 256 / 60000, 0.8,
     DpSgdRun.create(dataset_size=60000, batch_size=256, noise_multiplier=0.8, epochs=15,
                     steps_rule="expected").total_steps),
    ("q=0.001, sigma=0.6, 1e5 steps", 0.001, 0.6, 100_000),
    ("q=1e-4, sigma=50, 1e5 steps", 1e-4, 50.0, 100_000),
    ("q=1e-6, sigma=1, 1e5 steps", 1e-6, 1.0, 100_000),
]

Query = Callable[[float, float, int, float], float]


def _dpaudit_accountants() -> dict[str, tuple[Query, bool]]:
    """name -> (query, uses dpaudit caches)."""
    from dpaudit.accounting import ACCOUNTANTS
    from dpaudit.accounting.pld import PldAccountant

    out: dict[str, tuple[Query, bool]] = {}
    for name in ("rdp", "ma", "cdp", "pld"):
        module, attr = ACCOUNTANTS[name].split(":")
        acc = getattr(importlib.import_module(module), attr)

        def query(q, sigma, steps, delta, acc=acc):
            run = DpSgdRun.create(sample_rate=q, noise_multiplier=sigma, steps=steps)
            return acc.epsilon(run, delta).epsilon

        out[f"dpaudit {name}"] = (query, True)
    fixed = PldAccountant(value_discretization_interval=1e-4)

    def pld_fixed(q, sigma, steps, delta):
        return fixed.epsilon(DpSgdRun.create(sample_rate=q, noise_multiplier=sigma, steps=steps), delta).epsilon

    out["dpaudit pld (1e-4)"] = (pld_fixed, True)
    return out


def _dp_accounting() -> dict[str, tuple[Query, bool]]:
    import dp_accounting
    from dp_accounting.pld import pld_privacy_accountant
    from dp_accounting.rdp import rdp_privacy_accountant

    def event(q, sigma, steps):
        return dp_accounting.SelfComposedDpEvent(
            dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps
        )

    def rdp(q, sigma, steps, delta):
        acc = rdp_privacy_accountant.RdpAccountant()
        acc.compose(event(q, sigma, steps))
        return acc.get_epsilon(delta)

    def pld(q, sigma, steps, delta, vdi=1e-4):
        acc = pld_privacy_accountant.PLDAccountant(value_discretization_interval=vdi)
        acc.compose(event(q, sigma, steps))
        return acc.get_epsilon(delta)

    return {"dp-accounting rdp": (rdp, False), "dp-accounting pld (1e-4)": (pld, False)}


def _fine_reference(q: float, sigma: float, steps: int, delta: float, h: float) -> float:
    """dp-accounting's pessimistic (connect-the-dots) PLD of the subsampled Gaussian at grid
    ``h``, self-composed (``privacy_loss_distribution``; untimed tightness reference). Its
    ``PLDAccountant`` at grids below ~1e-7 drifts upward (0.000736 at 6.6e-8 for
    q = 1e-6, sigma = 1, 1e5 steps, where this path gives 0.000661)."""
    from dp_accounting.pld import privacy_loss_distribution as pldm

    pmf = pldm.from_gaussian_mechanism(sigma, sampling_prob=q, value_discretization_interval=h)
    return float(pmf.self_compose(steps).get_epsilon_for_delta(delta))


def _timed(fn: Query, args: tuple[float, float, int, float], cold: bool) -> tuple[float, float]:
    if cold:
        clear_caches()
    t0, c0 = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - t0, time.process_time() - c0


def _measure(accs: dict[str, tuple[Query, bool]], repeats: int, delta: float) -> tuple[dict, dict, dict, dict]:
    """(epsilon, warm wall, warm CPU, cold CPU) per (config, contender), interleaved."""
    eps: dict[tuple[str, str], float] = {}
    wall: dict[tuple[str, str], list[float]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    cold_cpu: dict[tuple[str, str], list[float]] = {}
    for label, q, s, n in CONFIGS:  # warm-up (imports, caches), untimed
        for name, (fn, _) in accs.items():
            try:
                eps[(label, name)] = float(fn(q, s, n, delta))
            except Exception as exc:  # noqa: BLE001 - a failing contender is reported, not fatal
                eps[(label, name)] = float("nan")
                print(f"# {name} failed on {label}: {exc}")
    for _ in range(repeats):
        for label, q, s, n in CONFIGS:
            for name, (fn, cached) in accs.items():
                key = (label, name)
                if eps[key] != eps[key]:  # failed: skip
                    continue
                if cached:
                    fn(q, s, n, delta)  # fill this contender's caches (an earlier cold run emptied them)
                w, c = _timed(fn, (q, s, n, delta), cold=False)
                wall.setdefault(key, []).append(w)
                cpu.setdefault(key, []).append(c)
                if cached:
                    cold_cpu.setdefault(key, []).append(_timed(fn, (q, s, n, delta), cold=True)[1])
    return eps, wall, cpu, cold_cpu


def _ms(xs: list[float] | None) -> str:
    return f"{1e3 * statistics.median(xs):.1f}" if xs else "-"


def _rel(e: float, ref: float) -> str:
    return f"{100 * (e - ref) / ref:+.2f}%" if ref == ref and e == e and ref > 0 else "-"


def run_bench(repeats: int, delta: float, fine: bool) -> str:
    accs = {**_dpaudit_accountants(), **_dp_accounting()}
    eps, wall, cpu, cold_cpu = _measure(accs, repeats, delta)
    fine_ref: dict[str, tuple[float, float]] = {}
    if fine:
        for label, q, s, n in CONFIGS:
            # dp-accounting turns erratic below 1e-7 (q = 1e-6, sigma = 1, 1e5 steps: 0.000661
            # at 1e-7 and 6.6e-8, 0.000736 at 6.61e-8, 0.052 at 5e-8)
            h = max(1e-7, min(2e-5, 1e-4 * eps[(label, "dpaudit pld")]))
            fine_ref[label] = (h, _fine_reference(q, s, n, delta, h))
    ref_name = "dp-accounting pld (1e-4)"
    lines = [
        f"delta = {delta:g}; median of {repeats} interleaved runs; ms per epsilon query (whole "
        f"query, fresh accountant each time); python {sys.version.split()[0]}.",
        "",
        "| config | accountant | epsilon | vs dp-acc PLD (1e-4) | vs fine | wall ms (warm) | CPU ms (warm) | CPU ms (cold) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, *_ in CONFIGS:
        ref = eps.get((label, ref_name), float("nan"))
        fine_h, fine_e = fine_ref.get(label, (float("nan"), float("nan")))
        for name, (_, cached) in accs.items():
            key = (label, name)
            e = eps[key]
            cold = _ms(cold_cpu.get(key)) if cached else "(no cache)"
            lines.append(f"| {label} | {name} | {e:.6g} | {_rel(e, ref)} | {_rel(e, fine_e)} | "
                         f"{_ms(wall.get(key))} | {_ms(cpu.get(key))} | {cold} |")
        if fine_ref:
            lines.append(f"| {label} | dp-accounting pld ({fine_h:.2g}, reference, untimed) | "
                         f"{fine_e:.6g} | {_rel(fine_e, ref)} | +0.00% | - | - | - |")
    return "\n".join(lines) + "\n"


def report_times(repeats: int, delta: float) -> str:
    """In-process CPU time of the run-level reports (what ``dpaudit compare`` and ``dpaudit
    account`` compute), warm (after one untimed call)."""
    from dpaudit.accounting.report import account_run, compare_run, run_from_values

    run = run_from_values(noise_multiplier=1.1, epochs=60, batching="shuffle")
    bib = run.with_batching("balls_in_bins")
    cases = {
        "compare_run (shuffled, N=60000, B=256, sigma=1.1, 60 ep; all three batchings)":
            lambda: compare_run(run, delta),
        "account_run 'all' (same run)": lambda: account_run(run, delta, "all"),
        "account_run pld (same run, balls-in-bins)": lambda: account_run(bib, delta),
    }
    times: dict[str, list[float]] = {k: [] for k in cases}
    for fn in cases.values():
        fn()
    for _ in range(repeats):
        for name, fn in cases.items():
            c0 = time.process_time()
            fn()
            times[name].append(time.process_time() - c0)
    lines = ["| report (warm, in-process) | CPU ms |", "|---|---:|"]
    lines += [f"| {k} | {_ms(v)} |" for k, v in times.items()]
    return "\n".join(lines) + "\n"


def sweep(n: int, delta: float, seed: int = 15) -> str:
    """Random configurations (q log-uniform in [1e-6, 0.5], sigma in [0.3, 100], 1-10^5
    steps): how often ``pld`` is above ``rdp``, and ``pld``'s largest excess over its own
    fixed grid refined to max(2e-8, min(1e-4, 3e-5 x epsilon)) (each figure an upper bound)."""
    import math
    import random

    from dpaudit.accounting import get_accountant
    from dpaudit.accounting.pld import ACCOUNTANT, PldAccountant

    rng = random.Random(seed)
    rdp = get_accountant("rdp")
    above, excess, c0 = 0, [], time.process_time()
    for _ in range(n):
        q = 10 ** rng.uniform(-6, math.log10(0.5))
        s = 10 ** rng.uniform(math.log10(0.3), 2)
        steps = int(10 ** rng.uniform(0, 5))
        run = DpSgdRun.create(sample_rate=q, noise_multiplier=s, steps=steps)
        e = ACCOUNTANT.epsilon(run, delta).epsilon
        above += e > rdp.epsilon(run, delta).epsilon * (1 + 1e-12)
        if e > 0:
            h = min(1e-4, max(2e-8, 3e-5 * e))
            excess.append(e / PldAccountant(value_discretization_interval=h).epsilon(run, delta).epsilon - 1)
    return (f"sweep of {n} random configs (seed {seed}): pld above rdp in {above}; pld > 0 in "
            f"{len(excess)}, largest excess over its fine grid {100 * max(excess):.3f}%, "
            f"above 0.5% in {sum(x > 5e-3 for x in excess)}; {time.process_time() - c0:.0f} s CPU\n")


def balls_in_bins_bench(repeats: int, delta: float) -> str:
    """The configs under balls-in-bins batching (module docstring), interleaved medians."""
    from dpaudit.accounting import balls_in_bins, shuffle
    from dpaudit.accounting.pld import ACCOUNTANT
    from dpaudit.accounting.report import account_run

    runs = {label: DpSgdRun.create(sample_rate=q, noise_multiplier=s, steps=n, batching="balls_in_bins")
            for label, q, s, n in CONFIGS}
    tasks: dict[str, Callable[[DpSgdRun], object]] = {
        "upper": lambda r: ACCOUNTANT.epsilon(r, delta, extras=False),
        "lower": lambda r: balls_in_bins.lower_bound(r, delta),
        "account": lambda r: account_run(r, delta),
    }
    figs = {}
    for label, run in runs.items():  # untimed figures (and warm-up)
        figs[label] = (
            ACCOUNTANT.epsilon(run, delta, extras=False).epsilon,
            ACCOUNTANT.epsilon(run.with_batching("poisson"), delta, extras=False).epsilon,
            balls_in_bins.epsilon_lower(run, delta),
            shuffle.epsilon_lower(run.with_batching("shuffle"), delta),
        )
    warm: dict[tuple[str, str], list[tuple[float, float]]] = {}
    cold: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for _ in range(repeats):
        for label, run in runs.items():
            for name, fn in tasks.items():
                fn(run)  # fill the caches a cold run emptied
                t0, c0 = time.perf_counter(), time.process_time()
                fn(run)
                warm.setdefault((label, name), []).append((time.perf_counter() - t0, time.process_time() - c0))
                clear_caches()
                t0, c0 = time.perf_counter(), time.process_time()
                fn(run)
                cold.setdefault((label, name), []).append((time.perf_counter() - t0, time.process_time() - c0))

    def ms(xs: list[tuple[float, float]], i: int) -> str:
        return f"{1e3 * statistics.median(x[i] for x in xs):.0f}"

    lines = [
        f"delta = {delta:g}; balls-in-bins runs of the configs (t = ceil(1/q)); median of {repeats} "
        f"interleaved runs; CPU ms (wall ms) per call, warm / cold (caches emptied); python "
        f"{sys.version.split()[0]}.",
        "",
        "| config | balls-in-bins pld | Poisson pld (same epochs) | ratio | balls-in-bins lower | "
        "shuffle lower | upper ms warm / cold | lower ms warm / cold | account_run ms warm / cold |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label in runs:
        up, poi, low, shl = figs[label]
        cells = []
        for name in tasks:
            w, c = warm[(label, name)], cold[(label, name)]
            cells.append(f"{ms(w, 1)} ({ms(w, 0)}) / {ms(c, 1)} ({ms(c, 0)})")
        lines.append(f"| {label} | {up:.6g} | {poi:.6g} | {up / poi:.4f} | {low:.6g} | {shl:.4g} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--delta", type=float, default=1e-5)
    ap.add_argument("--out", default=None, help="write the markdown table here")
    ap.add_argument("--fine", action="store_true", help="add a fine dp-accounting PLD reference (slow)")
    ap.add_argument("--sweep", type=int, default=0, metavar="N",
                    help="only run the random-configuration sweep of N configs")
    ap.add_argument("--balls-in-bins", action="store_true",
                    help="only the configs under balls-in-bins batching (upper, lower, times)")
    ap.add_argument("--reports", action="store_true", help="only the report timings")
    args = ap.parse_args(argv)
    if args.balls_in_bins:
        table = balls_in_bins_bench(args.repeats, args.delta)
    elif args.reports:
        table = report_times(args.repeats, args.delta)
    elif args.sweep:
        table = sweep(args.sweep, args.delta)
    else:
        table = run_bench(args.repeats, args.delta, args.fine) + "\n" + report_times(args.repeats, args.delta)
    print(table)
    if args.out:
        from dpaudit.io import atomic_write_text

        atomic_write_text(args.out, table)


if __name__ == "__main__":
    main()
