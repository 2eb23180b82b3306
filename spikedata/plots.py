"""Figures of spike stores for `spikedata inspect`: an overview of every split, one sample, an event-camera movie.

What the axes show follows from the store's attributes (`docs/store.md`):
* event-camera stores (encoder `event_binning`, unit_shape `[C, H, W]`, or `[C, W, H]` with `unit_order = "pxy"`):
  pixels x / y, polarity channel 0 = OFF, 1 = ON (one channel "ON + OFF" when polarities are merged);
* image stores (unit_shape `[1, H, W]` or `[H, W]`): pixels x / y; a raster's unit is the pixel `row * W + col`;
* speech stores (`channel_cf_hz`, one centre frequency per unit): channel centre frequency in Hz;
* anything else: the flat unit index.
Time is always in ms (`dt_us` of the store). Figures use matplotlib's object API (no global pyplot state).

Raster ticks are as tall as a unit's row (at least a point), so a raster of a few units is as legible as one of
thousands. Colour scales of rates and counts are robust: they end at the 99th percentile of the active (nonzero)
pixels, so that a few hot pixels cannot make a map look blank; the colour bar says so and shows, with its arrow,
that brighter pixels exist. Every text is printable (`spikedata.text.printable`: a class name from a file name
that is not UTF-8 is shown with `\\xNN` escapes).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, ScalarFormatter

from spikedata.text import printable

#: Samples shown per split in the overview.
N_SAMPLES = 4
#: Percentile of the active pixels' values at which colour scales end (robust to hot pixels).
SCALE_PERCENTILE = 99.0
_ON, _OFF = np.array([0.84, 0.15, 0.16]), np.array([0.12, 0.47, 0.71])  # red, blue


@dataclass(frozen=True)
class UnitAxes:
    """How the units of a store map onto axes a reader understands (see the module docstring)."""

    kind: str  # "events" | "image" | "channels" | "units"
    n_units: int
    planes: tuple[str, ...] = ()  # names of the [C, H, W] channels ("OFF", "ON"), images and events
    shape: tuple[int, ...] = ()  # (C, H, W) for images and events: H rows (y), W columns (x)
    pxy: bool = False  # units are stored (C, W, H): x major
    cf_hz: np.ndarray | None = None  # centre frequency of every unit (speech)

    @classmethod
    def of(cls, attrs: Mapping[str, Any], unit_shape: Sequence[int]) -> UnitAxes:
        shape = tuple(int(s) for s in unit_shape)
        n = int(np.prod(shape))
        encoder = attrs.get("encoder") or {}
        params = encoder.get("params") or {}
        cf = attrs.get("channel_cf_hz")
        if cf is not None and len(cf) == n:
            return cls("channels", n, cf_hz=np.asarray(cf, dtype=np.float64))
        if len(shape) == 2:
            shape = (1, *shape)
        if len(shape) != 3:
            return cls("units", n)
        pxy = params.get("unit_order") == "pxy"
        c, a, b = shape
        hw = (b, a) if pxy else (a, b)
        if encoder.get("name") == "event_binning":
            planes = ("OFF", "ON") if c == 2 else ("ON + OFF",) if c == 1 else tuple(f"channel {k}" for k in range(c))
            return cls("events", n, planes, (c, *hw), pxy)
        return cls("image", n, tuple(f"channel {k}" for k in range(c)) if c > 1 else ("image",), (c, *hw), pxy)

    def planes_of(self, values: np.ndarray) -> np.ndarray:
        """Per-unit values [n_units] -> [C, H, W] (rows y, columns x)."""
        c, h, w = self.shape
        if self.pxy:
            return values.reshape(c, w, h).transpose(0, 2, 1)
        return values.reshape(c, h, w)

    @property
    def unit_label(self) -> str:
        if self.kind == "channels":
            return "channel centre frequency (Hz)"
        if self.kind in ("image", "events"):
            c, h, w = self.shape
            plane = f"x * {h} + y" if self.pxy else f"y * {w} + x"
            return f"pixel ({plane})" if c == 1 else f"unit (channel * {h * w} + {plane})"
        return "unit"


def _label_text(classes: Sequence[str], label: int) -> str:
    return f"label {printable(str(classes[label]))}" if 0 <= label < len(classes) else f"label index {label}"


def robust_max(values: np.ndarray) -> tuple[float, bool]:
    """(top of a colour scale for `values`, whether some values lie above it): the `SCALE_PERCENTILE` of the
    nonzero values (1 when there are none)."""
    active = np.asarray(values, dtype=np.float64)
    active = active[active > 0]
    if not len(active):
        return 1.0, False
    top = float(np.percentile(active, SCALE_PERCENTILE))
    return top, bool(active.max() > top)


def _row_points(ax, fig, n_rows: int) -> float:
    """Height in points of one of `n_rows` rows of `ax` (from the figure size and the axes' position)."""
    return ax.get_position().height * fig.get_figheight() * 72.0 / max(n_rows, 1)


def _raster(ax, axes: UnitAxes, times: np.ndarray, units: np.ndarray, dt_ms: float, n_steps: int) -> None:
    """Spike raster: time (ms) x unit, the unit axis labelled by `axes` (centre frequencies in Hz for speech);
    each spike a tick of its unit's row height (at least 1.2 points, at most 0.8 of the row)."""
    row = _row_points(ax, ax.figure, axes.n_units)
    tick = float(np.clip(0.8 * row, 1.2, 40.0))
    ax.scatter(np.asarray(times) * dt_ms, units, s=tick**2, marker="|", linewidths=float(np.clip(tick / 12, 0.6, 1.5)),
               color="k")
    ax.set_xlim(0, n_steps * dt_ms)
    ax.set_xlabel("time (ms)", fontsize=8)
    ax.set_ylabel(axes.unit_label, fontsize=8)
    if axes.kind == "events" and len(axes.planes) > 1:  # one band per polarity channel, named on the right
        size = axes.n_units // len(axes.planes)
        for k, name in enumerate(axes.planes):
            if k:
                ax.axhline(k * size - 0.5, color="0.5", lw=0.6, ls="--")
            ax.text(1.01, (k + 0.5) / len(axes.planes), name, transform=ax.transAxes, rotation=90, va="center",
                    fontsize=7)
    if axes.kind == "channels":
        ax.set_ylim(axes.n_units - 0.5, -0.5)  # unit 0 = highest frequency, drawn at the top
        ticks = np.unique(np.linspace(0, axes.n_units - 1, 6).round().astype(int))
        ax.set_yticks(ticks, [f"{axes.cf_hz[t]:.0f}" for t in ticks])
    else:
        ax.set_ylim(-0.5, axes.n_units - 0.5)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=6, min_n_ticks=1))
    ax.tick_params(labelsize=7)


