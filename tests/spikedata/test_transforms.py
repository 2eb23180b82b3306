"""Event transforms: equal to tonic's functional implementations on the real samples (tonic is a test-only
dependency, installed without its dependencies: its functional modules are loaded file by file), and equal to a
brute-force loop on random events."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from spikedata import transforms as T
from spikedata.io.event_types import EVENT_DTYPE, make_events
from spikedata.io.events import read_events

REAL = ["nmnist/tonic_sample_nmnist.bin", "dvs/TranslatingBarY_synthesized.aedat", "dvs/sample.aedat4",
        "dvs/gesture_1.bs2"]  # fmt: skip


def _tonic_module(relative: str):
    """A module of the installed tonic package, loaded without running tonic/__init__ (whose dataset imports need
    tonic's full dependency set)."""
    spec = importlib.util.find_spec("tonic")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("tonic is not installed (pip install --no-deps tonic)")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    mod_spec = importlib.util.spec_from_file_location(f"_tonic_{path.stem}", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module


def random_events(n=3000, size=(20, 15), seed=0, t_max=50_000):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, t_max, n))
    return make_events(t, rng.integers(0, size[0], n), rng.integers(0, size[1], n), rng.integers(0, 2, n))


def brute_denoise(ev, filter_time):
    keep = []
    last = {}
    for i, e in enumerate(ev):
        x, y, t = int(e["x"]), int(e["y"]), int(e["t"])
        last[(x, y)] = t
        ok = False
        for nx, ny in ((x - 1, y), (x + 1, y), (x, y - 1), (x, y + 1)):
            # never-fired neighbours count as fired at time 0 (tonic's initialisation) when inside the grid
            inside = 0 <= nx <= ev["x"].max() and 0 <= ny <= ev["y"].max()
            if inside and last.get((nx, ny), 0) + filter_time > t:
                ok = True
        if ok:
            keep.append(i)
    return ev[keep]


def brute_refractory(ev, period):
    keep, last = [], {}
    for i, e in enumerate(ev):
        key, t = (int(e["x"]), int(e["y"])), int(e["t"])
        if t - last.get(key, -period) > period:
            keep.append(i)
        last[key] = t
    return ev[keep]


@pytest.mark.parametrize("rel", REAL)
def test_filters_equal_tonic_on_real_files(shared_data, rel):
    denoise_numpy = _tonic_module("functional/denoise.py").denoise_numpy
    refractory_numpy = _tonic_module("functional/refractory_period.py").refractory_period_numpy
    ev = read_events(shared_data / rel)
    for ft in (1000, 10_000):
        assert np.array_equal(T.denoise(ev, ft), denoise_numpy(ev, ft))
    for rp in (500, 5000):
        assert np.array_equal(T.refractory_period(ev, rp), refractory_numpy(ev, rp))


@pytest.mark.parametrize("rel", REAL[:2])
def test_geometry_equal_tonic_on_real_files(shared_data, rel):
    """center_crop = tonic CenterCrop, downsample = tonic Downsample(spatial_factor=1/f), flips = RandomFlipLR /
    RandomFlipUD with p = 1 (their bodies, applied here to avoid importing tonic.transforms)."""
    ev = read_events(shared_data / rel)
    size = (int(ev["x"].max()) + 1, int(ev["y"].max()) + 1)
    # tonic CenterCrop.__call__ body
    for crop in ((10, 12), (size[0] + 4, 5)):
        ox, oy = (size[0] - crop[0]) // 2, (size[1] - crop[1]) // 2
        bx, by = max(ox, 0), max(oy, 0)
        ref = ev[(bx <= ev["x"]) & (ev["x"] < bx + crop[0]) & (by <= ev["y"]) & (ev["y"] < by + crop[1])]
        ref["x"] -= ox
        ref["y"] -= oy
        assert np.array_equal(T.center_crop(ev, size, crop), ref)
    for f in (2, 4):
        ref = ev.copy()
        ref["x"] = ev["x"] * (1 / f)  # tonic Downsample: multiply, cast back into the integer field
        ref["y"] = ev["y"] * (1 / f)
        assert np.array_equal(T.downsample(ev, f), ref)
    ref = ev.copy()
    ref["x"] = size[0] - 1 - ev["x"]
    assert np.array_equal(T.flip_x(ev, size), ref)
    ref = ev.copy()
    ref["y"] = size[1] - 1 - ev["y"]
    assert np.array_equal(T.flip_y(ev, size), ref)


