"""The `spikedata` Typer application; the command modules of this package register on it."""

import typer

from spikedata.cli.common import CommandGroup, debug_option

app = typer.Typer(
    name="spikedata",
    help="Read neuromorphic datasets, encode them into spike trains and write Zarr spike stores.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    callback=debug_option,
    cls=CommandGroup,
)
encode_app = typer.Typer(help="Encode a dataset into a spike store.", no_args_is_help=True, cls=CommandGroup)
app.add_typer(encode_app, name="encode")