def _polarity_image(axes: UnitAxes, units: np.ndarray) -> np.ndarray:
    """RGB [H, W, 3] of a sample's events: red = ON, blue = OFF (intensity ~ events per pixel, full at the robust
    top of the counts, `robust_max`), white = none."""
    counts = axes.planes_of(np.bincount(np.asarray(units, np.int64), minlength=axes.n_units).astype(np.float64))
    scale = max(robust_max(counts)[0], 1.0)
    img = np.ones((*counts.shape[1:], 3))
    colours = [_OFF, _ON] if counts.shape[0] == 2 else [np.full(3, 0.1)] * counts.shape[0]
    for plane, colour in zip(counts, colours, strict=True):  # subtractive: both polarities give a dark purple
        img -= np.sqrt(np.clip(plane / scale, 0, 1))[..., None] * (1 - colour)
    return np.clip(img, 0, 1)


def _pixel_axes(ax) -> None:
    ax.set_xlabel("x (pixel)", fontsize=8)
    ax.set_ylabel("y (pixel)", fontsize=8)
    ax.tick_params(labelsize=7)


def _sample_panel(ax, fig, split: Any, axes: UnitAxes, i: int) -> None:
    times, units = split.events(i)
    dt_ms = float(split.dt_us) / 1000.0
    label = _label_text(split.classes, int(split.labels[i]))
    if axes.kind == "events":
        ax.imshow(_polarity_image(axes, units), interpolation="nearest")
        _pixel_axes(ax)
        span = f", {times.min() * dt_ms:.0f}-{(times.max() + 1) * dt_ms:.0f} ms" if len(times) else ""
        ax.set_title(printable(f"{split.name} #{i}: {label}\n{len(times)} spikes{span} (red ON, blue OFF)"),
                     fontsize=8)
    else:
        _raster(ax, axes, times, units, dt_ms, split.n_steps)
        ax.set_title(printable(f"{split.name} #{i}: {label}\n{len(times)} spikes"), fontsize=8)


def _colour_bar(fig, im, ax, what: str, clipped: bool) -> None:
    """A colour bar beside `ax` labelled `what`, saying when the scale ends at the robust top (`robust_max`)."""
    bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, extend="max" if clipped else "neither")
    bar.set_label(f"{what}, scale to p{SCALE_PERCENTILE:g} of active pixels" if clipped else what, fontsize=7)
    bar.ax.tick_params(labelsize=7)


