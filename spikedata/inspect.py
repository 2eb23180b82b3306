"""Statistics of a spike store, computed by streaming over contiguous sample ranges, and its overview figure.

Everything is accumulated block by block (`Split.read_range`) in one numba pass over the events, so a 60k-sample
store never has to fit in memory as a whole. Times are steps of `dt_us` µs; rates are in Hz. The figures are drawn
by `spikedata.plots`.
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


def plot_split(split: Any, path: str | os.PathLike, stats: SplitStats | None = None,
               attrs: dict[str, Any] | None = None, store_name: str = "") -> None:
    """PNG of one split: samples and per-unit rates, axes as `spikedata.plots` describes (`attrs`: the store's)."""
    plot_store([split], path, [stats or split_stats(split)], attrs, store_name)


def plot_store(splits: list[Any], path: str | os.PathLike, stats: list[SplitStats] | None = None,
               attrs: dict[str, Any] | None = None, store_name: str = "") -> None:
    """PNG with one row per split (samples of different classes, mean rate per unit): `spikedata.plots`."""
    from spikedata.plots import plot_splits

    stats = stats or [split_stats(s) for s in splits]
    plot_splits(splits, [st.unit_rate_hz for st in stats], path, attrs, store_name)
