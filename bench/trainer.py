"""Time per training step (batch 256): plain SGD vs dpaudit DP-SGD vs Opacus, on the MNIST
CNN (Tramer & Boneh 2021) and the 784-512-10 MLP.

One process; the methods are interleaved round by round (so load changes hit all alike);
the figure per method is the median over rounds of the mean step time within a round
(wall time; process CPU time beside it); ratios are to plain SGD (wall). Inputs are random tensors of MNIST shape: step time does not depend
on pixel values. Not a test: nothing here passes or fails.

    python bench/trainer.py [--threads 1] [--rounds 15] [--steps 5] [--device cpu] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import warnings

import torch
import torch.nn.functional as F

from dpaudit.runtime import configure_threads, resolve_device
from dpaudit.training.clipping import trainable_parameters
from dpaudit.training.models import build_model
from dpaudit.training.privatize import privatize

CLIP, SIGMA, LR = 1.0, 1.0, 0.1


def plain_stepper(model, x, y):
    opt = torch.optim.SGD(model.parameters(), lr=LR)

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    return step


def dpaudit_stepper(model, x, y):
    params = trainable_parameters(model)
    opt = torch.optim.SGD(params, lr=LR)
    gen = torch.Generator(device=x.device).manual_seed(0)

    def step():
        opt.zero_grad(set_to_none=True)
        grads, _ = privatize(model, x, y, clip=CLIP, noise_multiplier=SIGMA,
                             expected_batch_size=x.shape[0], generator=gen)
        for p, g in zip(params, grads):
            p.grad = g
        opt.step()

    return step


def opacus_stepper(model, x, y, mode="hooks"):
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer

    gsm = GradSampleModule(model)
    opt = DPOptimizer(torch.optim.SGD(gsm.parameters(), lr=LR), noise_multiplier=SIGMA,
                      max_grad_norm=CLIP, expected_batch_size=x.shape[0])

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(gsm(x), y).backward()
        opt.step()

    return step


def bench(arch: str, device: torch.device, batch: int, rounds: int, steps: int) -> dict:
    torch.manual_seed(0)
    x = torch.rand(batch, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    kw = {"hidden": [512]} if arch == "mlp" else {}
    makers = {"plain SGD": plain_stepper, "dpaudit DP-SGD": dpaudit_stepper,
              "Opacus 1.6 (hooks)": opacus_stepper}
    steppers = {}
    for name, make in makers.items():
        try:
            steppers[name] = make(build_model(arch, (1, 28, 28), 10, **kw).to(device), x, y)
        except Exception as exc:  # noqa: BLE001 - report, don't die (e.g. opacus missing)
            print(f"  {name}: unavailable ({type(exc).__name__}: {exc})")
    for step in steppers.values():  # warm-up
        for _ in range(2):
            step()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times: dict[str, list[float]] = {n: [] for n in steppers}
    cpu: dict[str, list[float]] = {n: [] for n in steppers}
    names = list(steppers)
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for n in order:
            sync()
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(steps):
                steppers[n]()
            sync()
            times[n].append((time.perf_counter() - t0) / steps)
            cpu[n].append((time.process_time() - c0) / steps)
    med = {n: statistics.median(v) for n, v in times.items()}
    base = med["plain SGD"]
    return {n: {"ms_per_step": 1e3 * m, "cpu_ms_per_step": 1e3 * statistics.median(cpu[n]),
                "ratio": m / base} for n, m in med.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--models", default="cnn,mlp")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    warnings.filterwarnings("ignore")
    configure_threads(a.threads)
    device = resolve_device(a.device)
    out = {"device": str(device), "threads": torch.get_num_threads(), "batch": a.batch,
           "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
           "results": {}}
    for arch in a.models.split(","):
        res = bench(arch, device, a.batch, a.rounds, a.steps)
        out["results"][arch] = res
        label = "MNIST CNN (Tramer & Boneh)" if arch == "cnn" else "MLP 784-512-10"
        print(f"\n{label}, batch {a.batch}, {device}, {out['threads']} threads "
              f"(median of {a.rounds} interleaved rounds x {a.steps} steps)")
        print(f"  {'method':<22}{'ms/step':>10}{'CPU ms':>10}{'x plain':>10}")
        for n, r in res.items():
            print(f"  {n:<22}{r['ms_per_step']:>10.2f}{r['cpu_ms_per_step']:>10.2f}{r['ratio']:>10.2f}")
    if a.json:
        from dpaudit.io import atomic_write_text

        atomic_write_text(a.json, json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
