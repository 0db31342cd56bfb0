"""A real local Ray runtime for the Ray tests: started once for the module that asks for it
(2 CPUs, no dashboard), torn down after it. Ray is part of the ``test`` extra: under CI
(``$CI`` set) a missing Ray fails the run instead of skipping these tests."""

from __future__ import annotations

import os

import pytest

if os.environ.get("CI"):
    import ray  # noqa: F401 - must be installed where CI runs (pip install -e ".[test]")
else:
    pytest.importorskip("ray", reason="Ray not installed: pip install -e '.[test]'")
torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def ray_runtime():
    """A local runtime with 2 CPU resources for this module; shut down after its tests."""
    import ray

    assert not ray.is_initialized(), "a Ray runtime is already running in this process"
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level="ERROR")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def digits():
    from dpaudit.training import load_dataset

    return load_dataset("digits")


@pytest.fixture(scope="module")
def dp_target(digits):
    """A DP-SGD logistic regression on half of digits' train split (epsilon 2, 3 epochs):
    its shadows' sampling and noise must come from their seeds for executors to agree."""
    from dpaudit.training import TrainConfig, train

    cfg = TrainConfig(arch="logreg", epsilon=2.0, epochs=3, batch_size=64, lr=0.5,
                      member_fraction=0.5, threads=1)
    return train(cfg, dataset=digits, progress=False)
