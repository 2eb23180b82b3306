"""Command line of hm2bp: `hm2bp fit | eval | export` (console script and `python -m hm2bp`).

The commands are thin: parse options, call the library, print. Heavy imports (torch) happen inside the commands,
so `hm2bp --help` stays fast.
"""

from hm2bp.cli import evaluate, export, fit  # noqa: F401  (register the commands)
from hm2bp.cli.app import app
from spikedata.cli.common import run_app

__all__ = ["app", "main"]


def main() -> None:
    """Entry point of the `hm2bp` console script."""
    run_app(app, "hm2bp")
