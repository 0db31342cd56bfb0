"""Helpers shared by CLI commands: JSON output and atomic file writes (re-exported from the
library so that library users get the same behaviour)."""

from __future__ import annotations

import json
import math
from typing import Any

import click

from dpaudit.io import atomic_write_bytes, atomic_write_text  # noqa: F401  (re-export)


def _clean(obj: Any) -> Any:
    """Make floats JSON-safe (inf/nan -> strings would break consumers; use null)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def echo_json(obj: Any) -> None:
    """Print ``obj`` as one JSON document on stdout (non-finite floats become null)."""
    click.echo(json.dumps(_clean(obj), indent=2, sort_keys=False))
