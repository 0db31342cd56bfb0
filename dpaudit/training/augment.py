"""Data-independent image augmentations and augmentation multiplicity for the DP step.

Augmentation multiplicity (De, Berrada, Hayes, Smith, Balle 2022, "Unlocking High-Accuracy
Differentially Private Image Classification through Scale", arXiv:2204.13650, Sec. 3.2):
each example of a batch is replaced by K augmented copies (K consecutive rows), and its
gradient is the mean of the copies' gradients, taken *before* clipping
(:func:`dpaudit.training.clipping.clip_and_sum` with ``group_size=K``). Every example still
contributes one clipped vector of norm <= C, so the sensitivity and the privacy accounting are
those of plain DP-SGD. The augmentation's randomness is drawn independently of the data, so
the mechanism is DP for every draw of it, and hence for the mixture.

Augmentations (vectorised: one padded copy and one gather per batch, on the batch's device):

* ``"flip-crop"`` (CIFAR-10 style, De et al. 2022, Sec. 3.2): zero-pad 4 pixels on each
  side, crop back to H x W at a uniformly random offset in {0..8}^2, and mirror
  horizontally with probability 1/2, independently for every row.
* ``"shift"`` (for digit images, which mirroring would change): zero-pad 2 pixels and crop at
  a random offset, i.e. a random translation by -2..2 pixels on each axis, zero fill.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor

from dpaudit.errors import InvalidParameterError
from dpaudit.training.config import AUGMENTATIONS, TrainConfig

#: augmentation name -> (zero padding in pixels, random horizontal flip)
_SPECS: dict[str, tuple[int, bool]] = {"flip-crop": (4, True), "shift": (2, False)}
assert set(_SPECS) == set(AUGMENTATIONS)


def random_crop(x: Tensor, pad: int, flip: bool, generator: torch.Generator | None = None) -> Tensor:
    """Each row of ``x`` (R, C, H, W) zero-padded by ``pad`` pixels, cropped back to H x W at
    a uniform random offset in {0, ..., 2 pad}^2, and (with ``flip``) mirrored left-right with
    probability 1/2. Offsets and flips are drawn per row from ``generator`` (on x's device)."""
    if x.dim() != 4:
        raise InvalidParameterError(f"image augmentation needs (N, C, H, W) inputs, got shape {tuple(x.shape)}")
    r, c, h, w = x.shape
    if r == 0:
        return x.clone()
    dev = x.device
    hp, wp = h + 2 * pad, w + 2 * pad
    xp = F.pad(x, (pad, pad, pad, pad)).reshape(r, c, hp * wp)
    oy = torch.randint(0, 2 * pad + 1, (r, 1), device=dev, generator=generator)
    ox = torch.randint(0, 2 * pad + 1, (r, 1), device=dev, generator=generator)
    rows = oy + torch.arange(h, device=dev)  # (R, H)
    cols = ox + torch.arange(w, device=dev)  # (R, W)
    if flip:
        mirror = torch.randint(0, 2, (r, 1), device=dev, generator=generator).bool()
        cols = torch.where(mirror, cols.flip(1), cols)
    idx = (rows[:, :, None] * wp + cols[:, None, :]).reshape(r, 1, h * w).expand(r, c, h * w)
    return torch.gather(xp, 2, idx).reshape(r, c, h, w)


class Augmenter:
    """``augmenter(x)``: the n examples (n, C, H, W) -> their n K augmented rows, K consecutive
    copies per example, each augmented independently (the ``expand`` of
    :func:`~dpaudit.training.clipping.clip_and_sum`).

    Args:
        kind: one of :data:`~dpaudit.training.config.AUGMENTATIONS`.
        multiplicity: K >= 1.
        generator: torch generator on the data's device (``None``: torch's global one).
    """

    def __init__(self, kind: str, multiplicity: int = 1, generator: torch.Generator | None = None) -> None:
        if kind not in _SPECS:
            raise InvalidParameterError(f"augmentation must be one of {', '.join(AUGMENTATIONS)}, got {kind!r}")
        if isinstance(multiplicity, bool) or not isinstance(multiplicity, int) or multiplicity < 1:
            raise InvalidParameterError(f"augmentation multiplicity must be a positive integer, got {multiplicity!r}")
        self.kind, self.k, self.generator = kind, multiplicity, generator
        self.pad, self.flip = _SPECS[kind]

    def __call__(self, x: Tensor) -> Tensor:
        rows = x if self.k == 1 else x.repeat_interleave(self.k, dim=0)
        return random_crop(rows, self.pad, self.flip, self.generator)


def augmenter_for(config: TrainConfig, device: torch.device) -> Augmenter | None:
    """The run's :class:`Augmenter` (``None`` without augmentation). Its randomness is
    data-independent, so it need not be secret; it is seeded from ``seed`` when the run is
    reproducible (or not private), else from OS entropy like the other draws."""
    kind = config.augmentation()
    if kind is None:
        return None
    gen = torch.Generator(device=device)
    seeded = config.reproducible or config.no_privacy
    gen.manual_seed(config.seed + 3 if seeded else int.from_bytes(os.urandom(8), "little") >> 1)
    return Augmenter(kind, int(config.augment_multiplicity), gen)


__all__ = ["AUGMENTATIONS", "Augmenter", "augmenter_for", "random_crop"]
