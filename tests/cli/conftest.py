"""Fixtures for the CLI tests of `attack` and `audit` (digits data, loaded once)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def digits():
    pytest.importorskip("torch")
    from dpaudit.training import load_dataset

    return load_dataset("digits")
