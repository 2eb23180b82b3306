"""TI46 in every layout (fake trees of real-format SPHERE files: LDC .sph, upper-case CD, ti20 command words),
--pattern copies, FSDD, the front end."""

from functools import partial

import numpy as np
import pytest

from spikedata.datasets.fsdd import FSDD_CLASSES, parse_fsdd_name, scan_fsdd
from spikedata.datasets.shared.speech import encode_utterances
from spikedata.datasets.ti46 import expected_counts, parse_take, scan_ti46, ti46_classes
from spikedata.encoders.speech import SpeechFrontEnd
from spikedata.errors import DatasetError
from tests.writers import sphere_bytes

TINY = sphere_bytes(np.array([0, 100, -100, 0], dtype=np.int16))
LETTERS = [chr(c) for c in range(ord("a"), ord("z") + 1)]
TI20 = [str(d) for d in range(10)] + ["enter", "erase", "go", "help", "no", "rubout", "repeat", "stop", "start", "yes"]


def make_tree(root, subset, codes, speakers=("f1", "m8"), train_tokens=(0, 3, 9), test_takes=((1, 0), (8, 1)),
              top="ti46_LDC93S9", upper=False, ext=".sph", version=""):
    """A TI46 copy with the real naming (written with the real SPHERE writer); returns what each file should give:
    (split, code, speaker, session, token, relative path)."""
    expected = []
    for split in ("train", "test"):
        takes = [f"set{k}" for k in train_tokens] if split == "train" else [f"s{k}t{j}" for k, j in test_takes]
        for spk in speakers:
            for code in codes:
                for take in takes:
                    rel = f"{top}/{subset}/{split}/{spk}/{code}{spk}{take}{ext}"
                    rel = (rel.upper() if upper else rel) + version
                    path = root / rel
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(TINY)
                    session, token = ("set", int(take[3])) if take.startswith("set") else (take[:2], int(take[3]))
                    expected.append((split, code, spk, session, token, rel))
    return expected


def _check(copy, expected, classes, codes_to_names, prefix=""):
    assert copy.classes == classes
    got = [(u.split, u.label, u.speaker, s, t, u.name) for u, s, t in
           zip(copy.utterances, copy.extras["session"], copy.extras["token"], strict=True)]
    want = sorted(((sp, codes_to_names[c], spk, ses, tok, rel[len(prefix):]) for sp, c, spk, ses, tok, rel in expected),
                  key=lambda r: (r[0] != "train", r[5].lower()))
    assert got == want
    assert all(u.path.is_file() for u in copy.utterances)


def test_ldc_download_layout(tmp_path):
    """LDC's download: ti46_LDC93S9/<subset>/..., lower case, .sph; both subsets, ti20 with its command words."""
    alpha = make_tree(tmp_path, "ti_alpha", ["0a", "0q", "0z"])
    ti20 = make_tree(tmp_path, "ti20", ["00", "09", "en", "go", "ys", "rb"], speakers=("f7",))
    copy = scan_ti46(tmp_path / "ti46_LDC93S9")
    _check(copy, alpha, LETTERS, {"0a": "a", "0q": "q", "0z": "z"}, "ti46_LDC93S9/")
    assert copy.ignored == 0 and len(copy.utterances) == 2 * 3 * (3 + 2)
    copy20 = scan_ti46(tmp_path, "ti20")
    names = {"00": "0", "09": "9", "en": "enter", "go": "go", "ys": "yes", "rb": "rubout"}
    _check(copy20, ti20, TI20, names)
    assert [copy20.classes[i] for i in (10, 12, 15, 19)] == ["enter", "go", "rubout", "yes"]
    assert {copy20.utterances[i].label for i in range(len(ti20))} == set(names.values())
    # the subset directory itself as --source
    assert len(scan_ti46(tmp_path / "ti46_LDC93S9" / "ti20", "ti20").utterances) == len(ti20)


def test_cd_layout_upper_case(tmp_path):
    """The 1991 CD-ROM names: upper case, .WAV, ISO 9660 version suffix; the same utterances as lower case."""
    expected = make_tree(tmp_path / "cd", "ti_alpha", ["0b", "0y"], top="TI46", upper=True, ext=".wav",
                         version=";1")
    copy = scan_ti46(tmp_path / "cd" / "TI46")
    _check(copy, expected, LETTERS, {"0b": "b", "0y": "y"}, "TI46/")
    assert copy.utterances[0].name == "TI_ALPHA/TRAIN/F1/0BF1SET0.WAV;1"
    lower = make_tree(tmp_path / "published", "ti_alpha", ["0b", "0y"], top="TI46", ext=".wav")
    copy_lower = scan_ti46(tmp_path / "published")
    _check(copy_lower, lower, LETTERS, {"0b": "b", "0y": "y"})
    assert [u.label for u in copy_lower.utterances] == [u.label for u in copy.utterances]


