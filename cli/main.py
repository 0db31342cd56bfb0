"""Entry point of the ``dpaudit`` console script.

Subcommands live in their own modules and are imported only when invoked, so
``dpaudit plan``/``account``/``compare`` never import torch and start fast.

Every command reports user errors as one readable line on stderr and exits non-zero:
:class:`dpaudit.errors.DPAuditError`, ``ValueError``, ``FileNotFoundError`` and friends are
caught here; a traceback is shown only with ``DPAUDIT_DEBUG=1``.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from dpaudit import __version__

#: command name -> "module:attribute" of its click command.
COMMANDS: dict[str, tuple[str, str]] = {
    "plan": ("cli.plan:plan", "Plan a noise schedule that spends exactly a target (epsilon, delta)."),
    "account": ("cli.account:account", "Account a DP-SGD run: epsilon for a delta under one or all accountants."),
    "compare": ("cli.account:compare", "Every accountant x both batchings side by side (table, JSON, plot)."),
    "train": ("cli.train:train", "Train a model with the reference DP-SGD trainer."),
    "attack": ("cli.attack:attack", "Attack a trained model: membership inference and model inversion."),
    "audit": ("cli.audit:audit", "Verify a DP trainer: probes, canary audits and re-accounting."),
}


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module only when it runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        target, _ = COMMANDS[cmd_name]
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # List commands from the table so that --help imports nothing heavy.
        rows = [(name, help_) for name, (_, help_) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dpaudit")
def cli() -> None:
    """dpaudit: plan, account and audit differentially private training."""


def _one_line(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    text = msg[0] if msg else exc.__class__.__name__
    if isinstance(exc, FileNotFoundError) and exc.filename:
        text = f"file not found: {exc.filename}"
    return text


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; user errors become one line on stderr and exit code 2 (1 for others)."""
    from dpaudit.errors import DPAuditError

    debug = os.environ.get("DPAUDIT_DEBUG") == "1"
    args = sys.argv[1:] if argv is None else list(argv)
    if not args:  # bare `dpaudit`: the whole help, not one squashed error line
        with click.Context(cli, info_name="dpaudit", help_option_names=["-h", "--help"]) as ctx:
            click.echo(cli.get_help(ctx))
        return
    try:
        cli.main(args=args, prog_name="dpaudit", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("dpaudit: aborted", err=True)
        sys.exit(130)
    except click.UsageError as exc:
        # One line (click's own format is three): the message plus where to look.
        cmd = exc.ctx.command_path if exc.ctx is not None else "dpaudit"
        msg = " ".join(exc.format_message().split())
        click.echo(f"dpaudit: error: {msg} (see '{cmd} --help')", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"dpaudit: error: {_one_line(exc)}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("dpaudit: interrupted", err=True)
        sys.exit(130)
    except (DPAuditError, ValueError, OSError, KeyError, RuntimeError) as exc:
        if debug:
            raise
        click.echo(f"dpaudit: error: {_one_line(exc)}", err=True)
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
