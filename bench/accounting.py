"""Accounting benchmark: epsilon and time per query for every dpaudit accountant beside
dp-accounting's RDP and PLD (default discretisation), on the standard DP-SGD configs.

One process; the accountants are run *interleaved* (round r runs every accountant once on
every config) and the median time over rounds is reported, so that background load hits
all of them alike. Each accountant gets one untimed warm-up call first (imports, caches).

Usage::

    python bench/accounting.py [--repeats 5] [--delta 1e-5] [--out FILE] [--fine]

``--fine`` adds dp-accounting's PLD at value_discretization_interval=1e-5 (very slow) as a
tightness reference. Prints a markdown table; ``--out`` writes it atomically.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import time
from collections.abc import Callable

CONFIGS: list[tuple[str, float, float, int]] = [
    # (label, q, sigma, steps)
    ("q=256/60000, sigma=1.1, 60 ep", 256 / 60000, 1.1, round(60 * 60000 / 256)),
    ("q=0.01, sigma=4, 1e4 steps", 0.01, 4.0, 10_000),
    ("q=256/60000, sigma=0.8, 15 ep", 256 / 60000, 0.8, round(15 * 60000 / 256)),
    ("q=0.001, sigma=0.6, 1e5 steps", 0.001, 0.6, 100_000),
]


def _dpaudit_accountants() -> dict[str, Callable]:
    from dpaudit.accounting import ACCOUNTANTS, DpSgdRun

    out: dict[str, Callable] = {}
    for name in ("rdp", "ma", "cdp", "pld"):
        if name not in ACCOUNTANTS:
            continue
        module, attr = ACCOUNTANTS[name].split(":")
        try:
            acc = getattr(importlib.import_module(module), attr)
        except Exception as exc:  # noqa: BLE001 - a missing accountant is skipped, not fatal
            print(f"# skipping {name}: {exc}")
            continue

        def query(q, sigma, steps, delta, acc=acc):
            run = DpSgdRun.create(sample_rate=q, noise_multiplier=sigma, steps=steps)
            return acc.epsilon(run, delta).epsilon

        out[f"dpaudit {name}"] = query
    return out


def _dp_accounting(fine: bool) -> dict[str, Callable]:
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

    out = {"dp-accounting rdp": rdp, "dp-accounting pld (1e-4)": pld}
    if fine:
        out["dp-accounting pld (1e-5)"] = lambda q, s, n, d: pld(q, s, n, d, vdi=1e-5)
    return out


def run_bench(repeats: int, delta: float, fine: bool) -> str:
    accs = {**_dpaudit_accountants(), **_dp_accounting(fine)}
    eps: dict[tuple[str, str], float] = {}
    times: dict[tuple[str, str], list[float]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    for label, q, s, n in CONFIGS:  # warm-up (imports, caches), untimed
        for name, fn in accs.items():
            try:
                eps[(label, name)] = float(fn(q, s, n, delta))
            except Exception as exc:  # noqa: BLE001
                eps[(label, name)] = float("nan")
                print(f"# {name} failed on {label}: {exc}")
    for _ in range(repeats):
        for label, q, s, n in CONFIGS:
            for name, fn in accs.items():
                if eps[(label, name)] != eps[(label, name)]:  # failed: skip
                    continue
                t0, c0 = time.perf_counter(), time.process_time()
                fn(q, s, n, delta)
                times.setdefault((label, name), []).append(time.perf_counter() - t0)
                cpu.setdefault((label, name), []).append(time.process_time() - c0)
    ref_name = "dp-accounting pld (1e-4)"
    lines = [
        f"delta = {delta:g}; median of {repeats} interleaved runs; wall and CPU ms per epsilon "
        "query (whole query, fresh accountant each time; CPU time is robust to other load).",
        "",
        "| config | accountant | epsilon | vs dp-acc PLD | wall ms | CPU ms |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for label, *_ in CONFIGS:
        ref = eps.get((label, ref_name), float("nan"))
        for name in accs:
            e = eps[(label, name)]
            ts = times.get((label, name))
            ms = f"{1e3 * statistics.median(ts):.1f}" if ts else "-"
            cs = cpu.get((label, name))
            cms = f"{1e3 * statistics.median(cs):.1f}" if cs else "-"
            rel = f"{100 * (e - ref) / ref:+.2f}%" if ref == ref and e == e else "-"
            lines.append(f"| {label} | {name} | {e:.4f} | {rel} | {ms} | {cms} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--delta", type=float, default=1e-5)
    ap.add_argument("--out", default=None, help="write the markdown table here")
    ap.add_argument("--fine", action="store_true", help="add dp-accounting PLD at 1e-5 (slow)")
    args = ap.parse_args(argv)
    table = run_bench(args.repeats, args.delta, args.fine)
    print(table)
    if args.out:
        from dpaudit.io import atomic_write_text

        atomic_write_text(args.out, table)


if __name__ == "__main__":
    main()
