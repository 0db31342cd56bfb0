"""Accuracy of a model during and after training.

During training the model is scored after each epoch on a bounded, fixed subset of the
held-out examples (at most ``eval_size``, drawn once with a seeded generator), not on the whole
held-out split: with few members and many held-out examples, scoring everything every epoch
cost more than the training itself (about 80 % of the CPU time of a 6,000-member run). The
subset is public (its indices follow from the recorded seed); the final figure is on the test
split.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from dpaudit.training.data import Dataset

#: Offset of the subset's seed from the run's seed (the split uses seed, sampling seed + 1,
#: noise seed + 2).
_SUBSET_SEED_OFFSET = 3


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 2048) -> float:
    """Accuracy of ``model`` on (x, y) (tensors on the model's device); eval mode inside."""
    if len(y) == 0:
        return float("nan")
    was = model.training
    model.eval()
    correct = 0
    for i in range(0, len(y), batch):
        correct += int((model(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum())
    model.train(was)
    return correct / len(y)


def validation_subset(heldout: np.ndarray, size: int | None, seed: int) -> np.ndarray:
    """At most ``size`` of the ``heldout`` indices (all if ``size`` is None or not smaller),
    sorted, drawn once with ``numpy.random.default_rng(seed + 3)``."""
    if size is None or heldout.size <= size:
        return heldout
    rng = np.random.default_rng(seed + _SUBSET_SEED_OFFSET)
    return np.sort(rng.choice(heldout, size=int(size), replace=False))


class Validator:
    """Scores a model on a fixed subset of the held-out examples (see the module docstring).

    Args:
        dataset: the data set (its train split holds the held-out examples).
        heldout: indices of the held-out examples in the train split.
        size: at most this many are scored (``None``: all).
        seed: the run's seed (the subset is drawn from it).
        device: where the model lives.
    """

    def __init__(self, dataset: Dataset, heldout: np.ndarray, size: int | None, seed: int,
                 device: torch.device) -> None:
        self.indices = validation_subset(heldout, size, seed)
        self.heldout = int(heldout.size)
        self.x = torch.from_numpy(np.ascontiguousarray(dataset.x_train[self.indices])).to(device)
        self.y = torch.from_numpy(dataset.y_train[self.indices]).to(device)

    def __call__(self, model: nn.Module) -> float:
        return evaluate(model, self.x, self.y)

    def describe(self) -> str:
        return f"{self.indices.size} of {self.heldout} held-out examples"


def accuracy_on_test_split(model: nn.Module, dataset: Dataset, device: torch.device) -> float:
    """Accuracy on the whole test split."""
    x = torch.from_numpy(dataset.x_test).to(device)
    y = torch.from_numpy(dataset.y_test).to(device)
    return evaluate(model, x, y)
