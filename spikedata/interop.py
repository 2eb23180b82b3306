"""Spike stores as other libraries expect them.

* `torch.utils.data.DataLoader(split, batch_size=B)` works directly: a `Split` is a map-style dataset
  (``split[i]`` -> (raster bool [T, N], label); the default collate stacks [B, T, N]). spikedata never imports
  torch.
* `to_tonic(split, i)`: sample i of an event store as tonic's event array, a structured array with fields
  ``x, y, t, p`` (int64; tonic's ``make_structured_array`` order), t = step * dt_us µs, coordinates and polarity
  from the flat unit index and the store's `unit_shape` / unit order. Steps are what the store holds: several
  events of one pixel in one step came out as one spike.
* Zarr arrays carry ``dimension_names`` (``event``, ``sample``, ``sample_boundary``), so ``xarray.open_zarr`` can
  open a split group.
"""

from __future__ import annotations

import numpy as np

from spikedata.store import Split, StoreError

#: tonic's event dtype (`tonic.io.make_structured_array` with x, y, t, p).
TONIC_DTYPE = np.dtype([("x", "<i8"), ("y", "<i8"), ("t", "<i8"), ("p", "<i8")])


def to_tonic(split: Split, i: int) -> np.ndarray:
    """Events [k] of sample `i` as tonic's (x, y, t, p) structured array (t in µs, sorted by time)."""
    shape = split.unit_shape
    if len(shape) != 3:
        raise StoreError(f"split {split.name!r}: unit_shape {list(shape)} is not (channels, height, width); "
                         "only event / image stores map to tonic's (x, y, t, p)")  # fmt: skip
    order = split.store.attrs.get("encoder", {}).get("params", {}).get("unit_order", "pyx")
    times, units = split.events(i)
    units = np.asarray(units, dtype=np.int64)
    c, a, b = shape
    p, rest = np.divmod(units, a * b)
    first, second = np.divmod(rest, b)
    y, x = (first, second) if order == "pyx" else (second, first)
    out = np.empty(len(units), dtype=TONIC_DTYPE)
    out["x"], out["y"], out["p"] = x, y, p
    out["t"] = np.rint(np.asarray(times, dtype=np.float64) * split.dt_us).astype(np.int64)
    return out
