"""glibc mmap threshold policy (dpaudit.training.memory)."""

from __future__ import annotations

import platform

import pytest

from dpaudit.errors import InvalidParameterError
from dpaudit.training import memory


def test_env_default_and_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(memory.ENV_VAR, raising=False)
    assert memory.mmap_threshold_from_env() == memory.DEFAULT_MMAP_THRESHOLD
    monkeypatch.setenv(memory.ENV_VAR, "0")
    assert memory.mmap_threshold_from_env() == 0
    monkeypatch.setenv(memory.ENV_VAR, " 4194304 ")
    assert memory.mmap_threshold_from_env() == 4 * 1024 * 1024


@pytest.mark.parametrize("raw", ["1MB", "-1", str(memory.MAX_MMAP_THRESHOLD + 1)])
def test_env_bad_value_is_one_readable_error(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv(memory.ENV_VAR, raw)
    with pytest.raises(InvalidParameterError, match=memory.ENV_VAR):
        memory.mmap_threshold_from_env()


def test_zero_leaves_allocator_alone() -> None:
    assert memory.set_mmap_threshold(0) is False


def test_out_of_range_refused() -> None:
    with pytest.raises(InvalidParameterError, match="mmap threshold"):
        memory.set_mmap_threshold(memory.MAX_MMAP_THRESHOLD + 1)


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_glibc_accepts_threshold() -> None:
    assert memory.set_mmap_threshold(memory.DEFAULT_MMAP_THRESHOLD) is True
    assert memory.set_mmap_threshold(memory.MAX_MMAP_THRESHOLD) is True  # glibc's own upper limit
    assert memory.set_mmap_threshold(memory.DEFAULT_MMAP_THRESHOLD) is True


def test_trainer_sets_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    """train() fixes the threshold once per run (the call is what the RSS figures rely on)."""
    from dpaudit.training import trainer
    from dpaudit.training.config import TrainConfig

    calls: list[int] = []
    monkeypatch.setattr(trainer, "set_mmap_threshold", lambda: calls.append(1) or True)
    trainer.train(TrainConfig(dataset="digits", epochs=1, noise_multiplier=1.0, threads=1), progress=False)
    assert calls == [1]
