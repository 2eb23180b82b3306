"""Every `spikedata encode NAME` command keeps its options: flags, type, default, required, repeatable, bounds.

`encode_options.json` was recorded from the commands as they were written by hand, one Typer signature per
dataset, before they were built from the dataset declarations; a command that loses, renames or changes an option
fails here. The help texts are not compared (they may be reworded).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer

from spikedata.cli import app as spikedata_app

RECORDED = json.loads((Path(__file__).with_name("encode_options.json")).read_text(encoding="utf-8"))
_CLICK_TYPES = {"integer": "int", "float": "float", "text": "str", "boolean": "bool", "path": "Path"}


def _type_name(param) -> str:
    descriptor = getattr(param, "type_descriptor", None)  # typer >= 0.16 keeps the annotation
    if descriptor is not None:
        return getattr(descriptor.annotation, "__name__", str(descriptor.annotation))
    name = getattr(param.type, "name", str(param.type))
    return "list" if param.multiple else _CLICK_TYPES.get(name, name)


def _bound(param, which: str):
    value = getattr(param, which, None)
    return value if value is not None or not hasattr(param, "type") else getattr(param.type, which, None)


def _describe(param) -> dict:
    return {"opts": list(param.opts), "secondary_opts": list(param.secondary_opts), "type": _type_name(param),
            "default": param.default, "required": param.required, "multiple": param.multiple,
            "is_flag": bool(param.is_flag), "min": _bound(param, "min"), "max": _bound(param, "max")}


def _encode_commands() -> dict:
    group = typer.main.get_command(spikedata_app)
    ctx = group.context_class(group)
    encode = group.get_command(ctx, "encode")
    return {name: encode.get_command(ctx, name) for name in encode.list_commands(ctx)}


COMMANDS = _encode_commands()


def test_the_same_commands():
    assert sorted(COMMANDS) == sorted(RECORDED)


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_every_option_as_recorded(name):
    have = {p.name: _describe(p) for p in COMMANDS[name].params}
    assert sorted(have) == sorted(RECORDED[name]), name
    for option, recorded in RECORDED[name].items():
        assert have[option] == recorded, (name, option)
