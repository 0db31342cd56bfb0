"""Planning benchmark: time to find the noise that spends a target (epsilon, delta), for
every dpaudit accountant beside Opacus-style bisection and dp-accounting's
``calibrate_dp_mechanism`` (RDP and PLD), plus whole-process time of ``dpaudit plan``.

Setup (the issue's check): epsilon = 2, delta = 1e-5, q = 256/60000, 30 epochs, Poisson,
constant schedule; also the exponential schedule (30 distinct noise levels) for dpaudit.

One process; methods run *interleaved* (round r runs every method once) and the median over
rounds is reported. Each method gets one untimed warm-up call (imports), and every
``functools.lru_cache`` in the accounting modules is cleared before every timed call, so
repeated rounds do not measure cache hits. ``solve`` is the search alone (``curve=False``);
``plan`` adds the per-epoch cumulative epsilon curve (what ``dpaudit plan`` prints).

Usage::

    python bench/plan.py [--rounds 3] [--no-slow] [--no-process] [--long] [--out FILE]

``--no-slow`` skips dp-accounting's PLD calibration (~5 s per call). ``--long`` adds one
timed ``solve_plan`` (pld, with the cumulative curve) per run length of 300, 1000 and
42736 epochs (~10^7 steps) to show how the cost grows. Whole-process timings cover
``dpaudit plan``, ``account`` and ``compare``, with bytecode caches written as in an
installed package (``PYTHONDONTWRITEBYTECODE`` is dropped for the children). Prints a markdown table; ``--out`` writes it
atomically.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

EPS, DELTA, N, B, EPOCHS = 2.0, 1e-5, 60000, 256, 30


def _clear_caches() -> None:
    from dpaudit.accounting import clear_caches

    clear_caches()


def _dpaudit_methods() -> dict[str, Callable[[], tuple[float, float, int]]]:
    from dpaudit.accounting import ACCOUNTANTS
    from dpaudit.allocation import solve_plan

    out: dict[str, Callable[[], tuple[float, float, int]]] = {}

    def make(acc: str, schedule: str, curve: bool):
        def f():
            p = solve_plan(EPS, DELTA, dataset_size=N, batch_size=B, epochs=EPOCHS,
                           accountant=acc, schedule=schedule, curve=curve)
            return p.scale, p.epsilon, p.evaluations

        return f

    for acc in ("rdp", "ma", "cdp", "pld"):
        if acc in ACCOUNTANTS:
            out[f"dpaudit solve {acc}"] = make(acc, "constant", False)
    out["dpaudit plan pld (+curve)"] = make("pld", "constant", True)
    out["dpaudit plan rdp (+curve)"] = make("rdp", "constant", True)
    out["dpaudit solve rdp, exp schedule"] = make("rdp", "exp", False)
    out["dpaudit solve pld, exp schedule"] = make("pld", "exp", False)
    return out


def _steps() -> int:
    """Steps of the planned run (dpaudit's rule: whole epochs of steps_per_epoch)."""
    from dpaudit.accounting import steps_per_epoch

    return EPOCHS * steps_per_epoch("poisson", dataset_size=N, batch_size=B)


def _opacus() -> tuple[float, float, int]:
    """Opacus' own calibration (doubling + bisection on its RDP accountant, default
    epsilon_tolerance=0.01); epsilon re-evaluated with the same accountant."""
    from opacus.accountants import RDPAccountant
    from opacus.accountants.utils import get_noise_multiplier

    q = B / N
    s = get_noise_multiplier(target_epsilon=EPS, target_delta=DELTA, sample_rate=q,
                             steps=_steps(), accountant="rdp")
    acc = RDPAccountant()
    acc.history = [(s, q, _steps())]
    return s, acc.get_epsilon(DELTA), -1


def _dpa(kind: str) -> Callable[[], tuple[float, float, int]]:
    def f():
        import dp_accounting
        from dp_accounting import mechanism_calibration as mc

        q = B / N

        def event(s):
            return dp_accounting.SelfComposedDpEvent(
                dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(s)), _steps()
            )

        make = (dp_accounting.rdp.RdpAccountant if kind == "rdp"
                else dp_accounting.pld.PLDAccountant)
        s = mc.calibrate_dp_mechanism(make, event, EPS, DELTA)
        acc = make()
        acc.compose(event(s))
        return s, acc.get_epsilon(DELTA), -1

    return f


