"""TI46 layout (fake tree of tiny SPHERE files, real naming, mixed case), --pattern copies, FSDD, the front end."""

from functools import partial

import numpy as np
import pytest

from spikedata.datasets.fsdd import FSDD_CLASSES, parse_fsdd_name, scan_fsdd
from spikedata.datasets.speech import encode_utterances
from spikedata.datasets.ti46 import scan_ti46
from spikedata.encoders.speech import SpeechFrontEnd
from spikedata.errors import DatasetError
from tests.spikedata.test_audio import sphere_bytes

TINY = sphere_bytes(np.array([0, 100, -100, 0], dtype=np.int16))


def make_ti46(root, letters=("a", "b", "z"), speakers=("f1", "m8")):
    """TI46/ti_alpha and TI46/ti20 with the real names; some directories/files upper-case as in other copies."""
    made = {"train": 0, "test": 0}
    for spk in speakers:
        upper = spk == "m8"
        for letter in letters:
            code = "0" + letter
            train = root / "TI46" / ("TI_ALPHA/TRAIN" if upper else "ti_alpha/train") / (spk.upper() if upper else spk)
            test = root / "TI46" / ("TI_ALPHA/TEST" if upper else "ti_alpha/test") / (spk.upper() if upper else spk)
            train.mkdir(parents=True, exist_ok=True)
            test.mkdir(parents=True, exist_ok=True)
            for k in range(10):
                name = f"{code}{spk}set{k}.wav"
                (train / (name.upper() if upper else name)).write_bytes(TINY)
                made["train"] += 1
            for k in (1, 4, 8):
                for j in (0, 1):
                    name = f"{code}{spk}s{k}t{j}.wav"
                    (test / (name.upper() if upper else name)).write_bytes(TINY)
                    made["test"] += 1
    ti20 = root / "TI46" / "ti20" / "train" / "f1"
    ti20.mkdir(parents=True)
    for code in ("00", "09", "13"):
        (ti20 / f"{code}f1set0.wav").write_bytes(TINY)
    (root / "TI46" / "ti_alpha" / "train" / "f1" / "README.TXT").write_text("not audio")
    (root / "TI46" / "ti_alpha" / "train" / "f1" / "0af1set10.wav").write_bytes(TINY)  # no token 10
    return made


def test_ti46_layout(tmp_path):
    made = make_ti46(tmp_path)
    utts, classes, ignored = scan_ti46(tmp_path / "TI46")
    assert classes == [chr(c) for c in range(ord("a"), ord("z") + 1)]
    assert len(utts) == made["train"] + made["test"] == 2 * 3 * (10 + 6)
    assert [u.split for u in utts] == ["train"] * made["train"] + ["test"] * made["test"]
    assert {u.speaker for u in utts} == {"f1", "m8"}
    assert {u.label for u in utts} == {"a", "b", "z"}
    assert ignored == 4  # three ti20 files and the out-of-range token
    by_name = {u.name.lower(): u for u in utts}
    u = by_name["ti_alpha/test/m8/0zm8s8t1.wav"]
    assert (u.label, u.speaker, u.split) == ("z", "m8", "test")
    assert u.path.is_file() and u.name == "TI_ALPHA/TEST/M8/0ZM8S8T1.WAV"
    # the same from the corpus' parent and from the subset directory itself
    assert [u.name for u in scan_ti46(tmp_path)[0]] == ["TI46/" + u.name for u in utts]
    lower, upper = scan_ti46(tmp_path / "TI46" / "ti_alpha")[0], scan_ti46(tmp_path / "TI46" / "TI_ALPHA")[0]
    assert {u.speaker for u in lower} == {"f1"} and {u.speaker for u in upper} == {"m8"}
    assert len(lower) + len(upper) == len(utts)


def test_ti20_subset_labels(tmp_path):
    make_ti46(tmp_path)
    utts, classes, _ = scan_ti46(tmp_path, subset="ti20")
    assert classes == ["0", "13", "9"] and [u.label for u in utts] == ["0", "9", "13"]


def test_pattern_copy(tmp_path):
    for split, spk, code, tok in [("train", "f2", "0c", 0), ("train", "m1", "0q", 3), ("test", "f2", "0c", 5)]:
        d = tmp_path / split.upper()
        d.mkdir(exist_ok=True)
        (d / f"{spk}_{code}_{tok}.wav").write_bytes(TINY)
    pattern = r"(?P<split>train|test)/(?P<speaker>[fm]\d)_(?P<label>0[a-z])_\d+\.wav$"
    utts, classes, ignored = scan_ti46(tmp_path, pattern=pattern)
    assert ignored == 0 and len(classes) == 26
    assert [(u.split, u.speaker, u.label) for u in utts] == [
        ("train", "f2", "c"), ("train", "m1", "q"), ("test", "f2", "c")
    ]
    with pytest.raises(DatasetError, match=r"lacks the named group\(s\) \['split'\]"):
        scan_ti46(tmp_path, pattern=r"(?P<speaker>[fm]\d)_(?P<label>0[a-z])")
    with pytest.raises(DatasetError, match="not a valid regular expression"):
        scan_ti46(tmp_path, pattern="(?P<label>")
    with pytest.raises(DatasetError, match="no recordings match"):
        scan_ti46(tmp_path)


def test_fsdd_scan(shared_data):
    utts, takes = scan_fsdd(shared_data / "speech" / "fsdd")
    assert len(utts) == 2000
    test = [u for u in utts if u.split == "test"]
    assert len(test) == 200 and all(t < 5 for u, t in zip(utts, takes, strict=True) if u.split == "test")
    assert {u.speaker for u in utts} == {"george", "jackson", "nicolas", "theo"}
    assert sorted({u.label for u in utts}) == FSDD_CLASSES
    assert parse_fsdd_name("7_theo_12.wav") == (7, "theo", 12) and parse_fsdd_name("x_1.wav") is None


def test_front_end_on_ti46_like_audio(tmp_path):
    """A 12.5 kHz SPHERE chirp through the default front end: 78 channels, 1.6 ms steps, sorted events."""
    t = np.arange(12500) / 12500
    chirp = (0.3 * np.sin(2 * np.pi * (200 + 1500 * t) * t) * 32767).astype(np.int16)
    path = tmp_path / "0af1set0.wav"
    path.write_bytes(sphere_bytes(chirp))
    fe = SpeechFrontEnd()
    assert fe.n_channels == 78 and fe.dt_us == pytest.approx(1600.0) and fe.step_factor == 0.25
    fn = partial(encode_utterances, paths=(str(path), str(path)), labels=np.array([0, 3]),
                 extras={"speaker": np.array(["f1", "f1"])}, front_end=fe)
    block = fn(0, 2)
    assert block.indptr.tolist()[0] == 0 and block.labels.tolist() == [0, 3]
    n = block.indptr[1]
    assert n > 100 and block.indptr[2] == 2 * n  # same file twice, same events
    times, units = block.times[:n], block.units[:n]
    assert np.all((np.diff(times) > 0) | ((np.diff(times) == 0) & (np.diff(units) > 0)))
    assert times.min() >= 1 and times.max() <= 62 * 10 and units.max() < 78
    assert block.stats == {"frames": 124, "audio_s": 2.0, "spikes": 2 * n, "truncated": 0}
    short = SpeechFrontEnd(steps=300)
    assert short.encode(chirp / 32768.0, 12500)[0].shape == (300, 78)
    assert fn(0, 1).extras["speaker"].tolist() == ["f1"]
