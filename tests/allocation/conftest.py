"""Fixtures for the allocation tests (helpers live in alloc_testlib.py)."""

from __future__ import annotations

import pytest
from alloc_testlib import DpAccountingRdp, FastIntRdp


@pytest.fixture(scope="session")
def fast_rdp() -> FastIntRdp:
    return FastIntRdp()


@pytest.fixture(scope="session")
def dpa_rdp() -> DpAccountingRdp:
    return DpAccountingRdp()
