"""The options several datasets take, each declared once: the source directory, the work unit, split selection,
event binning, the handling of events before binning, the Poisson image code and the speech front end.

A dataset lists the groups it takes in its declaration (`spikedata.datasets.shared.declaration`); a group's
`build` turns the values into the one argument its dataset's encode receives (a `SplitSelection`, the changes to
the dataset's `BinningOptions`, an `EventChecks`, a `SpeechFrontEnd`). A bad value is an `OptionError` naming the
option. Nothing here imports the encoders at import time, so that the command line starts fast.
"""

from __future__ import annotations

import types
import typing
from dataclasses import MISSING, dataclass, fields, replace
from functools import cache
from pathlib import Path
from typing import Any

from spikedata.datasets.shared.declaration import REQUIRED, Option, OptionGroup
from spikedata.errors import OptionError

SOURCE = Option("source", Path, help="Directory holding the data set (layout in docs/events.md).")
CHUNK = Option("chunk", int, 256, "Samples per work unit.", min=1)
DT_US = Option("dt_us", int, None, "Bin width in µs (one time step; default: the dataset's).", min=1)
SENSOR_SIZE = Option("sensor_size", str, None, "WIDTH,HEIGHT of the sensor in pixels.")
STEPS_KEPT = Option("steps", int, None, "Time steps kept per sample.", min=1)


def parse_ints(text: str | None, n: int, name: str) -> tuple[int, ...] | None:
    """`n` integers from "a,b,..." (or "AxB"); None stays None; OptionError naming option `name` otherwise."""
    if text is None:
        return None
    try:
        values = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        values = ()
    if len(values) != n:
        raise OptionError(f"`{name}`: expected {n} integers separated by commas, got {text!r}")
    return values


# ---------------------------------------------------------------------------------------------- split selection


@dataclass(frozen=True)
class SplitSelection:
    """Which samples to encode: a seeded stratified test split of `test_fraction` (datasets without a published
    split), and seeded stratified subsets of at most `max_samples[split]` samples; `seed` seeds both."""

    max_samples: dict[str, int | None]
    seed: int = 0
    test_fraction: float | None = None


def _split_selection(values: dict[str, Any]) -> SplitSelection:
    return SplitSelection({"train": values["max_train"], "test": values["max_test"]}, int(values["split_seed"]),
                          values.get("test_fraction"))


_SUBSETS = (
    Option("max_train", int, None, "Encode a seeded stratified subset of N train samples.", min=1),
    Option("max_test", int, None, "Encode a seeded stratified subset of N test samples.", min=1),
    Option("split_seed", int, 0, "Seed of the --max-* subsets and of --test-fraction (and of seeded transforms)."),
)
#: --max-train, --max-test, --split-seed: for a dataset with its own (published) splits.
SPLIT_SELECTION = OptionGroup("splits", _SUBSETS, _split_selection)
#: --test-fraction: a seeded stratified test split (`SEEDED_SPLIT`; a dataset may give it a default with `but`).
TEST_FRACTION = Option("test_fraction", float, None, "Seeded stratified test split of this fraction (data sets "
                       "without a published split).", min=0.0, max=1.0)
#: The same and --test-fraction: for a dataset that publishes no split.
SEEDED_SPLIT = OptionGroup("splits", (TEST_FRACTION, *_SUBSETS), _split_selection)


# ---------------------------------------------------------------------------------------------- event binning


def _binning_changes(values: dict[str, Any]) -> dict[str, Any]:
    """The `BinningOptions` fields the user gave (None: the dataset's default)."""
    down = values["downsample"]
    changes = {
        "dt_us": values["dt_us"], "n_steps": values["steps"], "rounding": values["rounding"],
        "time_shift": values["time_shift"], "crop": parse_ints(values["crop"], 4, "crop"),
        "downsample": (down, down) if down else None, "polarity": values["polarity"],
        "unit_order": values["unit_order"],
    }  # fmt: skip
    changes = {k: v for k, v in changes.items() if v is not None}
    from spikedata.encoders.event_binning import BinningOptions

    try:  # each value on its own (the dataset's defaults come later)
        replace(BinningOptions(), **changes)
    except ValueError as exc:
        raise OptionError(str(exc)) from None
    return changes


