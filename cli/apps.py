"""The Typer application objects; command modules register themselves on these."""

import typer

spikedata_app = typer.Typer(
    name="spikedata",
    help="Read neuromorphic datasets, encode them into spike trains and write Zarr spike stores.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
encode_app = typer.Typer(help="Encode a dataset into a spike store.", no_args_is_help=True)
spikedata_app.add_typer(encode_app, name="encode")

hm2bp_app = typer.Typer(
    name="hm2bp",
    help="Train and evaluate spiking networks with HM2-BP on spike stores.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
