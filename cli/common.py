"""Helpers shared by CLI commands: JSON output (through the library's one JSON cleaner)."""

from __future__ import annotations

from typing import Any

import click

from dpaudit.io import dumps_json


def echo_json(obj: Any) -> None:
    """Print ``obj`` as one JSON document on stdout (non-finite floats become null)."""
    click.echo(dumps_json(obj))
