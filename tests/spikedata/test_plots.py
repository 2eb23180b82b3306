"""`spikedata.plots` and `spikedata inspect --plot/--sample/--animate`: axes in the units of each kind of store."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from spikedata.cli import app as spikedata_app
from spikedata.inspect import split_stats
from spikedata.pipeline import SplitJob, dense_to_block, encode_to_store
from spikedata.plots import UnitAxes, animate_sample, plot_sample, plot_splits
from spikedata.store import open_store

runner = CliRunner()


def _block(start, stop, *, shape, steps, seed):
    n = int(np.prod(shape))
    rng = np.random.default_rng([seed, start])
    raster = rng.random((stop - start, steps, n)) < 0.05
    raster[:, 0] = False
    return dense_to_block(raster, np.arange(start, stop) % 3)


def _store(path, shape, steps=40, **attrs):
    base = {"dataset": "toy", "encoder": {"name": "hand", "params": {}}, "n_units": int(np.prod(shape)),
            "unit_shape": list(shape), "n_steps": steps, "dt_us": 600, "classes": ["zero", "one", "two"], "seed": 0,
            "source": {"files": {}}, **attrs}
    jobs = {name: SplitJob(n, partial(_block, shape=shape, steps=steps, seed=k), chunk=4)
            for k, (name, n) in enumerate((("train", 9), ("test", 5)))}
    return open_store(encode_to_store(path, base, jobs, progress=False))


EVENTS = {"encoder": {"name": "event_binning", "params": {"unit_order": "pyx", "polarity": "split"}}}


def test_unit_axes_follow_the_store_attributes():
    ev = UnitAxes.of(EVENTS, [2, 4, 6])
    assert ev.kind == "events" and ev.planes == ("OFF", "ON") and ev.shape == (2, 4, 6)
    values = np.arange(48)
    assert ev.planes_of(values)[1, 2, 3] == 1 * 24 + 2 * 6 + 3  # polarity ON, y = 2, x = 3
    pxy = UnitAxes.of({"encoder": {"name": "event_binning", "params": {"unit_order": "pxy"}}}, [2, 6, 4])
    assert pxy.shape == (2, 4, 6) and pxy.planes_of(values)[1, 2, 3] == 1 * 24 + 3 * 4 + 2  # stored x-major
    assert UnitAxes.of({}, [1, 28, 28]).kind == "image" and UnitAxes.of({}, [28, 28]).shape == (1, 28, 28)
    speech = UnitAxes.of({"channel_cf_hz": [4000.0, 1000.0, 250.0]}, [3])
    assert speech.kind == "channels" and speech.unit_label == "channel centre frequency (Hz)"
    assert UnitAxes.of({}, [5]).kind == "units"


def _texts(fig):
    out = [fig._suptitle.get_text()] if fig._suptitle else []
    for ax in fig.axes:
        out += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
    return out


@pytest.mark.parametrize("kind", ["events", "image", "speech"])
def test_overview_has_a_row_per_split_and_no_empty_panel(tmp_path, kind):
    shape, extra = {"events": ([2, 4, 6], EVENTS), "image": ([1, 5, 5], {}),
                    "speech": ([3], {"channel_cf_hz": [4000.0, 1000.0, 250.0]})}[kind]
    store = _store(tmp_path / "s.zarr", shape, **extra)
    splits = [store[s] for s in store.splits]
    fig = plot_splits(splits, [split_stats(s).unit_rate_hz for s in splits], tmp_path / "p.png", store.attrs, "s")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert all(ax.has_data() for ax in panels)  # no empty panel
    texts = _texts(fig)
    assert any(t.startswith("train #0: label zero") for t in texts) and any(t.startswith("test #") for t in texts)
    assert not any("(zero)" in t for t in texts)
    assert "T = 40 steps of 0.6 ms = 24 ms" in texts[0]
    if kind == "speech":
        assert "channel centre frequency (Hz)" in texts and "time (ms)" in texts
    else:
        assert "x (pixel)" in texts and "y (pixel)" in texts
    if kind == "events":
        assert any("ON events" in t for t in texts) and any("OFF events" in t for t in texts)
        n_cols = 4 + 2
    else:
        n_cols = 4 + 1
    assert len(panels) == 2 * n_cols


def test_sample_figure_and_animation(tmp_path):
    store = _store(tmp_path / "e.zarr", [2, 4, 6], **EVENTS)
    fig = plot_sample(store["test"], 2, tmp_path / "one.png", store.attrs, "e")
    texts = _texts(fig)
    assert "sample 2: label two" in texts[0] and "time (ms)" in texts and "population rate (Hz per unit)" in texts
    n = animate_sample(store["test"], 2, tmp_path / "a.gif", store.attrs, frames=5)
    gif = Image.open(tmp_path / "a.gif")
    assert n == 5 and gif.n_frames == 5
    speech = _store(tmp_path / "s.zarr", [3], channel_cf_hz=[4000.0, 1000.0, 250.0])
    with pytest.raises(ValueError, match="needs pixel units"):
        animate_sample(speech["test"], 0, tmp_path / "b.gif", speech.attrs)


def test_inspect_sample_and_animate_on_real_nmnist(shared_data, tmp_path):
    src = tmp_path / "nm"
    for rel, f in (("Train/0/a.bin", "tonic_sample_nmnist.bin"), ("Test/5/b.bin", "slayer_NMNIST_1.bs2")):
        (src / rel).parent.mkdir(parents=True)
        (src / rel).write_bytes((shared_data / "nmnist" / f).read_bytes())
    out = tmp_path / "nm.zarr"
    assert runner.invoke(spikedata_app, ["encode", "nmnist", "--source", str(src), "--out", str(out),
                                         "--quiet"]).exit_code == 0
    r = runner.invoke(spikedata_app, ["inspect", str(out), "--split", "test", "--sample", "0", "--plot",
                                      str(tmp_path / "s.png"), "--animate", str(tmp_path / "s.gif")])
    assert r.exit_code == 0, r.output
    n_spikes = len(open_store(out)["test"].events(0)[0])  # of the 4681 events, those left after binning
    assert f"split test, sample 0: label 5, {n_spikes} spikes" in r.output.replace("\n", " ")
    assert (tmp_path / "s.png").stat().st_size > 1000 and Image.open(tmp_path / "s.gif").n_frames == 30
    r = runner.invoke(spikedata_app, ["inspect", str(out), "--plot", str(tmp_path / "all.png")])
    assert r.exit_code == 0 and "plot of split(s) train, test" in r.output.replace("\n", " ")
    r = runner.invoke(spikedata_app, ["inspect", str(out), "--sample", "3"])
    assert r.exit_code == 1 and "--sample 3: split 'train' has 1 samples" in r.output


# ---------------------------------------------------------------------------------- what the figures show
def _write(path, unit_shape, samples, splits=("train",), encoder="hand", n_steps=100):
    """A store whose samples are given as (times, units, label); the same samples in every split."""
    from spikedata.store import StoreWriter, root_attributes

    attrs = root_attributes("toy", encoder, {}, unit_shape, n_steps, 1000, ["a", "b"], 0, {"files": {}})
    with StoreWriter(path, attrs) as writer:
        for name in splits:
            split = writer.split(name)
            for times, units, label in samples:
                order = np.lexsort((units, times))
                split.append(np.array([0, len(times)]), np.asarray(times)[order], np.asarray(units)[order],
                             np.array([label]))
    return open_store(path)


def _crop(png, fig, ax, inset=4) -> np.ndarray:
    """The pixels of `png` (saved from `fig`) inside the axes `ax`, less `inset` pixels of frame."""
    img = np.asarray(Image.open(png).convert("RGB")).astype(np.int16)
    h, w = img.shape[:2]
    box = ax.get_position()
    rows = slice(int((1 - box.y1) * h) + inset, int((1 - box.y0) * h) - inset)
    cols = slice(int(box.x0 * w) + inset, int(box.x1 * w) - inset)
    return img[rows, cols]


def test_a_raster_of_one_unit_shows_its_spikes(tmp_path):
    samples = [(np.array([5, 20, 50, 80]), np.zeros(4, np.int64), k % 2) for k in range(4)]
    store = _write(tmp_path / "one.zarr", [1], samples)
    fig = plot_splits([store["train"]], [split_stats(store["train"]).unit_rate_hz], tmp_path / "one.png", store.attrs)
    raster = fig.axes[0]
    dark = (_crop(tmp_path / "one.png", fig, raster).sum(axis=2) < 200)  # black ticks on white
    rows, cols = np.flatnonzero(dark.any(axis=1)), np.flatnonzero(dark.any(axis=0))
    assert len(rows) >= 0.2 * dark.shape[0]  # each tick spans a good part of the unit's row, not a dot
    assert len(cols) >= 4  # the four spikes
    low, high = raster.get_ylim()
    assert [t for t in raster.get_yticks() if low <= t <= high] == [0]  # the unit, not -0.4 ... 0.4


def _hot_pixel_store(path, splits=("train",)):
    """Events [2, 16, 16] over 100 ms: ~20 Hz in an 8 x 8 block, and one hot pixel firing at 250 Hz."""
    rng = np.random.default_rng(0)
    samples = []
    for k in range(4):
        t = rng.integers(0, 100, 400)
        u = rng.integers(0, 2, 400) * 256 + rng.integers(4, 12, 400) * 16 + rng.integers(4, 12, 400)
        hot = np.arange(0, 100, 4)
        key = np.unique(np.concatenate([t, hot]) * 1024 + np.concatenate([u, np.full(len(hot), 256 + 17)]))
        samples.append((key // 1024, key % 1024, k % 2))
    return _write(path, [2, 16, 16], samples, splits, encoder="event_binning")


def test_a_hot_pixel_does_not_blank_the_rate_maps(tmp_path):
    store = _hot_pixel_store(tmp_path / "hot.zarr")
    rates = split_stats(store["train"]).unit_rate_hz
    assert rates.max() == pytest.approx(250)
    fig = plot_splits([store["train"]], [rates], tmp_path / "hot.png", store.attrs)
    maps = [ax for ax in fig.axes if ax.images and "mean rate per pixel" in ax.get_title()]
    assert len(maps) == 2
    active = rates[rates > 0]
    for ax in maps:
        norm = ax.images[0].norm
        assert norm.vmax == pytest.approx(np.percentile(active, 99)) and norm.vmax < 100  # robust, not 250 Hz
        assert "max " in ax.get_title()  # the true maximum is still stated
        pixels = _crop(tmp_path / "hot.png", fig, ax).reshape(-1, 3)
        bottom = np.array([68, 1, 84])  # viridis at 0
        lit = np.abs(pixels - bottom).sum(axis=1) > 120
        assert lit.mean() > 0.15  # the 8 x 8 block (a quarter of the map) is visible, not only the hot pixel
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(bars) == 2 and all("p99 of active pixels" in ax.get_ylabel() for ax in bars)


def test_rate_map_titles_stay_clear_of_colour_bars_and_inside_the_figure(tmp_path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    store = _hot_pixel_store(tmp_path / "t.zarr", splits=("train", "validation_sequences"))
    splits = [store[s] for s in store.splits]
    fig = plot_splits(splits, [split_stats(s).unit_rate_hz for s in splits], tmp_path / "t.png", store.attrs)
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    page = fig.bbox
    titles = [ax.title.get_window_extent(renderer) for ax in fig.axes if ax.get_title()]
    others = [ax.get_window_extent(renderer) for ax in fig.axes]
    assert len(titles) == 12
    for k, title in enumerate(titles):
        assert page.x0 <= title.x0 and title.x1 <= page.x1 and title.y1 <= page.y1  # not cut at the edge
        assert not any(title.overlaps(box) for box in others)  # no axes (colour bars included) under a title
        assert not any(title.overlaps(t) for j, t in enumerate(titles) if j != k)
