"""`spikedata` console script: imports every command module so that it registers on the app."""

import importlib

from cli.apps import spikedata_app

_COMMAND_MODULES = ("fetch", "inspect_cmd", "encode_images", "encode_events", "encode_speech")


def main() -> None:
    for name in _COMMAND_MODULES:
        importlib.import_module(f"cli.{name}")
    spikedata_app()
