"""Events stored as columns: MATLAB MAT-files (level 5 and v7.3, ASL-DVS) and numpy structured .npy files
(DVS-Lip), written here to the published layouts; every refusal names the file."""

from __future__ import annotations

import numpy as np
import pytest

from spikedata.io.event_types import EVENT_DTYPE, EventFileError
from spikedata.io.mat_events import mat_version, read_mat_events
from spikedata.io.npy_events import read_npy_events
from tests.writers import write_mat_events, write_npy_events


def _columns(n=300, seed=0, width=240, height=180, t0=7_000_000):
    rng = np.random.default_rng(seed)
    t = t0 + np.sort(rng.integers(0, 100_000, n))
    return t, rng.integers(0, width, n), rng.integers(0, height, n), rng.integers(0, 2, n)


@pytest.mark.parametrize("version, dtype", [("5", np.float64), ("5", np.int32), ("7.3", np.float64),
                                            ("7.3", np.uint32)])
def test_mat_file_columns_become_events(tmp_path, version, dtype):
    t, x, y, p = _columns()
    path = write_mat_events(tmp_path / "a_0001.mat", t, x, y, p, version=version, dtype=dtype)
    assert mat_version(path) == ("mat5" if version == "5" else "mat73")
    events, info = read_mat_events(path, (240, 180))
    assert events.dtype == EVENT_DTYPE and info.format == mat_version(path) and info.n_events == 300
    for field, column in zip("txyp", (t, x, y, p), strict=True):
        assert events[field].tolist() == column.tolist()
    assert info.repairs == {}


def test_mat_polarity_minus_one_and_small_time_steps_back(tmp_path):
    """-1 / +1 polarity is read as 0 / 1; a step back in time of under 1 ms is repaired by a stable sort on time
    (and reported), as for every event reader."""
    t, x, y, p = _columns(50)
    t = 1_000 * np.arange(50) + 3_000_000
    t[10] = t[11] + 500  # event 11 comes 500 µs before event 10, which precedes it in the file
    path = write_mat_events(tmp_path / "b.mat", t, x, y, 2 * p - 1)
    events, info = read_mat_events(path)
    order = np.argsort(t, kind="stable")
    assert events["t"].tolist() == t[order].tolist() and events["x"].tolist() == x[order].tolist()
    assert events["p"].tolist() == p[order].tolist() and info.repairs == {"time_reordered": 2}


@pytest.mark.parametrize("damage, message", [
    ("missing", "variable(s) ['pol'] missing"),
    ("lengths", "different lengths"),
    ("fraction", "is not a whole number"),
    ("polarity", "polarity 2 out of range"),
    ("negative", "negative time"),
    ("outside", "lies outside the sensor [0, 240) x [0, 180)"),
    ("truncated", "truncated or corrupt"),
    ("foreign", "not a MATLAB MAT-file"),
])  # fmt: skip
def test_mat_file_refusals_name_the_file(tmp_path, damage, message):
    import scipy.io

    t, x, y, p = _columns(40)
    path = tmp_path / f"{damage}.mat"
    if damage == "missing":
        scipy.io.savemat(path, {"ts": t[:, None], "x": x[:, None], "y": y[:, None]})
    elif damage == "lengths":
        scipy.io.savemat(path, {"ts": t[:, None], "x": x[:-1, None], "y": y[:, None], "pol": p[:, None]})
    else:
        t = t + 0.5 if damage == "fraction" else -t if damage == "negative" else t
        p = np.where(np.arange(40) == 7, 2, p) if damage == "polarity" else p
        x = np.where(np.arange(40) == 3, 240, x) if damage == "outside" else x
        write_mat_events(path, t, x, y, p)
        if damage == "truncated":
            path.write_bytes(path.read_bytes()[:300])
        if damage == "foreign":
            path.write_bytes(b"%PDF-1.4 not a mat file" + bytes(200))
    with pytest.raises(EventFileError) as err:
        read_mat_events(path, (240, 180))
    assert str(err.value).startswith(str(path)) and message in str(err.value), str(err.value)


def test_npy_fields_of_any_type_and_order(tmp_path):
    t, x, y, p = _columns(200, width=128, height=128)
    layouts = [
        (("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "?")),
        (("x", "<u2"), ("y", "<u2"), ("p", "i1"), ("t", "<f8")),
        (("p", "<i4"), ("t", "<u4"), ("y", "<i4"), ("x", "<i4")),
    ]
    for k, dtype in enumerate(layouts):
        path = write_npy_events(tmp_path / f"{k}.npy", t - t[0], x, y, p, dtype=dtype)
        events, info = read_npy_events(path, (128, 128))
        assert info.format == "npy" and info.n_events == 200
        assert events["t"].tolist() == (t - t[0]).tolist() and events["x"].tolist() == x.tolist()
        assert events["y"].tolist() == y.tolist() and events["p"].tolist() == p.tolist()


def test_npy_refusals_name_the_file(tmp_path):
    t, x, y, p = _columns(30, width=128, height=128)
    good = write_npy_events(tmp_path / "good.npy", t, x, y, p)
    cases = {
        "truncated.npy": (good.read_bytes()[:-20], "truncated or corrupt"),
        "foreign.npy": (b"RIFF" + bytes(100), "not a .npy file"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(EventFileError, match=message) as err:
            read_npy_events(tmp_path / name)
        assert str(err.value).startswith(str(tmp_path / name))
    np.save(tmp_path / "objects.npy", np.array([{"t": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(EventFileError, match="holds Python objects"):
        read_npy_events(tmp_path / "objects.npy")
    np.save(tmp_path / "plain.npy", np.zeros((30, 4)))
    with pytest.raises(EventFileError, match=r"fields \['t', 'x', 'y', 'p'\]"):
        read_npy_events(tmp_path / "plain.npy")
    write_npy_events(tmp_path / "outside.npy", t, np.where(np.arange(30) == 5, 128, x), y, p)
    with pytest.raises(EventFileError, match=r"event 5 at \(x 128"):
        read_npy_events(tmp_path / "outside.npy", (128, 128))
