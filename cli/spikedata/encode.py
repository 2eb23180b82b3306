"""`spikedata encode NAME`: one command per dataset declaration (`spikedata.datasets`), built from its options.

Each command's signature is made from the declaration's `Option`s (flag, type, default, help, bounds), so an
option exists once, in the library; the command only checks that the output is free, runs the declaration and
prints what it reports. A bad option value is a usage error (exit status 2), any other problem one `error:` line.
"""

from __future__ import annotations

import inspect
from types import ModuleType
from typing import Any

import typer

from spikedata.cli.app import encode_app
from spikedata.cli.common import as_flags, check_new_output, error_text, fail, note, note_first_compilation, say
from spikedata.datasets import Dataset, all_datasets
from spikedata.datasets.shared.declaration import Option, Reporter
from spikedata.errors import OptionError, PicklableError


class _Printed(Reporter):
    """Prints an encode's messages on stderr, library parameters shown as the command's flags."""

    def __init__(self, flags: dict[str, str]):
        self.flags = flags

    def note(self, message: str) -> None:
        note(as_flags(message, self.flags))

    def say(self, message: str) -> None:
        say(as_flags(message, self.flags))

    def compiling(self, *modules: ModuleType) -> None:
        note_first_compilation(*modules)


def _parameter(option: Option) -> inspect.Parameter:
    decls = (f"{option.flag}/--no-{option.flag[2:]}",) if option.negatable else (option.flag,)
    bounds = {k: v for k, v in (("min", option.min), ("max", option.max)) if v is not None}
    default = ... if option.required else option.default
    info = typer.Option(default, *decls, help=option.help, **bounds)
    return inspect.Parameter(option.name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=option.kind)


def command_for(dataset: Dataset):
    """The Typer command of `dataset`: its signature made of the declared options."""
    options = dataset.option_list()
    flags = {o.name: o.flag for o in options}

    def command(**values: Any) -> None:
        check_new_output(values["out"], values["overwrite"])
        try:
            dataset.run(values, _Printed(flags))
        except OptionError as exc:
            raise typer.BadParameter(as_flags(str(exc), flags)) from None
        except (PicklableError, OSError, ValueError) as exc:
            fail(as_flags(error_text(exc), flags))

    parameters = [_parameter(o) for o in options]
    command.__signature__ = inspect.Signature(parameters)
    command.__annotations__ = {p.name: p.annotation for p in parameters}  # typer reads the types from here
    command.__name__ = f"encode_{dataset.name.replace('-', '_')}"
    command.__doc__ = dataset.help_text()
    return command


def register() -> None:
    """Add one `spikedata encode NAME` command per declared dataset."""
    for name, dataset in all_datasets().items():
        encode_app.command(name)(command_for(dataset))


register()

__all__ = ["command_for", "register"]