def _process_times(rounds: int) -> dict[str, tuple[float, float]]:
    cmds = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -c 'import numpy, click'": [sys.executable, "-c", "import numpy, click"],
        "dpaudit plan --epsilon 2": [sys.executable, "-m", "cli.main", "plan", "--epsilon", "2"],
        "dpaudit plan --epsilon 2 -a rdp": [sys.executable, "-m", "cli.main", "plan", "--epsilon",
                                            "2", "-a", "rdp"],
        "dpaudit account -n 60000 -b 256 -s 1.1 -e 60": [sys.executable, "-m", "cli.main", "account",
                                                         "-n", "60000", "-b", "256", "-s", "1.1", "-e", "60"],
        "dpaudit account ... -a all --batching shuffle": [
            sys.executable, "-m", "cli.main", "account", "-n", "60000", "-b", "256", "-s", "1.1", "-e",
            "60", "-a", "all", "--batching", "shuffle"],
        "dpaudit compare -s 1.1 -e 60 --batching shuffle": [
            sys.executable, "-m", "cli.main", "compare", "-s", "1.1", "-e", "60", "--batching", "shuffle"],
        "dpaudit account -s 1e-4 -e 60 -a all": [sys.executable, "-m", "cli.main", "account", "-s", "1e-4",
                                                 "-e", "60", "-a", "all"],
    }
    # As installed: bytecode caches written (an untimed first run of each command writes
    # them; PYTHONDONTWRITEBYTECODE, set in some sandboxes, would recompile every module).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    for c in cmds.values():
        subprocess.run(c, check=True, capture_output=True, env=env)
    times: dict[str, list[float]] = {k: [] for k in cmds}
    cpu: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(rounds):
        for k, c in cmds.items():
            t = time.perf_counter()
            r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            subprocess.run(c, check=True, capture_output=True, env=env)
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            times[k].append(time.perf_counter() - t)
            cpu[k].append((r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime))
    return {k: (statistics.median(times[k]), statistics.median(cpu[k])) for k in cmds}


def _long_runs() -> list[str]:
    """One solve per run length (pld, constant schedule, with the cumulative curve)."""
    from dpaudit.allocation import solve_plan

    lines = ["", "| pld plan with curve, epochs (steps) | wall s | CPU s | evaluations |", "|---|---:|---:|---:|"]
    for epochs in (300, 1000, 42736):
        _clear_caches()
        t, c = time.perf_counter(), time.process_time()
        p = solve_plan(EPS, DELTA, dataset_size=N, batch_size=B, epochs=epochs, accountant="pld")
        lines.append(f"| {epochs} ({p.run.total_steps}) | {time.perf_counter() - t:.1f} | "
                     f"{time.process_time() - c:.1f} | {p.evaluations} |")
    return lines


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-slow", action="store_true", help="skip dp-accounting PLD calibration")
    ap.add_argument("--no-process", action="store_true", help="skip whole-process timings")
    ap.add_argument("--long", action="store_true", help="add plans of 300, 1000, 42736 epochs")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    methods = _dpaudit_methods()
    methods["Opacus get_noise_multiplier (rdp)"] = _opacus
    methods["dp-accounting calibrate (RDP)"] = _dpa("rdp")
    if not args.no_slow:
        methods["dp-accounting calibrate (PLD)"] = _dpa("pld")

    results: dict[str, tuple[float, float, int]] = {}
    for f in methods.values():  # warm-up: imports
        f()
    times: dict[str, list[float]] = {k: [] for k in methods}
    cpu: dict[str, list[float]] = {k: [] for k in methods}
    for _ in range(args.rounds):
        for name, f in methods.items():
            _clear_caches()
            t, c = time.perf_counter(), time.process_time()
            results[name] = f()
            times[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)

    lines = [
        f"Planning: epsilon={EPS:g}, delta={DELTA:g}, q={B}/{N}, {EPOCHS} epochs, Poisson "
        f"(median of {args.rounds} interleaved rounds, caches cleared; {sys.platform}, "
        f"python {sys.version.split()[0]})",
        "",
        "| method | wall ms | CPU ms | sigma_0 | epsilon spent | accountant evaluations |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in methods:
        s, e, n = results[name]
        lines.append(
            f"| {name} | {1000 * statistics.median(times[name]):.1f} | "
            f"{1000 * statistics.median(cpu[name]):.1f} | {s:.5f} | {e:.6f} | "
            f"{n if n >= 0 else '-'} |"
        )
    if args.long:
        lines += _long_runs()
    if not args.no_process:
        lines += ["", "| whole process | wall ms | CPU ms |", "|---|---:|---:|"]
        for k, (w, c) in _process_times(max(3, args.rounds)).items():
            lines.append(f"| `{k}` | {1000 * w:.0f} | {1000 * c:.0f} |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        from dpaudit.io import atomic_write_text

        atomic_write_text(args.out, text + "\n")
    return text


if __name__ == "__main__":
    main()