def test_crop_equals_tonic_crop_numpy_box(shared_data):
    """tonic's crop_numpy draws its box from np.random: seed numpy, read the box it drew, compare."""
    crop_numpy = _tonic_module("functional/crop.py").crop_numpy
    ev = read_events(shared_data / "nmnist/tonic_sample_nmnist.bin")
    np.random.seed(3)  # noqa: NPY002 - tonic draws its box from the legacy global generator
    x0, y0 = int(np.random.rand() * (34 - 20)), int(np.random.rand() * (34 - 16))  # noqa: NPY002
    np.random.seed(3)  # noqa: NPY002 - tonic draws its box from the legacy global generator
    assert np.array_equal(T.crop(ev, x0, y0, 20, 16), crop_numpy(ev.copy(), (34, 34), (20, 16)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_filters_equal_brute_force(seed):
    ev = random_events(seed=seed)
    for ft in (200, 3000):
        assert np.array_equal(T.denoise(ev, ft), brute_denoise(ev, ft))
    for rp in (0, 300, 5000):
        assert np.array_equal(T.refractory_period(ev, rp), brute_refractory(ev, rp))


def test_geometry_brute_force():
    ev = random_events()
    out = T.crop(ev, 3, 2, 7, 5)
    ref = [(e["t"], e["x"] - 3, e["y"] - 2, e["p"]) for e in ev if 3 <= e["x"] < 10 and 2 <= e["y"] < 7]
    assert out.tolist() == ref
    assert T.downsample(ev, (3, 2)).tolist() == [(e["t"], e["x"] // 3, e["y"] // 2, e["p"]) for e in ev]
    assert T.flip_x(ev, (20, 15))["x"].tolist() == [19 - x for x in ev["x"].tolist()]


def test_record_kernels_equal_numpy_on_every_coordinate():
    """The branch-free record kernels against numpy field arithmetic and boolean indexing, over the whole int16
    coordinate range (negative coordinates included), odd and huge factors, and boxes partly off the grid."""
    rng = np.random.default_rng(7)
    n = 20_000
    ev = make_events(np.sort(rng.integers(0, 10**6, n)), rng.integers(-32768, 32768, n),
                     rng.integers(-32768, 32768, n), rng.integers(0, 2, n))  # fmt: skip
    for f in (1, 2, 3, 7, 10, 255, 32767, 40_000, 1 << 20, (5, 1)):
        fx, fy = (f, f) if isinstance(f, int) else f
        ref = ev.copy()
        ref["x"] = ev["x"].astype(np.int64) // fx
        ref["y"] = ev["y"].astype(np.int64) // fy
        assert np.array_equal(T.downsample(ev, f), ref), f
    small = random_events(n=5000, size=(40, 30), seed=3)
    for x0, y0, w, h in ((0, 0, 40, 30), (5, 7, 9, 4), (35, 25, 20, 20), (-3, -2, 6, 5), (50, 0, 3, 3)):
        x, y = small["x"], small["y"]
        ref = small[(x >= x0) & (x < x0 + w) & (y >= y0) & (y < y0 + h)]
        ref["x"] -= x0
        ref["y"] -= y0
        assert np.array_equal(T.crop(small, x0, y0, w, h), ref), (x0, y0, w, h)
    ref = small.copy()
    ref["y"] = 29 - small["y"]
    assert np.array_equal(T.flip_y(small, (40, 30)), ref)
    keep = np.random.default_rng(4).random(len(small)) < 0.4
    assert np.array_equal(T.select_events(small, keep), small[keep])
    assert len(T.select_events(small, np.zeros(len(small), bool))) == 0


def test_seeded_augmentation():
    ev = random_events(n=1001)
    a, b = T.drop_event(ev, 0.3, seed=5), T.drop_event(ev, 0.3, seed=5)
    assert np.array_equal(a, b) and len(a) == 1001 - int(0.3 * 1001 + 0.5)
    assert np.all(np.isin(a, ev)) and np.all(np.diff(a["t"]) >= 0)  # a subset, in order
    assert not np.array_equal(a, T.drop_event(ev, 0.3, seed=6))
    j = T.time_jitter(ev, 100.0, seed=1)
    assert np.array_equal(j, T.time_jitter(ev, 100.0, seed=1))
    d = (j["t"] - ev["t"]).astype(float)
    assert abs(d.mean()) < 10 and 90 < d.std() < 110
    rng = np.random.default_rng(1)
    assert j["t"].tolist() == np.rint(ev["t"] + rng.normal(0, 100.0, len(ev))).astype(np.int64).tolist()
    s = T.time_jitter(ev, 5000.0, seed=2, clip_negative=True, sort_timestamps=True)
    assert s["t"].min() >= 0 and np.all(np.diff(s["t"]) >= 0)


def test_drop_event_subsets_are_uniform():
    """Every 3-subset of 8 events is dropped equally often (Floyd's sampling): 56 subsets, 28,000 seeded draws,
    each count within 5 standard deviations of 500; and every event's drop frequency near 3/8."""
    ev = make_events(np.arange(8), np.zeros(8, int), np.zeros(8, int), np.zeros(8, int))
    rng = np.random.default_rng(0)
    counts: dict[tuple[int, ...], int] = {}
    for _ in range(28_000):
        kept = T.drop_event(ev, 3 / 8, rng)["t"].tolist()
        dropped = tuple(sorted(set(range(8)) - set(kept)))
        counts[dropped] = counts.get(dropped, 0) + 1
    assert len(counts) == 56 and all(len(d) == 3 for d in counts)
    sd = (28_000 * (1 / 56) * (55 / 56)) ** 0.5
    assert max(abs(c - 500) for c in counts.values()) < 5 * sd
    per_event = np.zeros(8)
    for d, c in counts.items():
        per_event[list(d)] += c
    assert np.allclose(per_event / 28_000, 3 / 8, atol=0.015)


def test_inputs_untouched_and_empty():
    ev = random_events(n=50)
    before = ev.copy()
    for fn in (lambda e: T.denoise(e, 100), lambda e: T.flip_y(e, (20, 15)), lambda e: T.downsample(e, 2),
               lambda e: T.crop(e, 1, 1, 5, 5), lambda e: T.time_jitter(e, 3, 0)):  # fmt: skip
        fn(ev)
        assert np.array_equal(ev, before)
        assert len(fn(np.empty(0, EVENT_DTYPE))) == 0


def test_sensor_check_and_specs():
    ev = make_events([1, 2, 3], [0, 40, 5], [0, 3, 50], [1, 0, 1])
    with pytest.raises(T.EventsOutsideSensor, match=r"2 of 3 events lie outside the declared 34 x 34 sensor "
                       r"\(observed extent x 0..40, y 0..50\)"):  # fmt: skip
        T.check_inside(ev, (34, 34))
    kept, n = T.drop_outside(ev, (34, 34))
    assert n == 2 and kept.tolist() == [(1, 0, 0, 1)]
    spec = T.TransformSpec.parse("center_crop:width=10,height=8")
    assert spec.to_dict() == {"name": "center_crop", "width": 10, "height": 8}
    out, size = T.apply_transforms(random_events(), [T.TransformSpec.parse("downsample:factor=3"), spec], (20, 15))
    assert size == (10, 8) and out["x"].max() < 10 and out["y"].max() < 8
    with pytest.raises(ValueError, match="unknown transform"):
        T.TransformSpec.parse("blur")
    with pytest.raises(ValueError, match="takes filter_time_us"):
        T.TransformSpec.parse("denoise:filter_time=3")