def _rate_panels(fig, cells: list, axes: UnitAxes, rate_hz: np.ndarray, split_name: str) -> None:
    if axes.kind in ("events", "image"):
        maps = axes.planes_of(rate_hz)
        vmax, clipped = robust_max(maps)
        for ax, plane, name in zip(cells, maps, axes.planes, strict=True):
            im = ax.imshow(plane, cmap="viridis", vmin=0, vmax=vmax, interpolation="nearest")
            _pixel_axes(ax)
            what = f", {name} events" if axes.kind == "events" and len(axes.planes) > 1 else ""
            # two short lines: a title wider than the axes would run into the colour bar or off the figure
            ax.set_title(printable(f"{split_name}{what}:\nmean rate per pixel (max {plane.max():.3g} Hz)"),
                         fontsize=8)
            _colour_bar(fig, im, ax, "rate (Hz)", clipped)
        return
    ax = cells[0]
    if axes.kind == "channels":
        ax.plot(axes.cf_hz, rate_hz, "o-", ms=2, lw=0.8)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.set_xlabel("channel centre frequency (Hz)", fontsize=8)
    else:
        x = np.arange(axes.n_units)
        if axes.n_units <= 128:
            ax.bar(x, rate_hz, width=1.0)
        else:
            ax.plot(x, rate_hz, lw=0.8)
        ax.set_xlabel("unit", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=6, min_n_ticks=1))
    ax.set_ylabel("mean rate (Hz)", fontsize=8)
    ax.set_title(printable(f"{split_name}: mean rate per unit"), fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)


def _picks(labels: np.ndarray, n: int) -> np.ndarray:
    """Up to `n` sample indices: the first sample of each class in order of appearance, then the next samples."""
    _, first = np.unique(labels, return_index=True)
    picks = list(np.sort(first)[:n])
    for i in range(len(labels)):
        if len(picks) >= n:
            break
        if i not in picks:
            picks.append(i)
    return np.sort(np.asarray(picks, dtype=np.int64))


def _title(attrs: Mapping[str, Any], store_name: str, split: Any) -> str:
    dt_ms = float(split.dt_us) / 1000.0
    units = "unit" if split.n_units == 1 else "units"
    return printable(f"{attrs.get('dataset', '?')} ({store_name}): {split.n_units} {units} {list(split.unit_shape)}, "
                     f"T = {split.n_steps} steps of {dt_ms:g} ms = {split.n_steps * dt_ms:g} ms")