#: How events become spikes (`spikedata.encoders.event_binning`); every value left out is the dataset's default.
BINNING = OptionGroup("binning", (
    DT_US,
    STEPS_KEPT,
    Option("rounding", str, None, "Step of an event: 'floor' or 'ceil' of (t - t_start) / dt."),
    Option("time_shift", int, None, "Steps added to every event's step (the reference adds 1)."),
    Option("crop", str, None, "Keep only the box X0,Y0,WIDTH,HEIGHT (pixels, after stabilisation)."),
    Option("downsample", int, None, "Spatial downsampling factor (x // f, y // f).", min=1),
    Option("polarity", str, None, "'split' (two channels, default) or 'merge' (one)."),
    Option("unit_order", str, None, "'pyx' (polarity x height x width) or 'pxy' (reference)."),
), _binning_changes)


@dataclass(frozen=True)
class EventChecks:
    """What happens to a sample's events before binning: the `transforms` (`spikedata.transforms.TransformSpec`)
    in order, and whether events outside the sensor are dropped (counted) or an error."""

    transforms: tuple = ()
    drop_outside: bool = False


def _event_checks(values: dict[str, Any]) -> EventChecks:
    from spikedata.transforms import TransformSpec

    try:
        specs = tuple(TransformSpec.parse(t) for t in values["transform"] or ())
    except ValueError as exc:
        raise OptionError(str(exc)) from None
    return EventChecks(specs, bool(values["drop_outside"]))


EVENT_CHECKS = OptionGroup("events", (
    Option("transform", list[str], None, "Event transform before binning, NAME[:key=value,...] (repeatable, "
           "applied in order), e.g. denoise:filter_time_us=10000, refractory_period:refractory_us=1000, "
           "center_crop:width=100,height=100, flip_x (docs/events.md)."),
    Option("drop_outside", bool, False, "Drop events outside the sensor (counted) instead of failing."),
), _event_checks)


# ---------------------------------------------------------------------------------------------- images


#: Time steps of the Poisson code unless given: the paper's T for MNIST (400 steps of 1 ms).
DEFAULT_POISSON_STEPS = 400
#: The Poisson rate code of an image dataset (`spikedata.encoders.poisson`).
POISSON = OptionGroup("poisson", (
    Option("steps", int, DEFAULT_POISSON_STEPS, "Time steps per sample (steps of the dataset's dt_us, 1 ms for "
           "MNIST).", min=1),
    Option("seed", int, 0, "Seed: a sample's spikes depend only on (seed, sample index).", min=0),
    Option("max_prob", float, None, "Spike probability per step of a 255 pixel.", min=0.0, max=1.0),
    Option("keep_images", bool, False, "Also store the uint8 images [n, H, W] as extra array 'images'."),
))
#: The splits of a dataset to encode.
SPLIT_NAMES = Option("split", list[str], None, "Encode only this split (repeatable); default: all splits.")
#: The files of an IDX image dataset and their check against the manifest.
IDX_FILES = OptionGroup("files", (
    Option("source", Path, None, "Directory holding the dataset's IDX files (.gz or raw)."),
    Option("no_verify", bool, False, "Do not check the files' sha256 against the manifest."),
))


# ---------------------------------------------------------------------------------------------- speech


@cache
def speech_front_end() -> OptionGroup:
    """One option per field of `SpeechFrontEnd` (default, help and lower bound from the field): the group builds
    the front end they describe."""
    from spikedata.encoders.speech import SpeechFrontEnd

    hints = typing.get_type_hints(SpeechFrontEnd)
    options = []
    for f in fields(SpeechFrontEnd):
        if not f.init:
            continue
        kind = hints[f.name]
        if typing.get_origin(kind) in (typing.Union, types.UnionType):
            kind = next(a for a in typing.get_args(kind) if a is not type(None))  # "float | None": a float option
        options.append(Option(f.name, kind, f.default if f.default is not MISSING else REQUIRED, f.metadata["doc"],
                              min=f.metadata.get("min"), negatable=kind is bool))

    def build(values: dict[str, Any]) -> SpeechFrontEnd:
        try:
            return SpeechFrontEnd(**values)
        except ValueError as exc:
            raise OptionError(str(exc)) from None

    return OptionGroup("front_end", tuple(options), build)
