"""`spikedata encode mnist|emnist|mnist-5k`, `spikedata inspect`, `spikedata fetch` through the Typer app."""

import gzip
import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from spikedata.cli import app as spikedata_app
from spikedata.datasets.mnist_5k import load_mnist_5k
from spikedata.encoders.poisson import poisson_encode
from spikedata.io.idx import read_idx
from spikedata.store import open_store

runner = CliRunner()


def _run(*args):
    return runner.invoke(spikedata_app, [str(a) for a in args])


@pytest.fixture(scope="module")
def mnist5k_store(tmp_path_factory):
    out = tmp_path_factory.mktemp("s") / "m5k.zarr"
    r = _run("encode", "mnist-5k", "--out", out, "--steps", 50, "--seed", 3, "--keep-images", "--quiet")
    assert r.exit_code == 0, r.output
    return out


def test_encode_mnist_5k(mnist5k_store):
    store = open_store(mnist5k_store)
    assert store.splits == ["train", "test"]
    assert store.attrs["dataset"] == "mnist-5k" and store.attrs["seed"] == 3 and store.n_steps == 50
    assert store.unit_shape == (1, 28, 28) and store.dt_us == 1000 and store.classes == [str(d) for d in range(10)]
    test = store["test"]
    ref = load_mnist_5k("test")
    assert len(test) == 1000 and len(store["train"]) == 4000
    assert np.bincount(test.labels).tolist() == [100] * 10
    assert np.array_equal(test.labels, ref.labels)
    images = test.extra("images")
    assert images.shape == (1000, 28, 28) and images.dtype == np.uint8 and np.array_equal(images, ref.images)
    # the store holds exactly poisson_encode of the images with (seed, sample index)
    assert np.array_equal(test.dense([7, 8]), poisson_encode(ref.images[7:9], 50, seed=3, first_index=7))
    train_ids = set(map(bytes, store["train"].extra("images").reshape(4000, -1)[:50]))
    assert not train_ids & set(map(bytes, images.reshape(1000, -1)))  # train and test are disjoint


def test_encode_mnist_test_split(shared_data, tmp_path):
    out = tmp_path / "mnist.zarr"
    r = _run("encode", "mnist", "--source", shared_data / "mnist", "--out", out, "--split", "test", "--steps", 20,
             "--quiet")  # fmt: skip
    assert r.exit_code == 0, r.output
    store = open_store(out)
    assert store.splits == ["test"]
    labels = read_idx(shared_data / "mnist" / "t10k-labels-idx1-ubyte.gz")
    assert np.array_equal(store["test"].labels, labels)
    assert store.attrs["source"]["files"]["t10k-images-idx3-ubyte.gz"].startswith("167310007f03")


