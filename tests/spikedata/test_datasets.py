"""The dataset declarations: found by looking at the package, each with its manifest, reader, options and the
`hm2bp` preset of its default encoding; defaults that live in the manifests; `Dataset.run` from Python; a new
dataset module becomes a `spikedata encode` command without touching anything else."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from dataclasses import fields

import pytest

import spikedata.datasets as datasets_pkg
from spikedata.datasets import all_datasets, get_dataset
from spikedata.datasets.shared.declaration import Dataset, OptionGroup, Reporter
from spikedata.errors import DatasetError, OptionError
from spikedata.manifest import load_manifest

COMMANDS = ["asldvs", "cifar10dvs", "dvsgesture", "dvslip", "emnist", "events", "fsdd", "gsc", "mnist", "mnist-5k",
            "ncaltech101", "ncars", "nmnist", "ntidigits", "shd", "ssc", "ti46"]


def test_every_dataset_module_declares_one_dataset():
    modules = [m.name for m in pkgutil.iter_modules(datasets_pkg.__path__) if not m.ispkg]
    assert len(modules) == len(COMMANDS)
    for name in modules:
        module = __import__(f"spikedata.datasets.{name}", fromlist=["DATASET"])
        assert isinstance(module.DATASET, Dataset), name
    assert list(all_datasets()) == COMMANDS
    with pytest.raises(DatasetError, match="unknown dataset 'nope'; known: asldvs, cifar10dvs"):
        get_dataset("nope")


@pytest.mark.parametrize("name", COMMANDS)
def test_declaration(name):
    ds = get_dataset(name)
    assert ds.summary and ds.reader is not None and callable(ds.encode)
    for manifest in filter(None, (ds.manifest, ds.defaults_from)):
        assert load_manifest(manifest).name == manifest
    if ds.manifest is not None:
        assert ds.class_names() == load_manifest(ds.manifest).classes
    options = ds.option_list()
    assert all(o.help for o in options), [o.name for o in options if not o.help]
    assert [o.name for o in options][-4:] == ["out", "workers", "overwrite", "quiet"]


def test_default_presets_exist_in_hm2bp():
    """Each dataset names the network preset of its default encoding; hm2bp ships every one of them."""
    import hm2bp

    presets = {name: ds.preset for name, ds in all_datasets().items() if ds.preset is not None}
    assert presets == {
        "asldvs": "asldvs-mlp", "cifar10dvs": "cifar10dvs-mlp", "dvsgesture": "dvsgesture-mlp", "dvslip": "dvslip-mlp",
        "emnist": "emnist-mlp", "fsdd": "fsdd-mlp", "gsc": "gsc-mlp", "mnist": "mnist-mlp", "mnist-5k": "demo",
        "ncars": "ncars-mlp", "nmnist": "nmnist-mlp", "ntidigits": "ntidigits-mlp", "shd": "shd-mlp", "ssc": "ssc-mlp",
        "ti46": "ti46-mlp",
    }  # fmt: skip
    assert set(presets.values()) <= set(hm2bp.preset_names())


def test_encoding_defaults_come_from_the_manifest_and_the_front_end():
    from spikedata.datasets.nmnist import PRESETS
    from spikedata.encoders.speech import SpeechFrontEnd

    layout = get_dataset("nmnist").layout()
    for options in PRESETS.values():
        assert list(options.sensor_size) == layout["sensor_size"]
        assert (options.dt_us, options.n_steps) == (layout["dt_us"], layout["n_steps"])
    assert get_dataset("mnist-5k").layout() == get_dataset("mnist").layout()  # mnist-5k is MNIST
    front_end = {f.name: f.default for f in fields(SpeechFrontEnd) if f.init}
    for name in ("ti46", "fsdd"):
        group = next(g for g in get_dataset(name).options if isinstance(g, OptionGroup))
        assert {o.name: o.default for o in group.options} == front_end


class _Recorder(Reporter):
    def __init__(self):
        self.lines: list[str] = []

    def note(self, message: str) -> None:
        self.lines.append("note: " + message)

    def say(self, message: str) -> None:
        self.lines.append(message)


def test_run_from_python(tmp_path):
    """The declaration is the library's entry point too: option values by name, defaults for the rest."""
    from spikedata.store import open_store

    ds = get_dataset("mnist-5k")
    report = _Recorder()
    path = ds.run({"out": tmp_path / "m.zarr", "steps": 20, "split": ["test"], "max_test": 30}, report)
    store = open_store(path)
    assert store.splits == ["test"] and len(store["test"]) == 30 and store.n_steps == 20
    assert store.attrs["dt_us"] == load_manifest("mnist").layout["dt_us"]
    assert report.lines[-1].startswith(f"wrote {path}: mnist-5k, splits test (30), T = 20, seed 0")
    with pytest.raises(OptionError, match=r"has no option\(s\) \['stepz'\]"):
        ds.run({"out": tmp_path / "x.zarr", "stepz": 3})
    with pytest.raises(OptionError, match="`out` is required"):
        ds.run({})
    with pytest.raises(OptionError, match="`preset` must be one of reference, reference-exact, plain, got 'x'"):
        get_dataset("nmnist").run({"out": tmp_path / "y.zarr", "source": tmp_path, "preset": "x"})


