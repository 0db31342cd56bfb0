"""Fixtures for the attack tests: small digits models trained once per session (CPU)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")


@pytest.fixture(scope="session")
def digits():
    from dpaudit.training import load_dataset

    return load_dataset("digits")


@pytest.fixture(scope="session")
def small_split(digits):
    """60 members and 240 non-members drawn from the digits train split (fixed seed)."""
    perm = np.random.default_rng(0).permutation(len(digits.y_train))
    return np.sort(perm[:60]), np.sort(perm[60:300])


def _train(digits, members, **kw):
    from dpaudit.training import TrainConfig, train

    torch.set_num_threads(1)
    cfg = TrainConfig(arch="mlp", arch_kwargs={"hidden": [256]}, batch_size=16, threads=1, **kw)
    return train(cfg, dataset=digits, members=members, progress=False)


@pytest.fixture(scope="session")
def overfit_model(digits, small_split):
    """Non-private MLP overfit on 60 digits (train accuracy 1, test ~0.85)."""
    return _train(digits, small_split[0], no_privacy=True, epochs=80, lr=0.1, momentum=0.9, seed=1)


@pytest.fixture(scope="session")
def dp_model(digits, small_split):
    """DP-SGD MLP at epsilon = 0.5 on the same 60 members."""
    return _train(digits, small_split[0], epsilon=0.5, epochs=20, seed=2)
