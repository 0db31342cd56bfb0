"""Helpers shared by CLI commands: JSON output (through the library's one JSON cleaner),
progress bars on a terminal, and the executor options (``--executor``, ``--workers``, ``--ray-address``) of the commands that
run repeated work (``attack``, ``audit``)."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import click

from dpaudit.executors import EXECUTORS
from dpaudit.io import dumps_json

if TYPE_CHECKING:
    import concurrent.futures as cf

F = TypeVar("F", bound=Callable[..., Any])

#: Environment variable read as the default of ``--ray-address`` (and by the library).
RAY_ADDRESS_ENV = "DPAUDIT_RAY_ADDRESS"


def echo_json(obj: Any) -> None:
    """Print ``obj`` as one JSON document on stdout (non-finite floats become null)."""
    click.echo(dumps_json(obj))


@contextmanager
def progress_bars(unit: str, *, unit_if_unknown: str | None = None, delay: float = 0.0) -> Iterator[Any]:
    """A ``progress(name, done, total)`` callback drawing one tqdm bar per ``name`` on stderr
    (a new bar when ``total`` changes; ``unit_if_unknown`` for bars without a total; none
    shown for work shorter than ``delay`` seconds), or ``None`` when stderr is not a
    terminal. Bars are closed on exit."""
    if not sys.stderr.isatty():
        yield None
        return
    bars: dict[str, Any] = {}

    def update(name: str, done: int, total: int | None) -> None:
        from tqdm import tqdm

        bar = bars.get(name)
        if bar is None or bar.total != total:
            if bar is not None:
                bar.close()
            bars[name] = bar = tqdm(total=total, desc=name, delay=delay, file=sys.stderr, leave=False,
                                    unit=unit if total is not None else (unit_if_unknown or unit))
        bar.update(done - bar.n)

    try:
        yield update
    finally:
        for bar in bars.values():
            bar.close()


def check_executor_options(executor: str | None, ray_address: str | None, address_given: bool) -> None:
    """Refuse, before any work, an executor that cannot run: ``ray`` without Ray installed,
    or a Ray address given on the command line for another executor. Imports nothing heavy."""
    if executor == "ray":
        from dpaudit.ray_executor import require_ray, resolve_address

        require_ray()
        resolve_address(ray_address)
    elif address_given and ray_address:
        raise click.UsageError("--ray-address is for --executor ray")


def executor_options(default: str | None = "process", workers_help: str | None = None) -> Callable[[F], F]:
    """Click options ``--executor`` (default ``default``; ``None``: the library chooses),
    ``--workers`` and ``--ray-address`` (default ``$DPAUDIT_RAY_ADDRESS``), passed to the
    command as ``executor``, ``workers`` and ``ray_address`` and checked before the command
    runs (:func:`check_executor_options`). Build the executor with :func:`open_executor`."""
    options = [
        click.option("--executor", type=click.Choice(EXECUTORS), default=default, show_default=default is not None,
                     help="Where repeated work runs: in this process (inline), threads, local processes, or "
                          "Ray tasks (local runtime, or the cluster of --ray-address)"
                          + ("" if default is not None else "; default: chosen from the data size") + "."),
        click.option("--workers", type=click.IntRange(min=1), default=None,
                     help=workers_help or "Tasks run at once (default: the CPUs this process may use; "
                                          "on a Ray cluster, as many as its resources allow)."),
        click.option("--ray-address", default=None, envvar=RAY_ADDRESS_ENV, show_envvar=True, metavar="ADDRESS",
                     help="Ray cluster to join with --executor ray: auto, HOST:PORT or ray://HOST:PORT "
                          "(default: a local Ray runtime for this command)."),
    ]

    def decorate(f: F) -> F:
        @functools.wraps(f)
        def checked(*args: Any, **kwargs: Any) -> Any:
            ctx = click.get_current_context()
            given = ctx.get_parameter_source("ray_address") == click.core.ParameterSource.COMMANDLINE
            check_executor_options(kwargs.get("executor"), kwargs.get("ray_address"), given)
            return f(*args, **kwargs)

        for option in reversed(options):
            checked = option(checked)
        return checked  # type: ignore[return-value]

    return decorate


@contextmanager
def open_executor(executor: str | None, workers: int | None, ray_address: str | None, *,
                  device: str = "cpu", threads_per_worker: int = 1) -> Iterator[cf.Executor | None]:
    """The executor the options name, shut down when the block ends (outstanding tasks
    cancelled if it ends with an exception, Ctrl-C included); ``None`` when ``executor`` is
    ``None`` (the library's default). A local Ray runtime starts at the first task, once per
    command."""
    if executor is None:
        yield None
        return
    from dpaudit.executors import make_executor

    ex = make_executor(executor, workers, threads_per_worker, address=ray_address,
                       device=device if executor == "ray" else "cpu")
    try:
        yield ex
    except BaseException:
        ex.shutdown(wait=False, cancel_futures=True)
        raise
    ex.shutdown(wait=True)
