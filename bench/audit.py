"""Audit benchmark: tightness of the canary audits, cost of a default audit, false alarms.

Parts (``--part``, default all):

* ``tightness`` -- at a claimed eps = 2 (delta = 1e-5) the certified multi-run eps_lb
  (f-DP test of the claimed curve, ``fdp-multi-run``) and one-run eps_lb (``fdp-one-run``)
  at 95% confidence (the check alone, no Bonferroni split), beside the ``cp-bonferroni`` and
  Steinke et al. figures, for the reference trainer and Opacus (same seeded generators:
  identical noise, so their figures coincide -- a cross-check of the adapters). The claim's
  sigma is solved so that dp-accounting's PLD accountant gives eps = 2 exactly. Configs:
  ``full`` (q = 1, one step), ``poisson`` (q = 0.25, 4 steps), ``digits`` (the claim of
  ``dpaudit train --epsilon 2``: N = 1437, B = 128, T = 330).
* ``cli`` -- whole-process CPU and wall time of the default ``dpaudit audit`` commands
  (``--model`` a digits model, ``--builtin reference`` / ``opacus`` on its claim).
* ``alarms`` -- false alarms of default audits (confidence 0.999) of the correct trainers
  over many seeds, and of the sampler check at q = 0.001, N = 50,000.

One process (children for ``cli``); torch on one thread; CPU time (``time.process_time``,
or the children's rusage) beside wall time -- the machine is shared.

Usage::

    python bench/audit.py [--part tightness|cli|alarms] [--runs 20000] [--canaries 100000]
        [--configs full poisson digits] [--seeds 100] [--sampler-seeds 500] [--model model.pt]
        [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any


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


CONFIGS = {"full": (1.0, 1, 4, None), "poisson": (0.25, 4, 16, None), "digits": (128 / 1437, 330, 1437, 128.0)}


def _claim(name: str, n: int | None = None) -> Any:
    from dpaudit.audit import Claim

    q, steps, size, b = CONFIGS[name]
    sigma = solve_sigma(q, steps)
    return Claim(epsilon=2.0, delta=1e-5, sample_rate=q, noise_multiplier=sigma, clip=1.0, steps=steps,
                 dataset_size=n or size, expected_batch_size=b or 0.0)


def _timed(fn: Any) -> tuple[Any, float, float]:
    c, w = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - c, time.perf_counter() - w


def tightness(args: argparse.Namespace) -> list[dict[str, Any]]:
    from dpaudit.audit import OpacusAdapter, ReferenceAdapter
    from dpaudit.audit.canaries import canary_audit
    from dpaudit.audit.one_run import one_run_audit

    make = {"reference": ReferenceAdapter, "opacus": OpacusAdapter}
    rows = []
    for cfg in args.configs:
        claim = _claim(cfg)
        print(f"[{cfg}] claim {claim.summary()}", flush=True)
        for name in args.trainers:
            r, cpu, wall = _timed(lambda n=name, c=claim: canary_audit(make[n](c), alpha=0.05, runs=args.runs, seed=1))
            d = r.details
            row = {"config": cfg, "audit": "multi-run", "trainer": name, "runs_per_world": args.runs,
                   "eps_lb": d["epsilon_lower_bound"], "mu_lb": d["mu_lower"], "p_value": d["p_value"],
                   "cp_bonferroni": d["cp_bonferroni"]["epsilon_lower_bound"],
                   "gdp_estimate": d["gdp_estimate"]["epsilon_hat"], "ratio": d["ratio"], "cpu_s": cpu,
                   "wall_s": wall, "verdict": r.verdict}
            rows.append(row)
            print(f"  multi-run {name:9s} R={args.runs}: eps_lb={row['eps_lb']:.3f} ({row['ratio']:.2f} eps) "
                  f"cp={row['cp_bonferroni']:.3f} gdp-est={row['gdp_estimate']:.3f}  {cpu:.1f}s CPU {wall:.1f}s wall",
                  flush=True)
        for m in args.canaries:
            c1 = _claim(cfg, n=max(m, CONFIGS[cfg][2]))
            for name in args.trainers:
                r, cpu, wall = _timed(lambda n=name, c=c1, k=m: one_run_audit(make[n](c), alpha=0.05, canaries=k, seed=1))
                d = r.details
                row = {"config": cfg, "audit": "one-run", "trainer": name, "canaries": m,
                       "eps_lb": d["epsilon_lower_bound"], "steinke": d["steinke"]["epsilon_lower_bound"],
                       "ceiling": d["ceiling"]["epsilon"], "ratio": d["ratio"], "cpu_s": cpu, "wall_s": wall,
                       "verdict": r.verdict}
                rows.append(row)
                print(f"  one-run   {name:9s} m={m}: eps_lb={row['eps_lb']:.3f} ({row['ratio']:.2f} eps) "
                      f"steinke={row['steinke']:.3f}  {cpu:.1f}s CPU {wall:.1f}s wall", flush=True)
    return rows


def _child_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def cli_times(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Whole ``dpaudit audit`` processes (default options), CPU of the child and wall time."""
    if not args.model:
        print("cli: no --model given (train one with `dpaudit train --epsilon 2 --out model.pt`); skipped")
        return []
    from dpaudit.audit import Claim

    c = Claim.from_model_file(args.model)
    claim_args = ["--noise-multiplier", repr(c.noise_multiplier), "--batch-size", str(round(c.expected_batch_size)),
                  "--dataset-size", str(c.dataset_size), "--steps", str(c.steps)]
    cmds = {"--model": ["--model", args.model], "--builtin reference": ["--builtin", "reference", *claim_args],
            "--builtin opacus": ["--builtin", "opacus", *claim_args]}
    rows = []
    for label, extra in cmds.items():
        before = _child_cpu()
        w = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "cli.main", "audit", *extra, "--json"], capture_output=True,
                              text=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        wall, cpu = time.perf_counter() - w, _child_cpu() - before
        rep = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {}
        multi = next((x for x in rep.get("checks", []) if x["name"] == "canary_multi_run"), {})
        one = next((x for x in rep.get("checks", []) if x["name"] == "canary_one_run"), {})
        row = {"command": f"dpaudit audit {label}", "cpu_s": cpu, "wall_s": wall, "verdict": rep.get("verdict"),
               "multi_run_eps_lb": multi.get("details", {}).get("epsilon_lower_bound"),
               "one_run_eps_lb": one.get("details", {}).get("epsilon_lower_bound"), "exit": proc.returncode}
        rows.append(row)
        print(f"  {row['command']:32s} {cpu:6.1f}s CPU {wall:6.1f}s wall  verdict={row['verdict']} "
              f"multi eps_lb={row['multi_run_eps_lb']} one-run eps_lb={row['one_run_eps_lb']}", flush=True)
    return rows


