"""Manifest schema: the shipped MNIST/EMNIST manifests against real files, and schema errors."""

import pytest

from spikedata.datasets.shared.images import verify_file
from spikedata.errors import DatasetError
from spikedata.io.idx import read_emnist_mapping
from spikedata.manifest import ManifestError, load_manifest, manifest_names

GOOD = """
schema = 1
name = "toy"
title = "Toy"
license = "CC0"
mirrors = ["http://127.0.0.1:1/"]
classes = ["a", "b"]
[splits.train]
images = "x.bin"
[[files]]
name = "x.bin"
size = 3
sha256 = "{sha}"
"""
SHA = "a" * 64


def _write(tmp_path, text, name="toy"):
    p = tmp_path / f"{name}.toml"
    p.write_text(text)
    return p


def test_shipped_manifests_load():
    assert {"mnist", "emnist"} <= set(manifest_names())
    mnist = load_manifest("mnist")
    assert mnist.classes == tuple(str(d) for d in range(10)) and not mnist.licensed
    assert [f.name for f in mnist.files] == [
        "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ]  # fmt: skip
    assert mnist.file("t10k-images-idx3-ubyte.gz").size == 1648877
    assert mnist.splits["test"]["images"] == "t10k-images-idx3-ubyte.gz"
    emnist = load_manifest("emnist")
    assert emnist.n_classes == 47 and emnist.layout["transposed"] is True
    assert all(f.archive == "gzip.zip" for f in emnist.files)


def test_mnist_hashes_match_real_files(shared_data):
    """The shared t10k files were re-gzipped: their .gz hash differs, their decompressed hash must match."""
    mnist = load_manifest("mnist")
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        entry = mnist.file(name)
        path = shared_data / "mnist" / name
        assert path.stat().st_size == entry.size
        assert verify_file(path, entry)  # accepted through sha256_decompressed


def test_verify_rejects_other_file(shared_data):
    entry = load_manifest("mnist").file("t10k-labels-idx1-ubyte.gz")
    with pytest.raises(DatasetError, match="does not match the manifest"):
        verify_file(shared_data / "mnist" / "train-labels-idx1-ubyte.gz", entry)


def test_emnist_hashes_and_classes_match_official_list(shared_data):
    emnist = load_manifest("emnist")
    official = {}
    for line in (shared_data / "emnist" / "EMNIST_official_sha256_sizes.txt").read_text().splitlines():
        sha, size, path = line.split()
        official[path] = (sha, int(size))
    gz = [f for f in emnist.files if f.name.endswith(".gz")]
    assert len(gz) == 24
    for f in gz:
        assert (f.sha256, f.size) == official[f.member], f.name
    mapping = shared_data / "emnist" / "emnist-balanced-mapping.txt"
    names = read_emnist_mapping(mapping)
    assert list(emnist.classes) == [names[i] for i in range(47)]
    assert verify_file(mapping, emnist.file("emnist-balanced-mapping.txt"))


def test_good_manifest(tmp_path):
    m = load_manifest(_write(tmp_path, GOOD.format(sha=SHA)))
    assert m.name == "toy" and m.n_classes == 2 and m.file("x.bin").sha256 == SHA and m.access == "public"
    with pytest.raises(KeyError, match="no file 'y'"):
        m.file("y")


@pytest.mark.parametrize(
    "change, message",
    [
        (("license = \"CC0\"\n", "licence = \"CC0\"\n"), r"licence: unknown key"),
        (("size = 3", "size = 3\nchecksum = 1"), r"files\[0\].checksum: unknown key"),
        (('title = "Toy"\n', ""), r"title: required key is missing"),
        (("schema = 1", "schema = 2"), r"schema: must be 1"),
        (('name = "toy"', 'name = "other"'), r"must equal the file name stem 'toy'"),
        (("size = 3", "size = -3"), r"files\[0\].size: must be >= 0"),
        (("size = 3", 'size = "3"'), r"files\[0\].size: must be an integer"),
        (('sha256 = "' + SHA + '"', 'sha256 = "ABC"'), r"files\[0\].sha256: 'ABC' is not a lowercase hex"),
        (('sha256 = "' + SHA + '"\n', ""), r"files\[0\].sha256: required for a file that can be downloaded"),
        (('name = "x.bin"', 'name = "../x.bin"'), r"must be a relative path"),
        (('classes = ["a", "b"]', 'classes = ["a", "b"]\nn_classes = 3'), r"n_classes: 3 but 2 class names"),
        (("license", 'access = "licensed"\nlicense'), r"obtain: required when access = 'licensed'"),
        (("size = 3", 'size = 3\nextract = "rar"'), r"extract: must be one of"),
        (("size = 3", 'size = 3\narchive = "a.zip"'), r"archive: 'a.zip' is not one of the \[\[archives\]\]"),
    ],
)
def test_schema_errors(tmp_path, change, message):
    text = GOOD.format(sha=SHA).replace(*change)
    with pytest.raises(ManifestError, match=message) as info:
        load_manifest(_write(tmp_path, text))
    assert "toy.toml" in str(info.value)


def test_duplicate_file_and_bad_toml(tmp_path):
    text = GOOD.format(sha=SHA) + f'[[files]]\nname = "x.bin"\nsha256 = "{SHA}"\n'
    with pytest.raises(ManifestError, match=r"files\[1\].name: 'x.bin' is listed twice"):
        load_manifest(_write(tmp_path, text))
    with pytest.raises(ManifestError, match="invalid TOML"):
        load_manifest(_write(tmp_path, "name = "))


def test_licensed_without_url_needs_no_hash(tmp_path):
    text = """
schema = 1
name = "ti"
title = "TI46"
license = "LDC User Agreement"
access = "licensed"
obtain = "Order LDC93S9 from the Linguistic Data Consortium."
[[files]]
name = "ti46"
"""
    m = load_manifest(_write(tmp_path, text, "ti"))
    assert m.licensed and m.obtain.startswith("Order LDC93S9")


def test_unknown_name():
    with pytest.raises(ManifestError, match="no manifest for dataset 'nope' \\(known: .*mnist"):
        load_manifest("nope")
