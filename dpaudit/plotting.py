"""Shared matplotlib helpers: lazy import with a clear error, atomic PNG output."""

from __future__ import annotations

import os
from typing import Any

from dpaudit.errors import DPAuditError
from dpaudit.io import atomic_path


def require_matplotlib(what: str = "plotting") -> None:
    """Raise the same clear error as :func:`pyplot` if matplotlib is not installed, without
    importing it (call before long work whose output includes a plot)."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise DPAuditError(
            f"{what} needs matplotlib: pip install 'dpaudit[plot]' (or pip install matplotlib)"
        )


def pyplot() -> Any:
    """Import matplotlib with the non-interactive Agg backend, or raise a clear error."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise DPAuditError(
            "plotting needs matplotlib: pip install 'dpaudit[plot]' (or pip install matplotlib)"
        ) from None
    return plt


def save_figure(fig: Any, path: str | os.PathLike[str], dpi: int = 130) -> None:
    """Save ``fig`` as PNG atomically and close it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    pyplot().close(fig)
