"""The declaration of a dataset: one `Dataset` per dataset module (`DATASET = Dataset(...)`).

A declaration holds everything the rest of the project needs to know about a dataset: its name (the command
`spikedata encode NAME` and the store's `dataset` attribute), its manifest (`data_manifests/NAME.toml`: files,
classes, splits and, under `[layout]`, the encoding defaults), the function that reads or finds its samples, the
network preset of `hm2bp` that fits its default encoding, and its options: `Option`s of its own and shared
`OptionGroup`s (`spikedata.datasets.shared.options`). `Dataset.run` turns option values into the arguments of the
dataset's `encode` function, which writes the store. The command line builds one command per declaration and holds
no dataset logic; Python callers use `run` the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from spikedata.errors import OptionError


class Required:
    """The default of an option that must be given."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = Required()


@dataclass(frozen=True)
class Option:
    """One option of an encode: its parameter `name` (the flag is ``--name-with-dashes``), type, default, help and
    bounds. `kind` is int, float, str, bool, Path or list[str] (repeatable); a bool option with `negatable` also has
    a ``--no-`` form; `choices` limits a str option's values."""

    name: str
    kind: Any
    default: Any = REQUIRED
    help: str = ""
    min: float | None = None
    max: float | None = None
    negatable: bool = False
    choices: tuple[str, ...] | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def but(self, **changes: Any) -> Option:
        """This option with another default, help, ... (one declaration, adapted to a dataset)."""
        return replace(self, **changes)

    def check(self, value: Any) -> Any:
        """`value` if the option can take it, else OptionError naming the option."""
        if self.choices is not None and value is not None and value not in self.choices:
            raise OptionError(f"`{self.name}` must be one of {', '.join(self.choices)}, got {value!r}")
        return value


@dataclass(frozen=True)
class OptionGroup:
    """Options that go together (e.g. the event binning options) and the one value they become: `build` turns
    {option name: value} into the argument `name` of the encode function (the values as a dict without it)."""

    name: str
    options: tuple[Option, ...]
    build: Callable[[dict[str, Any]], Any] | None = None

    def but(self, **options: Option) -> OptionGroup:
        """This group with some of its options replaced (by name), e.g. another default for one dataset."""
        unknown = set(options) - {o.name for o in self.options}
        if unknown:
            raise ValueError(f"group {self.name!r} has no option {sorted(unknown)}")
        return replace(self, options=tuple(options.get(o.name, o) for o in self.options))


class Reporter:
    """What an encode tells its user while it runs. This one says nothing; the command line prints."""

    def note(self, message: str) -> None:
        """Something worth knowing about the data or the result (a partial copy, events dropped)."""

    def say(self, message: str) -> None:
        """What was found and what was written."""

    def compiling(self, *modules: ModuleType) -> None:
        """The numba kernels of `modules` are about to run (a fresh install compiles them first)."""


@dataclass(frozen=True)
class EncodeRun:
    """Where and how an encode writes its store: `out` path, `workers` processes, `overwrite` an existing store,
    a `progress` bar; `report` receives its messages."""

    out: Path
    workers: int = 1
    overwrite: bool = False
    progress: bool = True
    report: Reporter = field(default_factory=Reporter)


#: The `[layout]` keys that are encoding defaults (shown in a command's help).
ENCODING_DEFAULTS = ("sensor_size", "dt_us", "n_steps", "downsample", "t_start")

#: The options of every encode: where the store goes and how the encode runs (they become its `EncodeRun`).
OUTPUT_OPTIONS = (
    Option("out", Path, help="Path of the spike store to write (a directory, e.g. mnist.zarr)."),
    Option("workers", int, 1, "Encoding processes (the store is the same for any number).", min=1),
    Option("overwrite", bool, False, "Replace an existing store at --out."),
    Option("quiet", bool, False, "No progress bar."),
)


