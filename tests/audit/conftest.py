"""Fixtures for the audit tests: small claims, single-threaded torch."""

from __future__ import annotations

import pytest
import torch

from dpaudit.audit import Claim

torch.set_num_threads(1)


@pytest.fixture
def claim() -> Claim:
    """A small Poisson DP-SGD claim (q = 0.1, N = 100, sigma = 1, 20 steps); eps = 4 is
    above dp-accounting's PLD figure (3.59) so the accounting check passes."""
    return Claim(epsilon=4.0, delta=1e-5, sample_rate=0.1, noise_multiplier=1.0, clip=1.0, steps=20, dataset_size=100)
