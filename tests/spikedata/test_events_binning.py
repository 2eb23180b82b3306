"""bin_events against brute-force per-event recomputation, on real N-MNIST samples and random events."""

from __future__ import annotations

import math
from dataclasses import replace
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pytest

from spikedata.datasets.nmnist import NMNIST_PLAIN, NMNIST_REFERENCE
from spikedata.encoders.event_binning import BinningOptions, bin_events, spikes_to_dense
from spikedata.io.event_types import make_events
from spikedata.io.events import read_events

NMNIST = ["nmnist/tonic_sample_nmnist.bin", "nmnist/slayer_NMNIST_1.bs2"]


def brute_force(events: np.ndarray, o: BinningOptions) -> tuple[list[tuple[int, int]], int, int, int]:
    """Per-event Python re-statement of the module docstring: sorted unique (step, unit), counts."""
    x0, y0, cw, ch = o.box
    fx, fy = o.downsample
    gw, gh = o.grid
    t0 = o.t_start_us if o.t_start_us is not None else int(events["t"].min())
    kept, drop_t, drop_s = [], 0, 0
    for t, x, y, p in zip(*(events[f].tolist() for f in "txyp"), strict=True):
        if o.stabilize:
            x, y = _stabilize_matlab(t, x + 1, y + 1)
            x, y = x - 1, y - 1
        x, y = x - x0, y - y0
        if not (0 <= x < cw and 0 <= y < ch):
            drop_s += 1
            continue
        x, y = x // fx, y // fy
        s = (math.ceil((t - t0) / o.dt_us) if o.rounding == "ceil" else (t - t0) // o.dt_us) + o.time_shift
        if not 0 <= s < o.n_steps:
            drop_t += 1
            continue
        c = 0 if o.polarity == "merge" else p
        u = (c * gh + y) * gw + x if o.unit_order == "pyx" else (c * gw + x) * gh + y
        kept.append((s, u))
    unique = sorted(set(kept))
    return unique, len(kept) - len(unique), drop_t, drop_s


def _matlab_round(v: float) -> int:
    """MATLAB round: halves away from zero, computed exactly on the double's decimal value."""
    return int(Decimal(v).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _stabilize_matlab(ts: int, x: int, y: int) -> tuple[int, int]:
    """Garrick Orchard's stabilize.m on 1-based coordinates (as the reference converter calls it)."""
    if ts <= 105e3:
        xf, yf = x - 3.5 * ts / 105e3, y - 7 * ts / 105e3
    elif ts <= 210e3:
        xf, yf = x - 3.5 - 3.5 * (ts - 105e3) / 105e3, y - 7 + 7 * (ts - 105e3) / 105e3
    else:
        xf, yf = x - 7 + 7 * (ts - 210e3) / 105e3, float(y)
    return _matlab_round(xf), _matlab_round(yf)


def _pairs(b) -> list[tuple[int, int]]:
    return list(zip(b.times.tolist(), b.units.tolist(), strict=True))


OPTIONS = [
    NMNIST_PLAIN,
    NMNIST_REFERENCE,
    replace(NMNIST_PLAIN, dt_us=1000, n_steps=200, polarity="merge"),
    replace(NMNIST_PLAIN, crop=(4, 2, 26, 30), downsample=(2, 3), unit_order="pxy"),
    replace(NMNIST_REFERENCE, dt_us=5000, n_steps=40, t_start_us=None, rounding="floor", time_shift=0),
]


@pytest.mark.parametrize("rel", NMNIST)
@pytest.mark.parametrize("opts", OPTIONS, ids=range(len(OPTIONS)))
def test_real_samples_equal_brute_force(shared_data, rel, opts):
    events = read_events(shared_data / rel)
    b = bin_events(events, opts)
    unique, collapsed, drop_t, drop_s = brute_force(events, opts)
    assert _pairs(b) == unique
    assert (b.n_collapsed, b.n_dropped_time, b.n_dropped_space) == (collapsed, drop_t, drop_s)
    assert b.times.dtype == np.uint32 and b.units.dtype == np.uint32
    assert len(b.times) + collapsed + drop_t + drop_s == len(events)
    assert b.units.max() < opts.n_units and b.times.max() < opts.n_steps


def test_reference_conversion_mapping(shared_data):
    """Reference algorithm.md §2.2: step = ceil(t/600) + 1 (never 0), channel (1-based) = (x-1)*34 + y + 1156*[ON] =
    unit + 1."""
    events = read_events(shared_data / "nmnist/tonic_sample_nmnist.bin")
    b = bin_events(events, NMNIST_REFERENCE)
    assert NMNIST_REFERENCE.unit_shape == (2, 34, 34) and NMNIST_REFERENCE.n_units == 2312
    assert b.times.min() >= 1 and b.times.max() <= math.ceil(events["t"].max() / 600) + 1
    channels = set()
    for t, x, y, p in zip(*(events[f].tolist() for f in "txyp"), strict=True):
        xs, ys = _stabilize_matlab(t, x + 1, y + 1)  # 1-based, as Read_Ndataset.m gives them
        if xs < 1 or ys < 1 or xs > 34 or ys > 34:
            continue
        channel = (xs - 1) * 34 + ys + (1156 if p == 1 else 0)
        step = math.ceil(t / 600) + 1
        if step < 540:
            channels.add((step, channel - 1))
    assert _pairs(b) == sorted(channels)
    assert b.n_dropped_space == 24  # stabilisation moves 24 events of this sample off the 34 x 34 grid


def test_collapse_is_counted_and_dense_matches():
    ev = make_events([0, 10, 599, 600, 700, 700], [1, 1, 1, 1, 2, 2], [0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 0, 1])
    b = bin_events(ev, sensor_size=(4, 1), dt_us=600, n_steps=3)
    # unit = p*H*W + y*W + x with W=4, H=1: (0 µs, x1, ON) x3 -> one spike at step 0
    assert _pairs(b) == [(0, 5), (1, 2), (1, 5), (1, 6)] and b.n_collapsed == 2
    dense = spikes_to_dense(b.times, b.units, 3, 8)
    assert dense.shape == (3, 8) and dense.sum() == 4 and dense[1, 6]


def test_random_events_with_negative_times_equal_brute_force():
    rng = np.random.default_rng(3)
    n = 4000
    ev = make_events(
        rng.integers(-7000, 300000, n), rng.integers(-3, 45, n), rng.integers(-3, 45, n), rng.integers(0, 2, n)
    )
    for opts in [
        BinningOptions(sensor_size=(40, 40), t_start_us=1000, rounding="ceil", time_shift=2, crop=(2, 3, 30, 25),
                       downsample=(2, 3)),
        BinningOptions(sensor_size=(40, 40), dt_us=777, n_steps=100, unit_order="pxy", polarity="merge"),
        BinningOptions(sensor_size=(34, 34), stabilize=True, rounding="ceil", t_start_us=None),
    ]:  # fmt: skip
        b = bin_events(ev, opts)
        unique, collapsed, drop_t, drop_s = brute_force(ev, opts)
        assert _pairs(b) == unique and (b.n_collapsed, b.n_dropped_time, b.n_dropped_space) == (
            collapsed, drop_t, drop_s,
        )  # fmt: skip


def test_options_validation_and_shapes():
    o = BinningOptions(sensor_size=(128, 128), crop=(0, 0, 100, 90), downsample=4)
    assert o.downsample == (4, 4) and o.grid == (25, 23) and o.unit_shape == (2, 23, 25) and o.n_units == 1150
    assert o.params()["crop"] == [0, 0, 100, 90]
    for bad in [{"rounding": "round"}, {"unit_order": "yxp"}, {"dt_us": 0}, {"downsample": (0, 1)},
                {"crop": (0, 0, 0, 5)}, {"polarity": "on"}]:  # fmt: skip
        with pytest.raises(ValueError):
            BinningOptions(**bad)
    empty = bin_events(make_events([], [], [], []))
    assert len(empty.times) == 0 and empty.n_collapsed == 0


@pytest.mark.parametrize("opts", OPTIONS, ids=range(len(OPTIONS)))
def test_time_ordered_and_shuffled_events_bin_identically(shared_data, opts):
    """Time-ordered recordings take the linear per-step sort, shuffled ones the full sort: same output."""
    events = read_events(shared_data / NMNIST[0])
    shuffled = events[np.random.default_rng(3).permutation(len(events))]
    a, b = bin_events(events, opts), bin_events(shuffled, opts)
    np.testing.assert_array_equal(a.times, b.times)
    np.testing.assert_array_equal(a.units, b.units)
    key = a.times.astype(np.int64) * opts.n_units + a.units
    assert np.all(np.diff(key) > 0), "events must come out strictly sorted by (time, unit)"