@dataclass(frozen=True)
class Dataset:
    """One dataset: see the module docstring. `encode(dataset, run, **arguments)` writes the store and returns its
    path; its arguments are the dataset's options (by name) and one value per option group (by group name).

    `manifest` names `data_manifests/<manifest>.toml`; `defaults_from` the manifest whose `[layout]` holds the
    encoding defaults, when it is another one (mnist-5k is MNIST). `splits` and `classes` are given only where no
    manifest states them. `reader` reads or finds the samples under a source directory (its signature is that of
    the dataset's kind). `preset` is the `hm2bp` network preset for the default encoding."""

    name: str
    summary: str
    encode: Callable[..., Path]
    options: tuple[Option | OptionGroup, ...] = ()
    manifest: str | None = None
    defaults_from: str | None = None
    reader: Callable[..., Any] | None = None
    splits: tuple[str, ...] | None = None
    classes: tuple[str, ...] | None = None
    preset: str | None = None

    def __post_init__(self) -> None:
        names = [o.name for o in self.option_list()]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"dataset {self.name!r}: options {repeated} are declared twice")

    def option_list(self) -> list[Option]:
        """Every option of the encode, groups flattened, the output options last."""
        out: list[Option] = []
        for item in self.options:
            out.extend(item.options if isinstance(item, OptionGroup) else (item,))
        return out + list(OUTPUT_OPTIONS)

    def layout(self) -> dict[str, Any]:
        """The `[layout]` table of the manifest that holds the encoding defaults ({} without a manifest)."""
        from spikedata.manifest import load_manifest

        source = self.defaults_from or self.manifest
        return dict(load_manifest(source).layout) if source else {}

    def help_text(self) -> str:
        """The summary and the encoding defaults the manifest gives (so that help never repeats a number)."""
        layout = self.layout()
        shown = [f"{key} {layout[key]}" for key in ENCODING_DEFAULTS if key in layout]
        if not shown:
            return self.summary
        return f"{self.summary} Defaults (data_manifests/{self.defaults_from or self.manifest}.toml): " \
               f"{', '.join(shown)}."

    def split_names(self) -> tuple[str, ...] | None:
        """The splits the dataset publishes (None: they are found in the source, or made by a seeded split)."""
        if self.splits is not None or self.manifest is None:
            return self.splits
        from spikedata.manifest import load_manifest

        return tuple(load_manifest(self.manifest).splits) or None

    def class_names(self) -> tuple[str, ...] | None:
        """The class names in label order (None: they are found in the source)."""
        if self.classes is not None or self.manifest is None:
            return self.classes
        from spikedata.manifest import load_manifest

        return load_manifest(self.manifest).classes

    def complete(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """`values` with every option the caller left out at its default (OptionError for an unknown option, a
        missing required one, or a value outside an option's choices)."""
        options = {o.name: o for o in self.option_list()}
        unknown = sorted(set(values) - set(options))
        if unknown:
            raise OptionError(f"{self.name} has no option(s) {unknown}; it has {sorted(options)}")
        missing = [n for n, o in options.items() if o.required and values.get(n) is None]
        if missing:
            raise OptionError(f"{self.name}: `{missing[0]}` is required")
        return {n: o.check(values[n]) if n in values else o.default for n, o in options.items()}

    def run(self, values: Mapping[str, Any], report: Reporter | None = None) -> Path:
        """Encode the dataset with the option `values` (by option name; left out: the default) into the store at
        `values["out"]`; returns its path."""
        values = self.complete(values)
        arguments: dict[str, Any] = {}
        for item in self.options:
            if isinstance(item, OptionGroup):
                raw = {o.name: values[o.name] for o in item.options}
                arguments[item.name] = item.build(raw) if item.build is not None else raw
            else:
                arguments[item.name] = values[item.name]
        run = EncodeRun(Path(values["out"]), int(values["workers"]), bool(values["overwrite"]),
                        not values["quiet"], report or Reporter())
        return self.encode(self, run, **arguments)
