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
