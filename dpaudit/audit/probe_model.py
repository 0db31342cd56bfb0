"""The auditor's instruments: a model whose per-example gradients the auditor chooses.

:class:`LinearProbe` is ``x ↦ ⟨w, x⟩`` with per-example loss ``ℓ_i = ⟨w, x_i⟩`` (:func:`linear_loss`),
so the per-example gradient of example ``x_i`` is exactly ``x_i`` -- whatever ``w`` is. This
realises the white-box threat model of Nasr et al. 2023 (USENIX Security, "Tight Auditing of
Differentially Private Machine Learning", arXiv:2302.07956: gradient canaries, other
examples' gradients zeroed): a *Dirac canary* is the example ``C·e_j`` (gradient of norm exactly C on
coordinate j), a *filler* is the zero vector (zero gradient), and a *huge* example
``K·C·u`` has a gradient far above the clip norm.
"""

from __future__ import annotations

import torch


class LinearProbe(torch.nn.Linear):
    """``f(x) = ⟨w, x⟩``: an ``nn.Linear(dim, 1, bias=False)`` with zero weights (a plain
    Linear layer, so every per-example gradient engine supports it)."""

    def __init__(self, dim: int) -> None:
        super().__init__(dim, 1, bias=False)
        with torch.no_grad():
            self.weight.zero_()


def linear_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-example losses = the outputs, shape (B,): the gradient of example i is ``x_i``."""
    return output.reshape(-1)


def dirac_batch(dim: int, n_fillers: int, canaries: list[int] | tuple[int, ...] = (),
                scale: float = 1.0, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of ``n_fillers`` zero rows followed by one row ``scale·e_j`` per canary j."""
    x = torch.zeros(n_fillers + len(canaries), dim)
    for r, j in enumerate(canaries):
        x[n_fillers + r, j] = scale
    y = torch.zeros(x.shape[0], dtype=torch.long)
    return x.to(device), y.to(device)


def run_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator on ``device`` for one simulated training run."""
    return torch.Generator(device=device).manual_seed(int(seed) & 0x7FFF_FFFF_FFFF_FFFF)


def device_of(adapter: object) -> torch.device:
    """The device an adapter computes on (its ``device`` attribute; CPU by default)."""
    return torch.device(getattr(adapter, "device", None) or "cpu")


class MultiProbe(torch.nn.Module):
    """A small two-layer network (``Linear(inputs, hidden)``, tanh, ``Linear(hidden,
    outputs)``, both with bias): four parameter tensors of different shapes, so that probes
    see every tensor separately (noise on only the weights, clipping per layer, ...).
    Weights are small and fixed (seeded): a trainer that reads its update back from the
    parameters loses little precision."""

    def __init__(self, inputs: int = 16, hidden: int = 8, outputs: int = 4, seed: int = 7) -> None:
        super().__init__()
        self.l1 = torch.nn.Linear(inputs, hidden)
        self.l2 = torch.nn.Linear(hidden, outputs)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.l2(torch.tanh(self.l1(x)))


def zero_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-example losses that are identically 0 (every gradient is exactly zero)."""
    return output.reshape(output.shape[0], -1).sum(1) * 0.0


def weighted_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-example loss ``target_i * sum(output_i)``: fillers (target 0) have zero gradient,
    the probe's example (target K) a gradient K times that of ``sum(output)``."""
    return output.reshape(output.shape[0], -1).sum(1) * target.to(output.dtype)


def tensor_sizes(model: torch.nn.Module) -> list[tuple[str, int]]:
    """(name, numel) of the trainable parameters in ``model.parameters()`` order -- how a
    flat update splits into tensors."""
    return [(n, p.numel()) for n, p in model.named_parameters() if p.requires_grad]


def spread_steps(steps: int, count: int) -> list[int]:
    """``count`` step indices spread evenly over the claimed run, first and last included."""
    if steps <= count:
        return list(range(steps))
    return sorted({round(i * (steps - 1) / (count - 1)) for i in range(count)})