def alarms(args: argparse.Namespace, save: Any = None) -> dict[str, Any]:
    """Default audits (every check, confidence 0.999) of the correct trainers over seeds, and
    the sampler check alone at q = 0.001, N = 50,000 (the regime where the former asymptotic
    chi-square test was anti-conservative). ``save(partial)`` is called after each part."""
    from dpaudit.audit import Claim, OpacusAdapter, ReferenceAdapter, audit, probes

    trainers = {"reference": ReferenceAdapter, "opacus": OpacusAdapter}
    claim = Claim.create(noise_multiplier=1.0, steps=20, sample_rate=0.1, dataset_size=100)
    out: dict[str, Any] = {"claim": claim.summary(), "seeds": args.seeds}
    small = Claim(epsilon=10.0, delta=1e-6, sample_rate=0.001, noise_multiplier=1.0, clip=1.0, steps=1000,
                  dataset_size=50_000)
    n_s = args.sampler_seeds
    for name in args.trainers if n_s else []:
        a = trainers[name](small)
        c0 = time.process_time()
        # the probe alone at the whole default level 0.001 (stricter than its Bonferroni share in
        # an audit); the p-values also give the observed level at 0.01 and 0.05
        ps = [probes.sampler_probe(a, alpha=1 - 0.999, seed=s).p_value for s in range(n_s)]
        rate = {str(lv): sum(p is not None and p < lv for p in ps) for lv in (0.001, 0.01, 0.05)}
        out[f"sampler_q0.001_{name}"] = {"rejections_at_level": rate, "audits": n_s,
                                         "cpu_s": time.process_time() - c0}
        print(f"  sampler q=0.001 N=50000 {name}: rejections at level 0.001/0.01/0.05 of {n_s}: {rate}", flush=True)
    # default audits, trainers interleaved seed by seed (results saved after every seed)
    stats = {name: {"audits": 0, "violations": 0, "which": [], "cpu_s": 0.0, "wall_s": 0.0} for name in args.trainers}
    for s in range(args.seeds):
        for name in args.trainers:
            c0, w0 = time.process_time(), time.perf_counter()
            rep = audit(trainers[name](claim), seed=s)
            st = stats[name]
            st["cpu_s"] += time.process_time() - c0
            st["wall_s"] += time.perf_counter() - w0
            st["audits"] += 1
            flagged = [c.name for c in rep.checks if c.verdict == "violation"]
            if flagged:
                st["violations"] += 1
                st["which"].append((s, flagged))
            out[name] = {**st, "rate": st["violations"] / st["audits"], "cpu_s_per_audit": st["cpu_s"] / st["audits"],
                         "wall_s_per_audit": st["wall_s"] / st["audits"]}
        print(f"  seed {s}: " + ", ".join(f"{n} {stats[n]['violations']}/{stats[n]['audits']}" for n in args.trainers),
              flush=True)
        if save:
            save(out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=["all", "tightness", "cli", "alarms"], default="all")
    ap.add_argument("--runs", type=int, default=20000, help="multi-run audit: runs per world")
    ap.add_argument("--canaries", type=int, nargs="*", default=[100000])
    ap.add_argument("--configs", nargs="*", default=["full"], choices=sorted(CONFIGS))
    ap.add_argument("--trainers", nargs="*", default=["reference", "opacus"])
    ap.add_argument("--seeds", type=int, default=100, help="alarms: audits per trainer")
    ap.add_argument("--sampler-seeds", type=int, default=500, help="alarms: sampler-check audits per trainer")
    ap.add_argument("--model", default=None, help="cli: a digits model from `dpaudit train --epsilon 2`")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    results: dict[str, Any] = {"python": sys.version.split()[0], "load_average": os.getloadavg()}
    if args.part in ("all", "tightness"):
        results["tightness"] = tightness(args)
    if args.part in ("all", "cli"):
        results["cli"] = cli_times(args)
    def save(partial: dict[str, Any] | None = None) -> None:
        if partial is not None:
            results["alarms"] = partial
        if args.out:
            from dpaudit.io import atomic_write_text

            atomic_write_text(args.out, json.dumps(results, indent=2) + "\n")

    if args.part in ("all", "alarms"):
        results["alarms"] = alarms(args, save)
    results["load_average_end"] = os.getloadavg()
    save()


if __name__ == "__main__":
    main()
