"""`spikedata` as a new user meets it, mistakes included: names that are not UTF-8, file:// URLs, what `inspect`
checked, subsets of FSDD, a misspelled split in a labels CSV, a dataset behind a download form, boolean flags,
Ctrl-C during an encode, a missing --source, a file that states no sensor size, and the note of numba's first
compilation. Each through the command line as a user runs it (CliRunner, or `python -m spikedata` where exit
status, signals and separate processes matter)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from hm2bp.cli import app as hm2bp_app
from spikedata.cli import app as spikedata_app
from spikedata.cli.common import first_run_marker
from spikedata.store import open_store
from tests.hm2bp.synthetic import make_store
from tests.writers import aedat2_bytes

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def run(*args) -> object:
    return runner.invoke(spikedata_app, [str(a) for a in args])


def text(result) -> str:
    """The output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def dvs128_file(path: Path, seed: int, chip: str | None = "DVS128") -> None:
    """An AEDAT 2.0 file of 600 DVS128 events (x, y < 128) over 15 ms."""
    rng = np.random.default_rng(seed)
    records = [((int(rng.integers(128)) << 8) | (int(rng.integers(128)) << 1) | int(rng.integers(2)), 1000 + 25 * i)
               for i in range(600)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(aedat2_bytes(records, chip))


# ------------------------------------------------------------------------------------------- names, URLs, inspect
def test_a_class_folder_whose_name_is_not_utf8_goes_through_encode_inspect_plot_and_verify(tmp_path):
    src = tmp_path / "src"
    for k, folder in enumerate([b"caf\xe9", b"tea"] * 3):
        dvs128_file(Path(os.fsdecode(os.path.join(os.fsencode(src), folder, b"r%d.aedat" % k))), k)
    store = tmp_path / "s.zarr"
    r = run("encode", "events", "--source", src, "--out", store, "--steps", "20", "--downsample", "4",
            "--max-train", "4", "--quiet")  # --max-train ranks the samples by their (non-UTF-8) paths
    assert r.exit_code == 0, r.output
    opened = open_store(store)
    # stored as printable text, the original bytes recorded
    assert opened.classes == ["caf\\xe9", "tea"] and np.bincount(opened["train"].labels).tolist() == [2, 2]
    assert bytes.fromhex(opened.attrs["raw_names"]["caf\\xe9"]) == b"caf\xe9"
    assert "\\udce9" not in (store / "zarr.json").read_text()
    png = tmp_path / "p.png"
    r = run("inspect", store, "--plot", png)
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output
    assert "caf\\xe9" in r.output and Image.open(png).size[0] > 500
    r = run("inspect", store, "--sample", "0", "--plot", tmp_path / "one.png")
    assert r.exit_code == 0 and "label caf\\xe9" in text(r), r.output
    assert run("verify", store, "--quiet").exit_code == 0


def test_file_urls_are_stores_like_their_paths(tmp_path):
    folder = tmp_path / "my stores"
    path = make_store(folder / "s.zarr", n_train=8, n_test=4)
    url = "file://" + str(path).replace(" ", "%20")
    r = run("inspect", url, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["splits"]["train"]["n_samples"] == 8
    r = run("verify", url, "--quiet")
    assert r.exit_code == 0 and f"{url}: intact" in r.output
    assert open_store("file://localhost" + str(path)).fingerprint == open_store(path).fingerprint
    r = run("inspect", "file:///no/such/store.zarr")
    assert r.exit_code == 1 and "error: /no/such/store.zarr: no such spike store" in r.output
    r = run("inspect", "file://otherhost/x.zarr")
    assert r.exit_code == 1 and "a file:// URL of another host" in r.output


def test_inspect_says_which_chunks_it_checked_and_which_it_did_not_read(tmp_path):
    store = tmp_path / "m.zarr"
    r = run("encode", "mnist-5k", "--out", store, "--steps", "20", "--max-train", "20", "--max-test", "10",
            "--keep-images", "--quiet")
    assert r.exit_code == 0, r.output
    r = run("inspect", store)
    assert r.exit_code == 0, r.output
    out = text(r)
    assert "the 4 chunk(s) of the arrays read here (indptr, times, units, labels) matched the chunk manifest" in out
    assert "1 chunk(s) of extra/images were not read here (not needed for these statistics), so not checked" in out
    assert "checks every chunk and the content hash" in out and "chunks matched the chunk manifest" not in out


# ------------------------------------------------------------------------------------------- encode options
def test_fsdd_takes_max_train_and_max_test(shared_data, tmp_path):
    out = tmp_path / "f.zarr"
    r = run("encode", "fsdd", "--source", shared_data / "speech" / "fsdd", "--out", out, "--max-train", "20",
            "--max-test", "10", "--quiet")
    assert r.exit_code == 0, r.output
    store = open_store(out)
    assert (len(store["train"]), len(store["test"])) == (20, 10)
    assert np.bincount(store["train"].labels).tolist() == [2] * 10  # stratified, not the first 20
    subsets = store.attrs["split"]["subsets"]
    assert (subsets["train"]["kept"], subsets["train"]["of"], subsets["test"]["of"]) == (20, 1800, 200)
    assert set(store["test"].extra("take").tolist()) <= {0, 1, 2, 3, 4}  # the test split is still takes 0-4


def test_a_misspelled_split_in_a_labels_csv_is_an_error_not_a_new_split(tmp_path):
    src = tmp_path / "src"
    for k in range(4):
        dvs128_file(src / f"r{k}.aedat", k)
    csv = tmp_path / "labels.csv"
    csv.write_text("file,label,split\nr0.aedat,a,train\nr1.aedat,b,train\nr2.aedat,a,tset\nr3.aedat,b,Validation\n")
    args = ("encode", "events", "--source", src, "--labels", csv, "--steps", "20", "--downsample", "4", "--quiet")
    r = run(*args, "--out", tmp_path / "x.zarr")
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1, r.output
    assert f"error: {csv}:4: split 'tset' is not one of train, test, val" in text(r) and "--split-names" in r.output
    assert not (tmp_path / "x.zarr").exists()
    csv.write_text(csv.read_text().replace("tset", "test"))
    r = run(*args, "--out", tmp_path / "y.zarr")
    assert r.exit_code == 0, r.output
    assert open_store(tmp_path / "y.zarr").splits == ["train", "test", "val"]  # "Validation" is val
    r = run(*args, "--out", tmp_path / "z.zarr", "--split-names", "train,test")
    assert r.exit_code == 1 and "split 'Validation' is not one of train, test" in text(r)
    r = run(*args, "--out", tmp_path / "z.zarr", "--split-names", "train,my-split")
    assert r.exit_code == 2 and "--split-names" in r.output


def test_a_missing_source_is_said_not_to_exist(tmp_path):
    nowhere = tmp_path / "nowhere"
    for name, extra in (("fsdd", ()), ("nmnist", ()), ("mnist", ()), ("events", ("--steps", "5")),
                        ("dvsgesture", ()), ("shd", ())):
        r = run("encode", name, "--source", nowhere, "--out", tmp_path / "x.zarr", *extra)
        assert r.exit_code == 1 and r.output.strip() == f"error: --source {nowhere} does not exist", (name, r.output)
    r = run("encode", "events", "--source", tmp_path, "--labels", nowhere, "--steps", "5", "--out", tmp_path / "x")
    assert r.exit_code == 1 and f"error: --labels {nowhere} does not exist" in r.output


def test_a_file_that_states_no_sensor_size_is_named(tmp_path):
    dvs128_file(tmp_path / "src" / "a" / "x.aedat", 0, chip=None)  # no AEChip line: no sensor size
    r = run("encode", "events", "--source", tmp_path / "src", "--out", tmp_path / "x.zarr", "--steps", "5")
    assert r.exit_code == 1, r.output
    assert f"error: {tmp_path / 'src' / 'a' / 'x.aedat'}: aedat2 files do not state the sensor size; pass " \
           "--sensor-size WIDTH,HEIGHT" in text(r)


def test_fetch_of_a_dataset_behind_a_download_form_explains_how_to_get_it(tmp_path):
    r = run("fetch", "dvsgesture", "--dest", tmp_path / "d")
    out = text(r)
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1, r.output
    assert "cannot be downloaded automatically: its distributor hands the files out through a download form" in out
    assert "https://research.ibm.com/interactive/dvsgesture/" in out and "mirror" not in out
    assert "`spikedata encode dvsgesture --source DvsGesture --out dvsgesture.zarr`" in out
    assert not (tmp_path / "d").exists()


# ------------------------------------------------------------------------------------------- flags
def _commands(app: typer.Typer) -> dict[str, object]:
    """Every command of a Typer app (subcommands of groups too), by its words."""
    root = typer.main.get_command(app)
    found, todo = {}, [((), root)]
    while todo:
        words, command = todo.pop()
        found[" ".join(words)] = command
        ctx = command.context_class(command)
        for name in getattr(command, "list_commands", lambda _: [])(ctx):
            todo.append(((*words, name), command.get_command(ctx, name)))
    return found


@pytest.mark.parametrize("app", [spikedata_app, hm2bp_app], ids=["spikedata", "hm2bp"])
def test_every_boolean_is_a_flag_in_help_and_parsing(app):
    commands = _commands(app)
    assert len(commands) >= 3
    for words, command in commands.items():
        ctx = command.context_class(command)
        bools = [p for p in command.get_params(ctx) if getattr(p, "type_descriptor", None) is not None
                 and p.type_descriptor.annotation is bool]
        assert all(p.is_flag for p in bools), (words, [p.name for p in bools if not p.is_flag])
        r = runner.invoke(app, [*words.split(), "--help"])
        assert r.exit_code == 0 and "<bool>" not in r.output, (words, r.output)
    r = runner.invoke(spikedata_app, ["encode", "mnist-5k", "--out", "x.zarr", "--overwrite", "true"])
    assert r.exit_code == 2 and "unexpected extra argument(s) (true)" in text(r), r.output


# ------------------------------------------------------------------------------------------- Ctrl-C, notes
def test_ctrl_c_during_encode_stops_the_bar_says_so_and_leaves_nothing(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    out = tmp_path / "m.zarr"
    proc = subprocess.Popen([sys.executable, "-m", "spikedata", "encode", "mnist-5k", "--out", str(out), "--workers",
                             "2", "--steps", "400"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    while not any(p.name.startswith(".m.zarr.partial-") for p in tmp_path.iterdir()):  # the writer is at work
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal does: the whole process group, workers included
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert f"interrupted: nothing was written to {out} (the partial store was removed)" in err
    assert "encode train (interrupted)" in err  # the bar's last frame
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no store, no partial store, no lock


def test_the_first_run_note_comes_once_per_install(tmp_path):
    store = make_store(tmp_path / "s.zarr", n_train=4, n_test=2)
    cache = tmp_path / "numba-cache"
    env = {**os.environ, "PYTHONPATH": str(REPO), "NUMBA_CACHE_DIR": str(cache)}

    def inspect() -> str:
        r = subprocess.run([sys.executable, "-m", "spikedata", "inspect", str(store), "--json"], env=env,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        return r.stderr

    assert inspect().count("note: first run: numba compiles") == 1  # nothing cached: compiles, says so
    assert first_run_marker().name == "spikedata-first-run-noted" and (cache / first_run_marker().name).is_file()
    for f in cache.rglob("*.nb[ic]"):  # as if the next command compiled other kernels for the first time
        f.unlink()
    assert "first run" not in inspect()
