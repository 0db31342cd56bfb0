"""Audit benchmark: tightness of the white-box canary audits and cost of the probes.

* Tightness at a claimed eps = 2 (delta = 1e-5): the multi-run Dirac canary audit (Nasr et al.
  2023; Clopper-Pearson and GDP routes) and the one-run audit (Steinke et al. 2023) on the
  reference trainer, beside Opacus as the anchor library, each on the same claimed mechanism.
  The claim's sigma is solved so that dp-accounting's PLD accountant gives eps = 2 exactly;
  the figure reported is eps_lb / eps at 95% confidence (one check, no Bonferroni split).
* Cost: the six probes on the reference trainer and on Opacus, interleaved rounds, medians.

One process; inline execution unless ``--workers`` > 1 (process pool for the multi-run audit).

Usage::

    python bench/audit.py [--runs 2000] [--canaries 1000 5000] [--config full|poisson] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def solve_sigma(q: float, steps: int, eps: float = 2.0, delta: float = 1e-5) -> float:
    """sigma such that dp-accounting's PLD accountant gives exactly ``eps`` at ``delta``."""
    import dp_accounting
    from dp_accounting import pld
    from scipy.optimize import brentq

    def f(s: float) -> float:
        g = dp_accounting.GaussianDpEvent(s)
        ev = g if q >= 1 else dp_accounting.PoissonSampledDpEvent(q, g)
        acc = pld.PLDAccountant(value_discretization_interval=1e-4)
        acc.compose(dp_accounting.SelfComposedDpEvent(ev, steps))
        return acc.get_epsilon(delta) - eps

    return float(brentq(f, 0.3, 50.0, xtol=1e-5))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=2000, help="multi-run audit: runs per world")
    ap.add_argument("--canaries", type=int, nargs="*", default=[1000, 5000])
    ap.add_argument("--config", choices=["full", "poisson"], default="full")
    ap.add_argument("--repeats", type=int, default=3, help="probe-timing rounds")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--trainers", nargs="*", default=["reference", "opacus"])
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from dpaudit.audit import Claim, OpacusAdapter, ReferenceAdapter, audit
    from dpaudit.audit.canaries import canary_audit
    from dpaudit.audit.one_run import one_run_audit

    q, steps = (1.0, 1) if args.config == "full" else (0.25, 4)
    sigma = solve_sigma(q, steps)
    make = {"reference": ReferenceAdapter, "opacus": OpacusAdapter}
    results: dict = {"config": {"sample_rate": q, "steps": steps, "noise_multiplier": sigma, "epsilon": 2.0,
                                "delta": 1e-5, "confidence": 0.95}, "multi_run": [], "one_run": [], "probes": {}}
    print(f"claimed eps=2, delta=1e-5: q={q}, steps={steps}, sigma={sigma:.5f} (PLD)")
    ex = "inline" if args.workers <= 1 else "process"
    for name in args.trainers:
        claim = Claim(epsilon=2.0, delta=1e-5, sample_rate=q, noise_multiplier=sigma, clip=1.0, steps=steps,
                      dataset_size=4 if q >= 1 else 16)
        t = time.perf_counter()
        r = canary_audit(make[name](claim), alpha=0.05, runs=args.runs, seed=1, executor=ex, workers=args.workers)
        secs = time.perf_counter() - t
        d = r.details
        row = {"trainer": name, "runs_per_world": args.runs, "eps_lb_cp": d["epsilon_lower_cp"],
               "eps_lb_gdp": d["gdp"]["epsilon_lower"], "mu_lb": d["gdp"]["mu_lower"], "mu_hat": d["gdp"]["mu_hat"],
               "ratio_cp": d["ratio_cp"], "ratio_gdp": d["ratio_gdp"], "seconds": secs, "verdict": r.verdict}
        results["multi_run"].append(row)
        print(f"multi-run {name:9s} R={args.runs}/world: eps_lb CP={row['eps_lb_cp']:.3f} "
              f"GDP={row['eps_lb_gdp']:.3f} (mu_lb={row['mu_lb']:.3f}, mu_hat={row['mu_hat']:.3f}) "
              f"ratio GDP={row['ratio_gdp']:.3f} CP={row['ratio_cp']:.3f}  {secs:.1f}s  {r.verdict}")
    for m in args.canaries:
        for name in args.trainers:
            claim = Claim(epsilon=2.0, delta=1e-5, sample_rate=q, noise_multiplier=sigma, clip=1.0, steps=steps,
                          dataset_size=m)
            t = time.perf_counter()
            r = one_run_audit(make[name](claim), alpha=0.05, canaries=m, seed=1)
            secs = time.perf_counter() - t
            best = r.details["best"]
            row = {"trainer": name, "canaries": m, "eps_lb": best["epsilon"], "ratio": r.details["ratio"],
                   "guesses": best.get("guesses"), "correct": best.get("correct"), "seconds": secs,
                   "verdict": r.verdict}
            results["one_run"].append(row)
            print(f"one-run   {name:9s} m={m}: eps_lb={row['eps_lb']:.3f} ratio={row['ratio']:.3f} "
                  f"({row['correct']}/{row['guesses']})  {secs:.1f}s  {r.verdict}")
    # probe cost, interleaved rounds
    claim = Claim(epsilon=4.0, delta=1e-5, sample_rate=0.1, noise_multiplier=1.0, clip=1.0, steps=20,
                  dataset_size=100)
    times: dict[str, list[float]] = {n: [] for n in args.trainers}
    for n in args.trainers:  # warm-up
        audit(make[n](claim), checks="probes")
    for _ in range(args.repeats):
        for n in args.trainers:
            t = time.perf_counter()
            audit(make[n](claim), checks="probes")
            times[n].append(time.perf_counter() - t)
    for n in args.trainers:
        results["probes"][n] = statistics.median(times[n])
        print(f"probes    {n:9s}: median {results['probes'][n]:.2f}s over {args.repeats} rounds")
    if args.out:
        from dpaudit.io import atomic_write_text

        atomic_write_text(args.out, json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