def test_a_new_dataset_module_becomes_a_command(tmp_path, monkeypatch):
    """Adding a dataset is one module (here written to a folder added to the package) and its manifest."""
    from typer.testing import CliRunner

    (tmp_path / "toy.py").write_text(
        "from pathlib import Path\n"
        "from spikedata.datasets.shared.declaration import Dataset, Option\n"
        "from spikedata.datasets.shared.options import SOURCE\n"
        "def encode(dataset, run, source, level):\n"
        "    run.report.say(f'toy from {source} at level {level} into {run.out}')\n"
        "    return run.out\n"
        "DATASET = Dataset('toy', 'A toy.', encode, options=(SOURCE, Option('level', int, 3, 'How much.', min=0)),\n"
        "                  reader=Path.iterdir)\n"
    )
    monkeypatch.setattr(datasets_pkg, "__path__", [*datasets_pkg.__path__, str(tmp_path)])
    monkeypatch.syspath_prepend(str(tmp_path))
    all_datasets.cache_clear()
    try:
        assert "toy" in all_datasets()
        import typer

        from spikedata.cli.encode import command_for

        app = typer.Typer()
        app.command("toy")(command_for(get_dataset("toy")))
        r = CliRunner().invoke(app, ["--source", str(tmp_path), "--out", str(tmp_path / "t.zarr"), "--level", "5"])
        assert r.exit_code == 0, r.output
        assert f"toy from {tmp_path} at level 5 into {tmp_path / 't.zarr'}" in r.output
        r = CliRunner().invoke(app, ["--source", str(tmp_path), "--out", "t", "--level", "-1"])
        assert r.exit_code == 2 and "--level" in r.output
    finally:
        sys.modules.pop("spikedata.datasets.toy", None)
        all_datasets.cache_clear()


def test_the_command_line_starts_without_zarr_torch_or_hm2bp():
    code = "import sys, spikedata.cli\nprint(sorted(m for m in ('zarr', 'torch', 'hm2bp', 'h5py') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_help_shows_the_manifest_defaults():
    """A command's help gets the encoding defaults from the manifest, so that it never repeats a number."""
    for name in ("dvsgesture", "ncars", "cifar10dvs", "shd", "mnist", "asldvs", "dvslip", "ntidigits", "gsc"):
        ds = get_dataset(name)
        layout = load_manifest(name).layout
        text = ds.help_text()
        assert text.startswith(ds.summary) and f"dt_us {layout['dt_us']}" in text, name
    assert "data_manifests/mnist.toml" in get_dataset("mnist-5k").help_text()
    assert get_dataset("events").help_text() == get_dataset("events").summary  # no manifest
