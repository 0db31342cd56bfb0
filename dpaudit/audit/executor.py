"""Where audit runs execute: any ``concurrent.futures.Executor``.

``make_executor("process", workers)`` for local parallelism, ``"thread"``, or ``"inline"``
(synchronous, for tests and debugging). Pass your own executor (e.g. a distributed backend
implementing ``submit``) to :func:`dpaudit.audit.audit` to run elsewhere. Process executors
need a picklable adapter (module-level functions and classes).
"""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Callable
from typing import Any

from dpaudit.errors import InvalidParameterError

EXECUTORS = ("inline", "thread", "process")


class InlineExecutor(cf.Executor):
    """Runs each submitted call immediately in the caller's thread."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future:
        fut: cf.Future = cf.Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - delivered through the future
            fut.set_exception(exc)
        return fut


def make_executor(kind: str | cf.Executor | None = "inline", workers: int | None = None) -> cf.Executor:
    """An executor by name (``inline``, ``thread``, ``process``) or the one given."""
    if isinstance(kind, cf.Executor):
        return kind
    if kind in (None, "inline"):
        return InlineExecutor()
    if kind == "thread":
        return cf.ThreadPoolExecutor(max_workers=workers)
    if kind == "process":
        return cf.ProcessPoolExecutor(max_workers=workers)
    raise InvalidParameterError(f"executor must be one of {EXECUTORS}, got {kind!r}")


def chunks(n: int, parts: int) -> list[range]:
    """Split ``range(n)`` into at most ``parts`` contiguous chunks."""
    parts = max(1, min(parts, n))
    size = -(-n // parts)
    return [range(s, min(n, s + size)) for s in range(0, n, size)]
