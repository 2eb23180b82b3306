"""`hm2bp` console script: imports every command module so that it registers on the app."""

import importlib

from cli.apps import hm2bp_app

_COMMAND_MODULES = ("fit", "evaluate")


def main() -> None:
    for name in _COMMAND_MODULES:
        importlib.import_module(f"cli.{name}")
    hm2bp_app()
