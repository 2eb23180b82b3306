"""`spikedata encode fsdd|ti46` end to end into stores that open with the right shapes."""

import numpy as np
import pytest
from typer.testing import CliRunner

from spikedata.cli import app as spikedata_app
from spikedata.store import open_store
from tests.writers import sphere_bytes

FSDD_SUBSET = ["0_george_0", "0_george_12", "3_theo_2", "3_theo_40", "8_nicolas_4", "9_jackson_33"]


@pytest.fixture()
def fsdd_subset(tmp_path, shared_data):
    src = tmp_path / "fsdd"
    src.mkdir()
    for name in FSDD_SUBSET:
        (src / f"{name}.wav").symlink_to(shared_data / "speech" / "fsdd" / f"{name}.wav")
    return src


def invoke(*args):
    return CliRunner().invoke(spikedata_app, ["encode", *args])


def test_encode_fsdd(tmp_path, fsdd_subset):
    out = tmp_path / "fsdd.zarr"
    r = invoke("fsdd", "--source", str(fsdd_subset), "--out", str(out), "--quiet")
    assert r.exit_code == 0, r.output
    store = open_store(out)
    assert store.splits == ["train", "test"]
    assert store.attrs["dataset"] == "fsdd" and store.classes == [str(d) for d in range(10)]
    assert store.attrs["dt_us"] == 1600 and store.attrs["n_steps"] == 1000 and store.attrs["unit_shape"] == [78]
    params = store.attrs["encoder"]["params"]
    assert params["decimation"] == 200 and params["sample_rate"] == 12500 and params["hold"] == 10
    assert params["step_factor"] == 0.25 and params["threshold"] == 0.6 and params["res_type"] == "soxr_hq"
    assert len(store.attrs["source"]["files"]) == 6
    train, test = store["train"], store["test"]
    assert (len(train), len(test)) == (3, 3)
    assert train.labels.tolist() == [0, 3, 9] and test.labels.tolist() == [0, 3, 8]
    assert test.extra("speaker").tolist() == ["george", "theo", "nicolas"]
    assert test.extra("take").tolist() == [0, 2, 4]
    dense = train.dense([0, 1, 2])
    assert dense.shape == (3, 1000, 78) and dense.dtype == np.bool_
    assert dense.sum() == train.attrs["encode_stats"]["spikes"] > 1000
    assert not dense[:, 0].any()  # BSA never spikes at step 0


def test_workers_give_the_same_store(tmp_path, fsdd_subset):
    one, two = tmp_path / "one.zarr", tmp_path / "two.zarr"
    assert invoke("fsdd", "--source", str(fsdd_subset), "--out", str(one), "--quiet", "--steps", "400").exit_code == 0
    r = invoke("fsdd", "--source", str(fsdd_subset), "--out", str(two), "--quiet", "--steps", "400", "--workers", "2")
    assert r.exit_code == 0, r.output
    for split in ("train", "test"):
        assert open_store(one)[split].attrs["content_sha256"] == open_store(two)[split].attrs["content_sha256"]
    assert open_store(one)["train"].attrs["encode_stats"]["truncated"] >= 1  # 400 steps = 0.64 s: some are cut


def test_encode_ti46_fake_corpus(tmp_path):
    t = np.arange(6000) / 12500
    tone = (0.2 * np.sin(2 * np.pi * 700 * t) * 32767).astype(np.int16)
    for split, name in [("train", "0bf3set4.wav"), ("train", "0yf3set0.wav"), ("test", "0bf3s2t1.wav")]:
        d = tmp_path / "TI46" / "ti_alpha" / split / "f3"
        d.mkdir(parents=True, exist_ok=True)
        (d / name).write_bytes(sphere_bytes(tone))
    out = tmp_path / "ti46.zarr"
    r = invoke("ti46", "--source", str(tmp_path / "TI46"), "--out", str(out), "--quiet", "--hold", "5")
    assert r.exit_code == 0, r.output
    assert "the corpus has 4142" in r.output  # a partial copy is pointed out
    store = open_store(out)
    assert store.attrs["dataset"] == "ti46-ti_alpha" and len(store.classes) == 26
    assert store.attrs["dt_us"] == 3200  # 16 ms frame / 5 steps
    assert store["train"].labels.tolist() == [1, 24] and store["test"].labels.tolist() == [1]
    assert store["train"].extra("speaker").tolist() == ["f3", "f3"]


def test_encode_ti20_in_the_ldc_layout(tmp_path):
    """LDC's .sph download, ti20 with command words: real class names, speaker/session/token/path per sample."""
    t = np.arange(3000) / 12500
    tone = (0.2 * np.sin(2 * np.pi * 900 * t) * 32767).astype(np.int16)
    names = ["train/f1/enf1set0.sph", "train/f1/00f1set1.sph", "train/m4/ysm4set2.sph", "test/f1/enf1s3t1.sph"]
    for name in names:
        path = tmp_path / "ti46_LDC93S9" / "ti20" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(sphere_bytes(tone))
    out = tmp_path / "ti20.zarr"
    r = invoke("ti46", "--source", str(tmp_path / "ti46_LDC93S9"), "--subset", "ti20", "--out", str(out),
               "--quiet", "--steps", "200")
    assert r.exit_code == 0, r.output
    assert "the corpus has 3200" in r.output and "the corpus has 5120" in r.output
    store = open_store(out)
    assert store.attrs["dataset"] == "ti46-ti20" and len(store.classes) == 20
    assert store.classes[:2] == ["0", "1"] and store.classes[10:] == [
        "enter", "erase", "go", "help", "no", "rubout", "repeat", "stop", "start", "yes"]
    train, test = store["train"], store["test"]
    assert train.labels.tolist() == [0, 10, 19] and test.labels.tolist() == [10]
    assert train.extra("speaker").tolist() == ["f1", "f1", "m4"]
    assert train.extra("session").tolist() == ["set"] * 3 and train.extra("token").tolist() == [1, 0, 2]
    assert test.extra("session").tolist() == ["s3"] and test.extra("token").tolist() == [1]
    assert train.extra("path").tolist() == ["ti20/train/f1/00f1set1.sph", "ti20/train/f1/enf1set0.sph",
                                            "ti20/train/m4/ysm4set2.sph"]
    assert train.attrs["encode_stats"]["byte_order_assumed"] == 0
    r = invoke("ti46", "--source", str(tmp_path), "--out", str(tmp_path / "alpha.zarr"))
    assert r.exit_code == 1 and "4 .sph" in r.output and "4 of them match --subset ti20" in r.output


def test_user_errors_are_one_line(tmp_path):
    r = invoke("ti46", "--source", str(tmp_path), "--out", str(tmp_path / "x.zarr"))
    assert r.exit_code == 1 and "no recordings match" in r.output and "Traceback" not in r.output
    r = invoke("fsdd", "--source", str(tmp_path / "nope"), "--out", str(tmp_path / "x.zarr"))
    assert r.exit_code == 1 and "not a directory" in r.output
    (tmp_path / "exists.zarr").mkdir()
    r = invoke("fsdd", "--source", str(tmp_path), "--out", str(tmp_path / "exists.zarr"))
    assert r.exit_code == 1 and "already exists" in r.output
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "1_ann_0.wav").write_bytes(sphere_bytes(np.zeros(8, np.int16))[:-4])
    r = invoke("fsdd", "--source", str(bad), "--out", str(tmp_path / "b.zarr"), "--quiet")
    assert r.exit_code == 1 and "truncated SPHERE data" in r.output and not (tmp_path / "b.zarr").exists()
