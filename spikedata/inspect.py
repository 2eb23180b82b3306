"""Statistics and a picture of a spike store, computed by streaming over contiguous sample ranges.

Everything is accumulated block by block (`Split.read_range`) in one numba pass over the events, so a 60k-sample
store never has to fit in memory as a whole. Times are steps of `dt_us` µs; rates are in Hz.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np

#: Samples read per block while streaming.
BLOCK = 2048


@numba.njit(cache=True)
def _accumulate(indptr, times, units, first_sample, unit_counts, isi_hist, last_sample, last_time):  # pragma: no cover
    """Per-unit spike counts and the histogram of inter-spike intervals (steps, same unit, same sample).

    `last_sample`/`last_time` [n_units] remember each unit's previous spike across the events of one sample; a
    sample index stamp avoids clearing them between samples.
    """
    for s in range(len(indptr) - 1):
        stamp = first_sample + s
        for e in range(indptr[s], indptr[s + 1]):
            u = units[e]
            t = np.int64(times[e])
            unit_counts[u] += 1
            if last_sample[u] == stamp:
                isi_hist[t - last_time[u]] += 1
            last_sample[u] = stamp
            last_time[u] = t


def hist_percentile(hist: np.ndarray, q: float) -> float:
    """`np.percentile(values, q)` (linear interpolation) of the values whose histogram is `hist` (value = index)."""
    n = int(hist.sum())
    if n == 0:
        return float("nan")
    cum = np.cumsum(hist)
    pos = q / 100.0 * (n - 1)
    lo, hi = int(np.floor(pos)), int(np.ceil(pos))
    v_lo = int(np.searchsorted(cum, lo, side="right"))
    v_hi = int(np.searchsorted(cum, hi, side="right"))
    return float(v_lo + (v_hi - v_lo) * (pos - lo))


@dataclass
class SplitStats:
    """Statistics of one split. `summary` is JSON-ready; `unit_rate_hz` [n_units] feeds the rate map."""

    summary: dict[str, Any]
    unit_rate_hz: np.ndarray = field(repr=False)
    counts: np.ndarray = field(repr=False)


def split_stats(split: Any, block: int = BLOCK) -> SplitStats:
    """Statistics of a store split (the `Split` of `spikedata.open_store(path)[name]`)."""
    n, n_units, n_steps, dt_us = len(split), split.n_units, split.n_steps, float(split.dt_us)
    unit_counts = np.zeros(n_units, np.int64)
    isi_hist = np.zeros(max(n_steps, 1), np.int64)
    last_sample = np.full(n_units, -1, np.int64)
    last_time = np.zeros(n_units, np.int64)
    counts = np.zeros(n, np.int64)
    for start in range(0, n, block):
        stop = min(start + block, n)
        b = split.read_range(start, stop)
        counts[start:stop] = np.diff(b.indptr)
        _accumulate(
            b.indptr.astype(np.int64), b.times, b.units, start, unit_counts, isi_hist, last_sample, last_time
        )
    labels = np.asarray(split.labels, dtype=np.int64)
    classes = list(split.classes)
    n_classes = len(classes)
    total = int(counts.sum())
    seconds = n_steps * dt_us * 1e-6  # duration of one sample
    unit_rate = unit_counts / (n * seconds) if n and seconds > 0 else np.zeros(n_units)
    class_n = np.bincount(labels, minlength=n_classes) if n else np.zeros(n_classes, np.int64)
    class_spikes = np.bincount(labels, weights=counts, minlength=n_classes) if n else np.zeros(n_classes)
    empty = np.flatnonzero(counts == 0)
    per_class = list(zip(classes, class_n.tolist(), class_spikes.tolist(), strict=True))
    n_isi = int(isi_hist.sum())

    def pct(q: float) -> float | None:
        return float(np.percentile(counts, q)) if n else None

    def rate_of(spikes: float, samples: int) -> float | None:
        return float(spikes / (samples * n_units * seconds)) if samples and n_units and seconds > 0 else None

    summary: dict[str, Any] = {
        "n_samples": n,
        "n_events": total,
        "n_units": n_units,
        "unit_shape": list(split.unit_shape),
        "n_steps": n_steps,
        "dt_us": dt_us,
        "class_counts": {c: int(k) for c, k, _ in per_class},
        "spikes_per_sample": {
            "mean": float(counts.mean()) if n else None,
            "median": pct(50),
            "p5": pct(5),
            "p95": pct(95),
            "min": int(counts.min()) if n else None,
            "max": int(counts.max()) if n else None,
        },
        "density": float(total / (n * n_steps * n_units)) if n and n_steps and n_units else None,
        "mean_rate_hz": rate_of(total, n),
        "unit_rate_hz": {
            "mean": float(unit_rate.mean()) if n_units else None,
            "median": float(np.median(unit_rate)) if n_units else None,
            "max": float(unit_rate.max()) if n_units else None,
            "silent_units": int(np.count_nonzero(unit_counts == 0)),
        },
        "isi_steps": {
            "count": n_isi,
            "mean": float((np.arange(len(isi_hist)) * isi_hist).sum() / n_isi) if n_isi else None,
            "median": hist_percentile(isi_hist, 50) if n_isi else None,
            "p5": hist_percentile(isi_hist, 5) if n_isi else None,
            "p95": hist_percentile(isi_hist, 95) if n_isi else None,
            "min": int(np.flatnonzero(isi_hist)[0]) if n_isi else None,
        },
        "class_mean_rate_hz": {c: rate_of(s, k) for c, k, s in per_class},
        "class_mean_spikes": {c: (s / k if k else None) for c, k, s in per_class},
        "empty_samples": {"count": int(len(empty)), "first": empty[:20].tolist()},
    }
    return SplitStats(summary, unit_rate, counts)


def store_stats(store: Any, splits: list[str] | None = None, block: int = BLOCK) -> dict[str, Any]:
    """JSON-ready statistics of the store's splits (all by default) plus its identifying attributes."""
    names = splits or list(store.splits)
    for s in names:
        if s not in store.splits:
            raise KeyError(f"{store.path} has no split {s!r}; it has {store.splits}")
    attrs = store.attrs
    return {
        "store": str(store.path),
        "dataset": attrs.get("dataset"),
        "encoder": attrs.get("encoder"),
        "seed": attrs.get("seed"),
        "fingerprint": store.fingerprint,
        "splits": {s: split_stats(store[s], block).summary for s in names},
    }