def test_session_and_token_of_every_take():
    assert parse_take("set0") == ("set", 0) and parse_take("SET9") == ("set", 9)
    assert parse_take("s1t0") == ("s1", 0) and parse_take("s8t1") == ("s8", 1)
    for bad in ("set", "s9t0", "s1t2", "x"):
        with pytest.raises(DatasetError, match="neither set<k>"):
            parse_take(bad)


def test_counts_and_classes_from_the_manifest():
    assert expected_counts("ti_alpha") == {"train": 4142, "test": 6628}
    assert expected_counts("ti20") == {"train": 16 * 20 * 10, "test": 16 * 20 * 16}
    assert ti46_classes("ti_alpha") == LETTERS and ti46_classes("ti20") == TI20
    with pytest.raises(DatasetError, match="unknown TI46 subset"):
        ti46_classes("ti46")


def test_unknown_prompt_code_is_an_error(tmp_path):
    make_tree(tmp_path, "ti20", ["00", "zz"], speakers=("f1",), train_tokens=(0,), test_takes=())
    with pytest.raises(DatasetError, match=r"ti20/train/f1/zzf1set0\.sph: unknown TI46 prompt code 'zz' for ti20 "
                                           r"\(known: 00, .*, en enter, .*ys yes\)"):
        scan_ti46(tmp_path, "ti20")


def test_no_match_lists_what_was_found(tmp_path):
    make_tree(tmp_path, "ti20", ["00", "st"], speakers=("m2",))
    (tmp_path / "ti46_LDC93S9" / "doc").mkdir()
    (tmp_path / "ti46_LDC93S9" / "doc" / "readme.txt").write_text("TI46")
    with pytest.raises(DatasetError) as info:
        scan_ti46(tmp_path)  # ti_alpha is asked for, only ti20 is there
    message = str(info.value)
    assert "no recordings match the TI46 layout ti_alpha/train|test/" in message
    assert "found 11 files: 10 .sph, 1 .txt" in message
    assert "e.g. ti46_LDC93S9/ti20/test/m2/00m2s1t0.sph" in message
    assert "10 of them match `subset` ti20" in message  # the CLI writes it as --subset
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="empty: no files at all"):
        scan_ti46(tmp_path / "empty")


def test_ignored_audio_files_are_counted(tmp_path):
    make_tree(tmp_path, "ti_alpha", ["0a"], speakers=("f1",), train_tokens=(0,), test_takes=())
    d = tmp_path / "ti46_LDC93S9" / "ti_alpha" / "train" / "f1"
    (d / "0af1set10.sph").write_bytes(TINY)  # no token 10
    (d / "README.TXT").write_text("not audio")
    copy = scan_ti46(tmp_path)
    assert len(copy.utterances) == 1 and copy.ignored == 1
    assert copy.ignored_example == "ti46_LDC93S9/ti_alpha/train/f1/0af1set10.sph"


def test_pattern_copy(tmp_path):
    for split, spk, code, take in [("train", "f2", "0c", "set0"), ("train", "m1", "0q", "set3"),
                                   ("test", "f2", "0c", "s5t1")]:
        d = tmp_path / split.upper()
        d.mkdir(exist_ok=True)
        (d / f"{spk}_{code}_{take}.wav").write_bytes(TINY)
    pattern = r"(?P<split>train|test)/(?P<speaker>[fm]\d)_(?P<label>0[a-z])_(?P<take>[^/.]*)\.wav$"
    copy = scan_ti46(tmp_path, pattern=pattern)
    assert copy.ignored == 0 and copy.classes == LETTERS
    assert [(u.split, u.speaker, u.label) for u in copy.utterances] == [
        ("train", "f2", "c"), ("train", "m1", "q"), ("test", "f2", "c")
    ]
    assert copy.extras == {"session": ["set", "set", "s5"], "token": [0, 3, 1]}
    no_take = scan_ti46(tmp_path, pattern=r"(?P<split>train|test)/(?P<speaker>[fm]\d)_(?P<label>0[a-z])_")
    assert no_take.extras == {} and len(no_take.utterances) == 3
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
    assert block.stats == {"frames": 124, "audio_s": 2.0, "spikes": 2 * n, "truncated": 0, "byte_order_assumed": 0}
    short = SpeechFrontEnd(steps=300)
    assert short.encode(chirp / 32768.0, 12500)[0].shape == (300, 78)
    assert fn(0, 1).extras["speaker"].tolist() == ["f1"]
