"""Time per training step: plain SGD vs dpaudit DP-SGD vs every Opacus 1.6 mode, on the MNIST
CNN and the CIFAR-10 CNN of Tramer & Boneh 2021 and the 784-512-10 MLP, at several batch sizes.

One process; the methods are interleaved round by round, each round in a rotated order (so
load changes hit all alike); the figure per method is the median over rounds of the mean step
time within a round, in wall time and in process CPU time (``time.process_time``, which the
other jobs on a shared machine do not inflate); ratios are to plain SGD, per clock. A step is
the whole update: forward, backward, (clip, noise,) optimizer step, and freeing the
gradients (Opacus would otherwise hold every mode's per-sample gradients between steps). Inputs
are random tensors of the data set's shape: step time does not depend on pixel values. Not a
test: nothing here passes or fails.

Methods: ``plain`` (one forward/backward of the whole batch, the baseline), ``plain-micro``
(plain SGD accumulated over the same micro-batches the dpaudit engine uses -- a reference for
how much of dpaudit's time is micro-batching), ``dpaudit``, and Opacus 1.6's ``hooks``,
``functorch``, ``ew`` (expanded weights) and ``ghost`` (fast gradient clipping) modes.

    python bench/trainer.py --threads 1 --models cnn,mlp --batches 256,1024 --rounds 15 --steps 2
    python bench/trainer.py --threads 1 --models cifar --batches 256 --rounds 3 --steps 1
    python bench/trainer.py --threads 1 --models cifar --batches 1024 --rounds 3 --steps 1 --methods plain,dpaudit,ew,ghost
    python bench/trainer.py --threads 1 --models mlp --batches 256,1024 --methods plain,dpaudit,ghost
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from dpaudit.runtime import configure_threads, resolve_device
from dpaudit.training.clipping import default_max_rows, trainable_parameters
from dpaudit.training.layergrads import layer_paths
from dpaudit.training.models import build_model
from dpaudit.training.privatize import privatize

CLIP, SIGMA, LR = 1.0, 1.0, 0.1
Step = Callable[[], None]


#: model name -> (label, input shape, builder)
MODELS: dict[str, tuple[str, tuple[int, int, int], Callable[[], nn.Module]]] = {
    "cnn": ("MNIST CNN (Tramer & Boneh)", (1, 28, 28), lambda: build_model("cnn", (1, 28, 28), 10, center=True)),
    "cifar": ("CIFAR-10 CNN (Tramer & Boneh)", (3, 32, 32), lambda: build_model("cifar-cnn", (3, 32, 32), 10)),
    "mlp": ("MLP 784-512-10", (1, 28, 28), lambda: build_model("mlp", (1, 28, 28), 10, hidden=[512])),
}


def plain_stepper(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Step:
    opt = torch.optim.SGD(model.parameters(), lr=LR)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def plain_micro_stepper(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Step:
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    rows = default_max_rows(x)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        for s in range(0, x.shape[0], rows):
            F.cross_entropy(model(x[s:s + rows]), y[s:s + rows], reduction="sum").div(x.shape[0]).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def dpaudit_stepper(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Step:
    params = trainable_parameters(model)
    opt = torch.optim.SGD(params, lr=LR)
    gen = torch.Generator(device=x.device).manual_seed(0)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        grads, _ = privatize(model, x, y, clip=CLIP, noise_multiplier=SIGMA,
                             expected_batch_size=x.shape[0], generator=gen)
        for p, g in zip(params, grads):
            p.grad = g
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def opacus_stepper(mode: str) -> Callable[[nn.Module, torch.Tensor, torch.Tensor], Step]:
    def make(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Step:
        from opacus.grad_sample import GradSampleModule
        from opacus.grad_sample.gsm_exp_weights import GradSampleModuleExpandedWeights
        from opacus.optimizers import DPOptimizer

        gsm: nn.Module
        if mode == "ghost":
            return _opacus_ghost(model, x, y)
        if mode == "ew":
            gsm = GradSampleModuleExpandedWeights(model, batch_first=True, loss_reduction="mean")
        else:
            gsm = GradSampleModule(model, force_functorch=(mode == "functorch"))
        opt = DPOptimizer(torch.optim.SGD(gsm.parameters(), lr=LR), noise_multiplier=SIGMA,
                          max_grad_norm=CLIP, expected_batch_size=x.shape[0])

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(gsm(x), y).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)  # frees the per-sample gradients

        return step

    return make


def _opacus_ghost(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Step:
    from opacus.grad_sample import GradSampleModuleFastGradientClipping
    from opacus.optimizers import DPOptimizerFastGradientClipping
    from opacus.utils.fast_gradient_clipping_utils import DPLossFastGradientClipping

    gsm = GradSampleModuleFastGradientClipping(model, max_grad_norm=CLIP, use_ghost_clipping=True)
    opt = DPOptimizerFastGradientClipping(torch.optim.SGD(gsm.parameters(), lr=LR), noise_multiplier=SIGMA,
                                          max_grad_norm=CLIP, expected_batch_size=x.shape[0])
    criterion = DPLossFastGradientClipping(gsm, opt, nn.CrossEntropyLoss(), loss_reduction="mean")

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        criterion(gsm(x), y).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


METHODS: dict[str, tuple[str, Callable[[nn.Module, torch.Tensor, torch.Tensor], Step]]] = {
    "plain": ("plain SGD", plain_stepper),
    "plain-micro": ("plain SGD, micro-batched", plain_micro_stepper),
    "dpaudit": ("dpaudit DP-SGD", dpaudit_stepper),
    "hooks": ("Opacus hooks", opacus_stepper("hooks")),
    "functorch": ("Opacus functorch", opacus_stepper("functorch")),
    "ew": ("Opacus expanded weights", opacus_stepper("ew")),
    "ghost": ("Opacus ghost clipping", opacus_stepper("ghost")),
}


def _steppers(arch: str, methods: list[str], x: torch.Tensor, y: torch.Tensor, device: torch.device) -> dict[str, Step]:
    out = {}
    for name in methods:
        label, make = METHODS[name]
        try:
            torch.manual_seed(0)
            step = make(MODELS[arch][2]().to(device), x, y)
            step()  # warm-up (and a check that the mode runs this model)
            step()
            out[label] = step
        except Exception as exc:  # noqa: BLE001 - report, don't die (e.g. a mode that refuses a layer)
            print(f"  {label}: unavailable ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})")
    return out


def bench(arch: str, methods: list[str], device: torch.device, batch: int, rounds: int, steps: int) -> dict:
    torch.manual_seed(0)
    x = torch.rand(batch, *MODELS[arch][1], device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    steppers = _steppers(arch, methods, x, y, device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    wall: dict[str, list[float]] = {n: [] for n in steppers}
    cpu: dict[str, list[float]] = {n: [] for n in steppers}
    names = list(steppers)
    for r in range(rounds):
        for n in names[r % len(names):] + names[: r % len(names)]:
            sync()
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(steps):
                steppers[n]()
            sync()
            wall[n].append((time.perf_counter() - t0) / steps)
            cpu[n].append((time.process_time() - c0) / steps)
    med_w = {n: statistics.median(v) for n, v in wall.items()}
    med_c = {n: statistics.median(v) for n, v in cpu.items()}
    base = METHODS["plain"][0]
    return {n: {"ms_per_step": 1e3 * med_w[n], "cpu_ms_per_step": 1e3 * med_c[n],
                "ratio": med_w[n] / med_w[base] if base in med_w else None,
                "cpu_ratio": med_c[n] / med_c[base] if base in med_c else None} for n in names}


def _print(label: str, batch: int, device: torch.device, threads: int, rounds: int, steps: int, res: dict) -> None:
    print(f"\n{label}, batch {batch}, {device}, {threads} thread(s) "
          f"(median of {rounds} interleaved rounds x {steps} steps)")
    print(f"  {'method':<26}{'wall ms':>10}{'CPU ms':>10}{'x plain':>9}{'x (CPU)':>9}")
    for n, r in res.items():
        ratio = "" if r["ratio"] is None else f"{r['ratio']:>9.2f}{r['cpu_ratio']:>9.2f}"
        print(f"  {n:<26}{r['ms_per_step']:>10.1f}{r['cpu_ms_per_step']:>10.1f}{ratio}")


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--batches", default="256,1024", help="comma-separated batch sizes")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--models", default="cnn,mlp", help=f"comma-separated, of {', '.join(MODELS)}")
    ap.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, of {', '.join(METHODS)}")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    warnings.filterwarnings("ignore")
    configure_threads(a.threads)
    device = resolve_device(a.device)
    methods = a.methods.split(",")
    unknown = [m for m in methods + a.models.split(",") if m not in METHODS and m not in MODELS]
    if unknown:
        ap.error(f"unknown method or model: {', '.join(unknown)}")
    out = {"device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__,
           "machine": platform.processor() or platform.machine(), "rounds": a.rounds, "steps": a.steps,
           "results": {}}
    for arch in a.models.split(","):
        label, shape, make = MODELS[arch]
        paths = ", ".join(f"{p.layer}(T={p.positions}, pd={p.p * p.d}): {p.path}"
                          for p in layer_paths(make(), torch.zeros(1, *shape)))
        print(f"\n{label}: {paths}")
        for batch in (int(b) for b in a.batches.split(",")):
            res = bench(arch, methods, device, batch, a.rounds, a.steps)
            out["results"][f"{arch}@{batch}"] = res
            _print(label, batch, device, out["threads"], a.rounds, a.steps, res)
    if a.json:
        from dpaudit.io import atomic_write_text

        atomic_write_text(a.json, json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