def plot_split(split: Any, path: str | os.PathLike, stats: SplitStats | None = None, n_raster: int = 4) -> None:
    """PNG: rasters of the first sample of up to `n_raster` classes, and per-unit rate maps shaped by unit_shape
    (one map per leading channel for [C, H, W], one map for [H, W], a bar/line plot for 1-D shapes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stats = stats or split_stats(split)
    shape = tuple(split.unit_shape)
    if len(shape) == 3:
        maps = [stats.unit_rate_hz.reshape(shape)[c] for c in range(shape[0])]
        titles = [f"rate (Hz), channel {c}" if shape[0] > 1 else "rate (Hz)" for c in range(shape[0])]
    elif len(shape) == 2:
        maps, titles = [stats.unit_rate_hz.reshape(shape)], ["rate (Hz)"]
    else:
        maps, titles = [], []
    labels = np.asarray(split.labels)
    _, first = np.unique(labels, return_index=True)
    picks = np.sort(first)[:n_raster] if len(labels) else np.array([], np.int64)
    n_top = max(len(picks), 1)
    n_bottom = max(len(maps), 1)
    cols = max(n_top, n_bottom)
    fig, axes = plt.subplots(2, cols, figsize=(3.2 * cols, 6.4), squeeze=False)
    dt_ms = split.dt_us / 1000.0
    for k in range(cols):
        ax = axes[0, k]
        if k >= len(picks):
            ax.axis("off")
            continue
        i = int(picks[k])
        t, u = split.events(i)
        ax.scatter(np.asarray(t) * dt_ms, u, s=0.5, marker="|", color="k")
        ax.set_xlim(0, split.n_steps * dt_ms)
        ax.set_ylim(-0.5, split.n_units - 0.5)
        ax.set_title(f"sample {i} ({split.classes[labels[i]]}), {len(t)} spikes", fontsize=8)
        ax.set_xlabel("time (ms)", fontsize=8)
        ax.set_ylabel("unit", fontsize=8)
    for k in range(cols):
        ax = axes[1, k]
        if maps and k < len(maps):
            im = ax.imshow(maps[k], cmap="viridis")
            ax.set_title(titles[k], fontsize=8)
            fig.colorbar(im, ax=ax, fraction=0.046)
        elif not maps and k == 0:
            x = np.arange(split.n_units)
            if split.n_units <= 128:
                ax.bar(x, stats.unit_rate_hz, width=1.0)
            else:
                ax.plot(x, stats.unit_rate_hz, lw=0.8)
            ax.set_xlabel("unit", fontsize=8)
            ax.set_ylabel("rate (Hz)", fontsize=8)
            ax.set_title("per-unit rate", fontsize=8)
        else:
            ax.axis("off")
    fig.suptitle(f"{split.name}: {len(split)} samples, {split.n_units} units, T = {split.n_steps}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
