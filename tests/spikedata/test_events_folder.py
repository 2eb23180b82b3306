"""Folder layouts, labels and the per-range encoder behind `spikedata encode nmnist|events`."""

from __future__ import annotations

import numpy as np
import pytest

from spikedata.datasets.nmnist import PRESETS, find_nmnist
from spikedata.datasets.shared.event_encoding import encode_files, split_jobs
from spikedata.datasets.shared.event_folder import natural_key, scan_folder
from spikedata.encoders.event_binning import bin_events
from spikedata.io.event_types import EventFileError
from spikedata.io.events import read_events


@pytest.fixture()
def nmnist_copy(shared_data, tmp_path):
    """Train/<digit>/ and Test/<digit>/ with copies of the two real N-MNIST samples."""
    a = (shared_data / "nmnist/tonic_sample_nmnist.bin").read_bytes()
    b = (shared_data / "nmnist/slayer_NMNIST_1.bs2").read_bytes()
    for rel, data in [("Train/0/00010.bin", a), ("Train/0/00002.bin", b), ("Train/5/00001.bin", b),
                      ("Test/0/00003.bin", a), ("Test/9/notes.txt", b"ignored")]:  # fmt: skip
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(data)
    return tmp_path


def test_natural_order():
    assert sorted(["10", "2", "1"], key=natural_key) == ["1", "2", "10"]


def test_nmnist_layout_and_encode_range(nmnist_copy, shared_data):
    folder = find_nmnist(nmnist_copy)
    assert folder.classes == tuple(str(d) for d in range(10))
    train = folder.splits["train"]
    assert train.files == ("Train/0/00002.bin", "Train/0/00010.bin", "Train/5/00001.bin")
    assert train.labels == (0, 0, 5) and folder.splits["test"].labels == (0,)
    opts = PRESETS["reference"]
    block = encode_files(train, 1, 3, opts)
    assert block.indptr[0] == 0 and len(block.indptr) == 3 and block.labels.tolist() == [0, 5]
    expect = bin_events(read_events(nmnist_copy / "Train/5/00001.bin"), opts)
    assert np.array_equal(block.times[block.indptr[1] :], expect.times)
    assert np.array_equal(block.units[block.indptr[1] :], expect.units)
    assert block.stats["events_read"] == 4325 + 4681
    assert block.stats["spikes"] == block.indptr[-1]
    jobs = split_jobs(folder, opts, chunk=2)
    assert list(jobs) == ["train", "test"] and jobs["train"].n_samples == 3


def test_labels_csv_and_errors(shared_data, tmp_path):
    (tmp_path / "rec").mkdir()
    (tmp_path / "rec/a.aedat").write_bytes((shared_data / "dvs/TranslatingBarY_synthesized.aedat").read_bytes())
    (tmp_path / "rec/b.bs2").write_bytes((shared_data / "dvs/gesture_1.bs2").read_bytes())
    csv = tmp_path / "labels.csv"
    csv.write_text("file,label,split\nrec/b.bs2,wave,train\nrec/a.aedat,bar,test\n")
    folder = scan_folder(tmp_path, labels_csv=csv)
    assert folder.classes == ("bar", "wave")
    assert folder.splits["train"].labels == (1,) and folder.splits["test"].files == ("rec/a.aedat",)
    csv.write_text("path,class\nrec/b.bs2,wave\n")
    with pytest.raises(ValueError, match="columns 'file' and 'label'"):
        scan_folder(tmp_path, labels_csv=csv)
    csv.write_text("file,label\nrec/missing.bin,x\n")
    with pytest.raises(FileNotFoundError, match="missing.bin"):
        scan_folder(tmp_path, labels_csv=csv)
    with pytest.raises(FileNotFoundError, match="no event files"):
        scan_folder(tmp_path / "rec")


def test_bad_file_in_folder_names_it(nmnist_copy):
    bad = nmnist_copy / "Train/5/00002.bin"
    bad.write_bytes((nmnist_copy / "Train/5/00001.bin").read_bytes()[:-2])
    folder = find_nmnist(nmnist_copy)
    with pytest.raises(EventFileError, match="00002.bin: atis40: truncated"):
        encode_files(folder.splits["train"], 0, 4, PRESETS["plain"])


def test_nmnist_missing_layout_hints_unzip(tmp_path):
    (tmp_path / "Train.zip").write_bytes(b"PK\x03\x04")
    with pytest.raises(FileNotFoundError, match="unzip"):
        find_nmnist(tmp_path)
