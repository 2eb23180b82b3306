"""What every command of both command lines shares: one-line error messages, the existing-output check and the
`--debug` switch.

Every error a command reports is one line `error: ...` on stderr (markup-safe: the message is printed as it is)
and exit status 1. With `--debug` before the command, the traceback is shown as well.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from spikedata.errors import PicklableError

console = Console(stderr=True, soft_wrap=True)  # progress bars, notes and errors
report = Console(soft_wrap=True)  # results meant for stdout (scripts read them)

_state = {"debug": False}


def debug_option(
    debug: bool = typer.Option(False, "--debug", help="Show the full traceback when a command fails."),
) -> None:
    """Root callback of both apps: remembers `--debug`."""
    _state["debug"] = debug


def fail(message: str, code: int = 1) -> NoReturn:
    """Print `error: message` (one line, no markup interpretation) and exit with `code`."""
    if _state["debug"] and sys.exc_info()[0] is not None:
        console.print(escape(traceback.format_exc().rstrip()), highlight=False)
    console.print(f"[red]error:[/red] {escape(str(message))}", highlight=False)
    raise typer.Exit(code)


def error_text(exc: BaseException) -> str:
    """The message of an exception as a user reads it (a KeyError's message without the quotes str() adds)."""
    if isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
        return exc.args[0]
    return str(exc)


@contextmanager
def reported_errors(*also: type[BaseException]) -> Iterator[None]:
    """Turn every project error raised inside (`SpikedataError` and hm2bp's `Hm2bpError`: both derive from
    `PicklableError`), and any of the exception types `also`, into one `error:` line and exit status 1."""
    try:
        yield
    except (PicklableError, *also) as exc:
        fail(error_text(exc))


def note(message: str) -> None:
    """Print `note: message` on stderr (markup-safe)."""
    console.print(f"[yellow]note:[/yellow] {escape(message)}", highlight=False)


def warn(message: str) -> None:
    """Print `warning: message` on stderr (markup-safe)."""
    console.print(f"[yellow]warning:[/yellow] {escape(message)}", highlight=False)


def say(message: str) -> None:
    """Print a plain line on stderr (markup-safe)."""
    console.print(escape(message), highlight=False)


def echo(message: str) -> None:
    """Print a result line on stdout (markup-safe)."""
    report.print(escape(message), highlight=False)


def check_new_output(out: str | Path, overwrite: bool) -> None:
    """Fail unless `out` is free or `overwrite` was given."""
    if Path(out).exists() and not overwrite:
        fail(f"{out} already exists; pass --overwrite to replace it")


def run_app(app: typer.Typer, prog: str) -> None:
    """Run a Typer app as a console script: an exception no command turned into a message still ends as one
    `error:` line (with the traceback under `--debug`), never as a bare traceback."""
    try:
        app(prog_name=prog, standalone_mode=True)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        console.print("interrupted", highlight=False)
        raise SystemExit(130) from None
    except Exception as exc:  # noqa: BLE001  (the last line of defence of the command line)
        if _state["debug"]:
            console.print(escape(traceback.format_exc().rstrip()), highlight=False)
        text = error_text(exc) if isinstance(exc, PicklableError) else f"{type(exc).__name__}: {exc}"
        console.print(f"[red]error:[/red] {escape(text)}", highlight=False)
        raise SystemExit(1) from None


# Options every `spikedata encode` command has (typer needs each in the command's own signature).
OUT = typer.Option(..., "--out", help="Path of the spike store to write (a directory, e.g. mnist.zarr).")
WORKERS = typer.Option(1, "--workers", min=1, help="Encoding processes (the store is the same for any number).")
OVERWRITE = typer.Option(False, "--overwrite", help="Replace an existing store at --out.")
QUIET = typer.Option(False, "--quiet", help="No progress bar.")
