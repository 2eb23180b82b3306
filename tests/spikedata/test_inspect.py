"""`spikedata.inspect` on a small store with known content: statistics equal hand-computed values."""

import json

import numpy as np
import pytest

from spikedata.inspect import hist_percentile, plot_split, split_stats, store_stats
from spikedata.pipeline import SplitJob, encode_to_store
from spikedata.store import EventBlock, open_store

# 4 samples, 4 units (unit_shape [2, 2]), T = 10 steps of 1000 µs.
SAMPLES = [
    ([(1, 0), (3, 0), (3, 1), (7, 0)], 0),  # ISIs unit 0: 2, 4
    ([], 1),  # empty
    ([(0, 2), (5, 2), (5, 3), (6, 2)], 0),  # ISIs unit 2: 5, 1
    ([(2, 1), (9, 1)], 2),  # ISI unit 1: 7
]


def _encode_range(samples, start, stop):
    part = samples[start:stop]
    counts = [len(ev) for ev, _ in part]
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    times = np.array([t for ev, _ in part for t, _ in ev], np.uint16)
    units = np.array([u for ev, _ in part for _, u in ev], np.uint16)
    return EventBlock(indptr, times, units, np.array([lab for _, lab in part], np.int16))


@pytest.fixture
def store(tmp_path):
    from functools import partial

    attrs = {
        "dataset": "toy", "encoder": {"name": "hand", "params": {}}, "n_units": 4, "unit_shape": [2, 2],
        "n_steps": 10, "dt_us": 1000, "classes": ["a", "b", "c"], "seed": 0, "source": {"files": {}},
    }  # fmt: skip
    jobs = {"test": SplitJob(len(SAMPLES), partial(_encode_range, SAMPLES), chunk=3)}
    return open_store(encode_to_store(tmp_path / "toy.zarr", attrs, jobs, progress=False))


def test_stats_equal_hand_computed(store):
    st = split_stats(store["test"], block=2)  # blocks [0, 2) and [2, 4): the streaming path
    s = st.summary
    assert s["n_samples"] == 4 and s["n_events"] == 10
    assert s["class_counts"] == {"a": 2, "b": 1, "c": 1}
    assert st.counts.tolist() == [4, 0, 4, 2]
    assert s["spikes_per_sample"] == {
        "mean": 2.5, "median": 3.0, "p5": pytest.approx(0.3), "p95": 4.0, "min": 0, "max": 4,
    }  # fmt: skip
    assert s["density"] == pytest.approx(10 / (4 * 10 * 4))
    seconds = 10 * 1e-3  # one sample lasts 10 ms
    # unit counts: u0 3, u1 3, u2 3, u3 1 over 4 samples of 10 ms
    assert st.unit_rate_hz == pytest.approx(np.array([3, 3, 3, 1]) / (4 * seconds))
    assert s["mean_rate_hz"] == pytest.approx(10 / (4 * 4 * seconds))
    assert s["unit_rate_hz"]["max"] == pytest.approx(75.0) and s["unit_rate_hz"]["silent_units"] == 0
    isis = np.array([2, 4, 5, 1, 7])
    assert s["isi_steps"] == {
        "count": 5, "mean": pytest.approx(isis.mean()), "median": 4.0, "p5": pytest.approx(np.percentile(isis, 5)),
        "p95": pytest.approx(np.percentile(isis, 95)), "min": 1,
    }  # fmt: skip
    assert s["class_mean_rate_hz"] == {
        "a": pytest.approx(8 / (2 * 4 * seconds)), "b": 0.0, "c": pytest.approx(2 / (1 * 4 * seconds)),
    }  # fmt: skip
    assert s["class_mean_spikes"] == {"a": 4.0, "b": 0.0, "c": 2.0}
    assert s["empty_samples"] == {"count": 1, "first": [1]}
    # the whole-split block gives the same result
    assert split_stats(store["test"], block=100).summary == s
    json.dumps(store_stats(store))  # JSON-ready


def test_isi_across_block_boundary_is_not_counted(store):
    # Samples 0 and 2 both have spikes on other units; a unit's last spike in one sample never pairs with the next.
    st = split_stats(store["test"], block=1)
    assert st.summary["isi_steps"]["count"] == 5


def test_hist_percentile_matches_numpy():
    rng = np.random.default_rng(0)
    values = rng.integers(1, 50, 999)
    hist = np.bincount(values, minlength=60)
    for q in (0, 5, 37.5, 50, 95, 100):
        assert hist_percentile(hist, q) == pytest.approx(np.percentile(values, q))


def test_plots(store, tmp_path):
    out = tmp_path / "p.png"
    plot_split(store["test"], out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_one_dimensional(tmp_path):
    from functools import partial

    attrs = {
        "dataset": "toy", "encoder": {"name": "hand", "params": {}}, "n_units": 4, "unit_shape": [4],
        "n_steps": 10, "dt_us": 1000, "classes": ["a", "b", "c"], "seed": 0, "source": {"files": {}},
    }  # fmt: skip
    jobs = {"train": SplitJob(len(SAMPLES), partial(_encode_range, SAMPLES))}
    s = open_store(encode_to_store(tmp_path / "one.zarr", attrs, jobs, progress=False))
    plot_split(s["train"], tmp_path / "one.png")
    assert (tmp_path / "one.png").stat().st_size > 1000
