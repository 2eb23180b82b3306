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