def plot_splits(splits: Sequence[Any], rates_hz: Sequence[np.ndarray], path: str | os.PathLike,
                attrs: Mapping[str, Any] | None = None, store_name: str = "") -> Figure:
    """PNG with one row per split: `N_SAMPLES` samples (first of each class) and the mean rate per unit
    (`rates_hz[k]` float [n_units] of split k, in Hz) as pixel maps, a rate-vs-frequency curve or a bar plot.
    Splits without samples are left out; ValueError when none has any. Returns the figure."""
    attrs = attrs or {}
    rows = [(s, r) for s, r in zip(splits, rates_hz, strict=True) if len(s)]
    if not rows:
        raise ValueError("no split has samples to plot")
    first = rows[0][0]
    axes = UnitAxes.of(attrs, first.unit_shape)
    n_show = min(N_SAMPLES, min(len(s) for s, _ in rows))
    n_maps = len(axes.planes) if axes.kind in ("events", "image") else 1
    cols = n_show + n_maps
    fig = Figure(figsize=(2.9 * cols, 2.9 * len(rows) + 0.4))
    grid = fig.subplots(len(rows), cols, squeeze=False)
    for r, (split, rate) in enumerate(rows):
        for k, i in enumerate(_picks(np.asarray(split.labels), n_show)):
            _sample_panel(grid[r, k], fig, split, axes, int(i))
        _rate_panels(fig, list(grid[r, n_show:]), axes, np.asarray(rate, dtype=np.float64), split.name)
    fig.suptitle(_title(attrs, store_name, first), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return fig


def plot_sample(split: Any, i: int, path: str | os.PathLike, attrs: Mapping[str, Any] | None = None,
                store_name: str = "") -> Figure:
    """PNG of sample `i`: its raster (time in ms; centre frequencies for speech), its spike counts over time and,
    for pixel stores, its spikes per pixel (ON red / OFF blue for event cameras). Returns the figure."""
    attrs = attrs or {}
    axes = UnitAxes.of(attrs, split.unit_shape)
    times, units = split.events(i)
    dt_ms = float(split.dt_us) / 1000.0
    spatial = axes.kind in ("events", "image")
    fig = Figure(figsize=(13 if spatial else 9, 3.6))
    cells = fig.subplots(1, 3 if spatial else 2, squeeze=True)
    label = _label_text(split.classes, int(split.labels[i]))
    _raster(cells[0], axes, times, units, dt_ms, split.n_steps)
    cells[0].set_title("spike raster", fontsize=9)
    ax = cells[1]
    width = max(1, split.n_steps // 80)  # steps per bin
    n_bins = -(-split.n_steps // width)
    centres = (np.arange(n_bins) + 0.5) * width * dt_ms

    def rate(t: np.ndarray, n: int) -> np.ndarray:  # Hz per unit, in bins of `width` steps
        return np.bincount(t.astype(np.int64) // width, minlength=n_bins) / (n * width * dt_ms * 1e-3)

    if axes.kind == "events" and len(axes.planes) == 2:
        on = units >= axes.n_units // 2  # the ON channel is the second half of the units in either unit order
        for mask, name, colour in ((on, "ON", _ON), (~on, "OFF", _OFF)):
            ax.plot(centres, rate(times[mask], axes.n_units // 2), label=f"{name} units", color=colour, lw=1)
        ax.legend(fontsize=7)
    else:
        ax.plot(centres, rate(times, axes.n_units), color="k", lw=1)
    ax.set_xlim(0, split.n_steps * dt_ms)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("time (ms)", fontsize=8)
    ax.set_ylabel("population rate (Hz per unit)", fontsize=8)
    ax.set_title(f"population rate (bins of {width * dt_ms:g} ms)", fontsize=9)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    if spatial:
        ax = cells[2]
        if axes.kind == "events":
            ax.imshow(_polarity_image(axes, units), interpolation="nearest")
            ax.set_title("spikes per pixel (red ON, blue OFF)", fontsize=9)
        else:
            counts = axes.planes_of(np.bincount(units.astype(np.int64), minlength=axes.n_units)).sum(0)
            top, clipped = robust_max(counts)
            im = ax.imshow(counts, cmap="gray_r", vmin=0, vmax=top, interpolation="nearest")
            _colour_bar(fig, im, ax, "spikes", clipped)
            ax.set_title("spikes per pixel", fontsize=9)
        _pixel_axes(ax)
    fig.suptitle(printable(f"{attrs.get('dataset', '?')} ({store_name}), split {split.name}, sample {i}: {label}, "
                           f"{len(times)} spikes in {split.n_steps * dt_ms:g} ms"), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return fig


def animate_sample(split: Any, i: int, path: str | os.PathLike, attrs: Mapping[str, Any] | None = None,
                   store_name: str = "", frames: int = 30, fps: int = 10) -> int:
    """GIF of sample `i` of a pixel store (event camera or image): `frames` consecutive time windows, each showing
    the spikes of that window per pixel (ON red, OFF blue), titled with the window in ms. Returns the frame count.
    ValueError for stores whose units are not pixels."""
    from matplotlib.animation import FuncAnimation, PillowWriter
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    attrs = attrs or {}
    axes = UnitAxes.of(attrs, split.unit_shape)
    if axes.kind not in ("events", "image"):
        raise ValueError(f"split {split.name!r}: an animation needs pixel units (unit_shape [C, H, W]); this store's "
                         f"units are {axes.kind} {list(split.unit_shape)}")
    times, units = split.events(i)
    dt_ms = float(split.dt_us) / 1000.0
    last = int(times.max()) + 1 if len(times) else split.n_steps
    frames = max(1, min(int(frames), last))
    bounds = np.linspace(0, last, frames + 1).round().astype(np.int64)
    label = _label_text(split.classes, int(split.labels[i]))
    fig = Figure(figsize=(4.2, 4.6))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    image = ax.imshow(_polarity_image(axes, units[:0]), interpolation="nearest")
    _pixel_axes(ax)
    title = ax.set_title("", fontsize=9)
    fig.suptitle(printable(f"{attrs.get('dataset', '?')} {split.name} #{i}: {label}"
                           + (" (red ON, blue OFF)" if axes.kind == "events" and len(axes.planes) == 2 else "")),
                 fontsize=9)

    def draw(k: int):
        a, b = bounds[k], bounds[k + 1]
        keep = (times >= a) & (times < b)
        image.set_data(_polarity_image(axes, units[keep]))
        title.set_text(f"t = {a * dt_ms:.1f}-{b * dt_ms:.1f} ms, {int(keep.sum())} spikes")
        return image, title

    FuncAnimation(fig, draw, frames=frames, blit=False).save(str(path), writer=PillowWriter(fps=fps))
    return frames
