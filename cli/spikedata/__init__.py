"""Command line of spikedata: `spikedata fetch | encode | inspect | verify` (console script and `python -m spikedata`).

The commands are thin: parse options, call the library, print. Heavy imports happen inside the commands, so
`spikedata --help` stays fast.
"""

from spikedata.cli import encode, fetch, inspect, verify  # noqa: F401  (register)
from spikedata.cli.app import app, encode_app
from spikedata.cli.common import run_app

__all__ = ["app", "encode_app", "main"]


def main() -> None:
    """Entry point of the `spikedata` console script."""
    run_app(app, "spikedata")