def test_encode_mnist_errors(shared_data, tmp_path):
    r = _run("encode", "mnist", "--out", tmp_path / "x.zarr")
    assert r.exit_code != 0 and "--source" in r.output
    # the training images are not in the shared folder: a clear error naming the file, and no store
    r = _run("encode", "mnist", "--source", shared_data / "mnist", "--out", tmp_path / "x.zarr", "--quiet")
    assert r.exit_code == 1 and "train-images-idx3-ubyte.gz not found" in r.output
    assert not (tmp_path / "x.zarr").exists()
    # a modified copy fails its checksum unless --no-verify
    src = tmp_path / "src"
    src.mkdir()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(shared_data / "mnist" / name, src / name)
    labels = bytearray(gzip.decompress((src / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    labels[8] = (labels[8] + 1) % 10
    (src / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(labels)))
    args = ("encode", "mnist", "--source", src, "--split", "test", "--steps", 5, "--quiet")
    r = _run(*args, "--out", tmp_path / "y.zarr")
    assert r.exit_code == 1 and "does not match the manifest" in r.output and not (tmp_path / "y.zarr").exists()
    r = _run(*args, "--out", tmp_path / "z.zarr", "--no-verify")
    assert r.exit_code == 0 and open_store(tmp_path / "z.zarr")["test"].labels[0] == (7 + 1) % 10


def test_encode_emnist_subset(shared_data, tmp_path):
    """The shared EMNIST files are a renamed subset: with --no-verify and the manifest names they encode."""
    src = tmp_path / "emnist"
    src.mkdir()
    d = shared_data / "emnist" / "derived_idx"
    for kind in ("images-idx3", "labels-idx1"):
        shutil.copy(d / f"emnist-balanced-test-18496to18799-{kind}-ubyte", src / f"emnist-balanced-test-{kind}-ubyte")
    shutil.copy(shared_data / "emnist" / "emnist-balanced-mapping.txt", src)
    out = tmp_path / "e.zarr"
    r = _run("encode", "emnist", "--source", src, "--out", out, "--split", "test", "--steps", 10, "--keep-images",
             "--no-verify", "--quiet")  # fmt: skip
    assert r.exit_code == 0, r.output
    store = open_store(out)
    assert len(store.classes) == 47 and store.classes[10] == "A" and store.attrs["source"]["variant"] == "balanced"
    raw = read_idx(d / "emnist-balanced-test-18496to18799-images-idx3-ubyte")
    assert np.array_equal(store["test"].extra("images"), raw.transpose(0, 2, 1))


def test_inspect_json_and_plot(mnist5k_store, tmp_path):
    png = tmp_path / "m.png"
    r = _run("inspect", mnist5k_store, "--split", "test", "--json", "--plot", png)
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    s = report["splits"]["test"]
    split = open_store(mnist5k_store)["test"]
    counts = np.diff(split.indptr)
    assert s["n_samples"] == 1000 and s["n_events"] == int(counts.sum())
    assert s["spikes_per_sample"]["median"] == float(np.median(counts))
    assert s["class_counts"] == {str(d): 100 for d in range(10)}
    assert s["empty_samples"]["count"] == 0
    assert png.stat().st_size > 1000
    r = _run("inspect", mnist5k_store)
    assert r.exit_code == 0 and "spikes/sample" in r.stdout and "split train" in r.stdout


def test_inspect_errors(tmp_path, mnist5k_store):
    r = _run("inspect", tmp_path / "none.zarr")
    assert r.exit_code == 1 and "no such spike store" in r.output
    r = _run("inspect", mnist5k_store, "--split", "val")
    assert r.exit_code == 1 and "has no split(s) ['val']" in r.output


def test_fetch_licensed_message(tmp_path):
    p = tmp_path / "ti.toml"
    p.write_text(
        'schema = 1\nname = "ti"\ntitle = "TI46"\nlicense = "LDC"\naccess = "licensed"\n'
        'obtain = "Order LDC93S9 from the LDC."\n[[files]]\nname = "ti46"\n'
    )
    r = _run("fetch", p, "--dest", tmp_path / "d")
    assert r.exit_code == 1 and "Order LDC93S9" in r.output and "Traceback" not in r.output
    assert "pass that directory as --source to `spikedata encode ti`" in " ".join(r.output.split())
    r = _run("fetch", "no-such-dataset")
    assert r.exit_code == 1 and "no manifest for dataset 'no-such-dataset'" in r.output


def test_max_train_is_a_seeded_stratified_subset(tmp_path):
    """--max-train N keeps N samples with the class proportions (not the first N), the same for 1 and 2 workers."""
    outs = []
    for workers in (1, 2):
        out = tmp_path / f"sub{workers}.zarr"
        r = _run("encode", "mnist-5k", "--out", out, "--steps", 20, "--max-train", 50, "--max-test", 20,
                 "--split-seed", 4, "--workers", workers, "--quiet", "--keep-images")  # fmt: skip
        assert r.exit_code == 0, r.output
        outs.append(open_store(out))
    a, b = outs
    assert a.attrs["split_sha256"] == b.attrs["split_sha256"]
    assert len(a["train"]) == 50 and len(a["test"]) == 20
    assert np.bincount(a["train"].labels, minlength=10).tolist() == [5] * 10
    assert a.attrs["split"]["subsets"]["train"] == {
        "method": a.attrs["split"]["subsets"]["train"]["method"], "seed": 4, "kept": 50, "of": 4000}  # fmt: skip
    full = load_mnist_5k("train")
    from spikedata.splits import stratified_subset

    idx = stratified_subset(full.labels, [f"train:{i}" for i in range(len(full))], 50, 4)
    assert np.array_equal(a["train"].extra("images"), full.images[idx])
    assert not np.array_equal(idx, np.arange(50))


def test_inspect_reads_a_store_over_http(mnist5k_store):
    """`spikedata inspect URL`: the store argument is a string, so an fsspec URL reaches open_store unchanged."""
    from tests.http_server import serve_directory

    with serve_directory(mnist5k_store.parent) as base:
        r = _run("inspect", f"{base}/{mnist5k_store.name}", "--split", "test", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["splits"]["test"]["n_samples"] == 1000
