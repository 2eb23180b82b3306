"""What every command of both command lines shares: one-line error messages, the existing-output check and the
`--debug` switch.

Every error a command reports is one line `error: ...` on stderr (markup-safe: the message is printed as it is)
and exit status 1. With `--debug` before the command, the traceback is shown as well.

Library errors name the parameters of the library's functions in backticks (`max_train`, `resume`); `fail` and
`warn` replace those names by the command line's flags (`--max-train`, `--resume`), so a message tells a user of
either interface what to change.
"""

from __future__ import annotations

import re
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from spikedata.errors import PicklableError

console = Console(stderr=True, soft_wrap=True)  # progress bars, notes and errors
report = Console(soft_wrap=True)  # results meant for stdout (scripts read them)

_state = {"debug": False}

#: Library parameter (as a library message writes it, in backticks) -> the flag that sets it on the command line.
FLAGS = {
    "source": "--source", "pattern": "--pattern", "verify=False": "--no-verify", "mirror": "--mirror",
    "device": "--device", "resume": "--resume", "overwrite": "--overwrite", "run_dir": "--out",
    "max_train": "--max-train", "max_test": "--max-test", "shuffle_buffer": "--shuffle-buffer", "lr": "--lr",
    "batch_size": "--batch-size", "val_fraction": "--val-fraction", "subset": "--subset",
    "keep_images": "`spikedata encode ... --keep-images`", "augment.enabled = false": "--no-augment",
}
_PARAM = re.compile(r"`([^`]+)`")


def as_flags(message: str, flags: dict[str, str] | None = None) -> str:
    """`message` with every backticked library parameter of `FLAGS` (and of `flags`, a command's own) replaced by
    its command-line flag."""
    known = {**FLAGS, **(flags or {})}
    return _PARAM.sub(lambda m: known.get(m.group(1), m.group(0)), message)


def debug_option(
    debug: bool = typer.Option(False, "--debug", help="Show the full traceback when a command fails."),
) -> None:
    """Root callback of both apps: remembers `--debug`."""
    _state["debug"] = debug


def fail(message: str, code: int = 1) -> NoReturn:
    """Print `error: message` (one line, no markup interpretation) and exit with `code`."""
    if _state["debug"] and sys.exc_info()[0] is not None:
        console.print(escape(traceback.format_exc().rstrip()), highlight=False)
    console.print(f"[red]error:[/red] {escape(as_flags(str(message)))}", highlight=False)
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
    console.print(f"[yellow]warning:[/yellow] {escape(as_flags(message))}", highlight=False)


def say(message: str) -> None:
    """Print a plain line on stderr (markup-safe)."""
    console.print(escape(message), highlight=False)


def echo(message: str) -> None:
    """Print a result line on stdout (markup-safe)."""
    report.print(escape(message), highlight=False)


def _cached(kernel: object) -> bool:
    """Whether numba's on-disk cache holds an index for `kernel` (a `cache=True` dispatcher). Unknown: True."""
    index = getattr(getattr(getattr(kernel, "_cache", None), "_cache_file", None), "_index_path", None)
    return index is None or Path(index).is_file()


def note_first_compilation(*modules: ModuleType) -> None:
    """Say so when numba must compile the kernels of `modules` first (a fresh install: up to a minute, once).

    Every kernel is compiled with `cache=True`; later processes load the machine code from numba's cache."""
    def kernels(m: ModuleType) -> list:  # inlined helpers are compiled into their callers, never cached alone
        return [obj for obj in vars(m).values() if hasattr(obj, "py_func") and hasattr(obj, "_cache")
                and getattr(obj, "targetoptions", {}).get("inline") != "always"]

    # a module none of whose kernels has been cached yet: a fresh install (or a changed source file)
    if any(ks and not any(_cached(k) for k in ks) for ks in map(kernels, modules)):
        note("first run: numba compiles this command's kernels once (up to a minute); later runs load them from "
             "its cache")


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
        console.print(f"[red]error:[/red] {escape(as_flags(text))}", highlight=False)
        raise SystemExit(1) from None

