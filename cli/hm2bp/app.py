"""The `hm2bp` Typer application; the command modules of this package register on it."""

import typer

from spikedata.cli.common import CommandGroup, debug_option

app = typer.Typer(
    name="hm2bp",
    help="Train and evaluate spiking networks with HM2-BP on spike stores.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    callback=debug_option,
    cls=CommandGroup,
)
