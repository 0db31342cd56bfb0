"""Helpers shared by CLI commands: JSON output and atomic file writes (re-exported from the
library so that library users get the same behaviour)."""

from __future__ import annotations

from typing import Any

import click

from dpaudit.io import atomic_write_bytes, atomic_write_text, dumps_json  # noqa: F401


def echo_json(obj: Any) -> None:
    """Print ``obj`` as one JSON document on stdout (non-finite floats become null)."""
    click.echo(dumps_json(obj))
