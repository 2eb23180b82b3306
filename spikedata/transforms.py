"""Event transforms: pure functions, events in (`EVENT_DTYPE` structured array [n]) -> new events out.

Times are µs, coordinates pixels from 0, `sensor_size` is (width, height). Inputs are never modified. The
per-event loops are numba kernels; the selection transforms keep file order.

* `denoise(events, filter_time_us)` -- keep an event when one of its 4 neighbours (x +- 1 or y +- 1, not the
  pixel itself) had an event less than `filter_time_us` before it (tonic's `denoise_numpy`, including its
  start-up rule: every pixel counts as having fired at time 0, so events before `filter_time_us` pass);
* `refractory_period(events, refractory_us)` -- drop an event that follows the previous event of the same pixel
  (kept or not) by `refractory_us` or less; a pixel's first event is kept when its time exceeds
  ``t_first - (-refractory_us)``, i.e. always for t >= 0 (tonic's `refractory_period_numpy`);
* `crop(events, x0, y0, width, height)` and `center_crop(events, sensor_size, size)` -- keep the box, shift it to
  the origin (`center_crop` as tonic's `CenterCrop`: offset ``(W - w) // 2``);
* `downsample(events, factor)` -- x //= fx, y //= fy (tonic's ``Downsample(spatial_factor=1 / f)``), no event
  dropped;
* `flip_x(events, sensor_size)`, `flip_y(events, sensor_size)` -- x -> W - 1 - x, y -> H - 1 - y;
* `drop_event(events, p, seed)` -- drop round(p * n) events chosen uniformly without replacement (tonic's
  `drop_event_numpy` count rule), seeded;
* `time_jitter(events, std_us, seed, ...)` -- add N(0, std) µs to each time (rounded to whole µs), seeded;
  optionally drop negative times and re-sort by time (stable).

`check_inside(events, sensor_size)` raises `EventsOutsideSensor` (counts and the observed extent) and
`drop_outside` removes such events and says how many. `TransformSpec` names one transform with its parameters:
the form that encode commands take (``--transform denoise:filter_time_us=10000``) and record in the store's
attributes; `apply_transforms` runs a list of them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np

from spikedata.errors import SpikedataError
from spikedata.io.event_types import EVENT_DTYPE


class EventsOutsideSensor(SpikedataError, ValueError):
    """Events lie outside the declared sensor; the message gives counts and the observed extent."""


def _as_events(events: np.ndarray) -> np.ndarray:
    if events.dtype != EVENT_DTYPE:
        if events.dtype.names is None or not {"t", "x", "y", "p"} <= set(events.dtype.names):
            raise TypeError(f"events must be a structured array with fields t, x, y, p; got dtype {events.dtype}")
        out = np.empty(events.shape[0], dtype=EVENT_DTYPE)
        for name in "txyp":
            out[name] = events[name]
        return out
    return events


def _grid(events: np.ndarray) -> tuple[int, int]:
    """(width, height) that holds every event (tonic sizes its pixel memories the same way)."""
    if not len(events):
        return 1, 1
    if events["x"].min() < 0 or events["y"].min() < 0:
        raise EventsOutsideSensor(
            f"{int(np.count_nonzero((events['x'] < 0) | (events['y'] < 0)))} event(s) have negative coordinates"
        )
    return int(events["x"].max()) + 1, int(events["y"].max()) + 1


# --------------------------------------------------------------------------------------------------------------
# Record kernels
#
# The kernels of this module take and write whole records, field by field (numba indexes strided field views
# separately, which is about twice as slow). Those that select write every record and advance the output position
# by the keep condition instead of branching on it: the kept/dropped pattern of real recordings is close to
# random, and a branch per event costs more than the copy, so their output buffer holds one spare record, which
# the returned view leaves out. numpy's boolean indexing and copies of the packed 13-byte records are 10-20x
# slower than these loops.


@numba.njit(cache=True)
def _select_kernel(events, keep, out):  # pragma: no cover - numba
    k = 0
    for i in range(events.shape[0]):
        out[k].t = events[i].t
        out[k].x = events[i].x
        out[k].y = events[i].y
        out[k].p = events[i].p
        k += keep[i]
    return k


def select_events(events: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """`events[keep]` for a bool mask `keep` `[n]`, in file order, in one pass (numba): the selection every filter
    of this module ends with."""
    out = np.empty(int(np.count_nonzero(keep)) + 1, dtype=EVENT_DTYPE)
    return out[: _select_kernel(events, keep, out)]


# --------------------------------------------------------------------------------------------------------------
# Filters


@numba.njit(cache=True)
def _denoise_kernel(events, width, height, filter_time):  # pragma: no cover - numba
    memory = np.full((width, height), np.float64(filter_time))
    keep = np.zeros(events.shape[0], np.bool_)
    for i in range(events.shape[0]):
        xi = np.int64(events[i].x)
        yi = np.int64(events[i].y)
        ti = np.float64(events[i].t)
        memory[xi, yi] = ti + filter_time
        if (
            (xi > 0 and memory[xi - 1, yi] > ti)
            or (xi < width - 1 and memory[xi + 1, yi] > ti)
            or (yi > 0 and memory[xi, yi - 1] > ti)
            or (yi < height - 1 and memory[xi, yi + 1] > ti)
        ):
            keep[i] = True
    return keep


def denoise(events: np.ndarray, filter_time_us: float) -> np.ndarray:
    """Events [n] that have a 4-neighbour event less than `filter_time_us` µs before them (tonic's semantics)."""
    events = _as_events(events)
    if filter_time_us <= 0:
        raise ValueError(f"filter_time_us must be positive, got {filter_time_us}")
    if not len(events):
        return events.copy()
    w, h = _grid(events)
    return select_events(events, _denoise_kernel(events, w, h, float(filter_time_us)))


@numba.njit(cache=True)
def _refractory_kernel(events, width, height, period):  # pragma: no cover - numba
    memory = np.full((width, height), -np.float64(period))
    keep = np.zeros(events.shape[0], np.bool_)
    for i in range(events.shape[0]):
        ti = np.float64(events[i].t)
        xi = np.int64(events[i].x)
        yi = np.int64(events[i].y)
        if ti - memory[xi, yi] > period:
            keep[i] = True
        memory[xi, yi] = ti
    return keep


def refractory_period(events: np.ndarray, refractory_us: float) -> np.ndarray:
    """Events [n] without those that follow the same pixel's previous event by <= `refractory_us` µs."""
    events = _as_events(events)
    if refractory_us < 0:
        raise ValueError(f"refractory_us must be >= 0, got {refractory_us}")
    if not len(events):
        return events.copy()
    w, h = _grid(events)
    return select_events(events, _refractory_kernel(events, w, h, float(refractory_us)))


# --------------------------------------------------------------------------------------------------------------
# Geometry


@numba.njit(cache=True, inline="always")
def _in_box(x, y, x0, y0, width, height):  # pragma: no cover - numba
    # 0 <= x - x0 < width as one unsigned comparison (width > 0), and `&` rather than `and`: no branches
    return (np.uint64(np.int64(x) - x0) < np.uint64(width)) & (np.uint64(np.int64(y) - y0) < np.uint64(height))


@numba.njit(cache=True)
def _count_in_box(events, x0, y0, width, height):  # pragma: no cover - numba
    k = 0
    for i in range(events.shape[0]):
        k += _in_box(events[i].x, events[i].y, x0, y0, width, height)
    return k


@numba.njit(cache=True)
def _box_kernel(events, x0, y0, width, height, dx, dy, out):  # pragma: no cover - numba
    k = 0
    for i in range(events.shape[0]):
        x = np.int64(events[i].x)
        y = np.int64(events[i].y)
        out[k].t = events[i].t
        out[k].x = x - dx
        out[k].y = y - dy
        out[k].p = events[i].p
        k += _in_box(x, y, x0, y0, width, height)
    return k


def _box(events: np.ndarray, x0: int, y0: int, width: int, height: int, dx: int, dy: int) -> np.ndarray:
    """Events inside [x0, x0 + width) x [y0, y0 + height), moved by (-dx, -dy)."""
    if width <= 0 or height <= 0:
        raise ValueError(f"crop width and height must be positive, got {width} x {height}")
    events = _as_events(events)
    out = np.empty(_count_in_box(events, x0, y0, width, height) + 1, dtype=EVENT_DTYPE)
    return out[: _box_kernel(events, x0, y0, width, height, dx, dy, out)]


def crop(events: np.ndarray, x0: int, y0: int, width: int, height: int) -> np.ndarray:
    """Events inside the box [x0, x0 + width) x [y0, y0 + height), shifted so that the box starts at (0, 0)."""
    return _box(events, x0, y0, width, height, x0, y0)


def center_crop(events: np.ndarray, sensor_size: tuple[int, int], size: int | tuple[int, int]) -> np.ndarray:
    """The centred `size` (width, height) box of a `sensor_size` sensor (tonic's `CenterCrop`: offset
    ``(W - w) // 2``; a box larger than the sensor keeps every event and shifts them by the negative offset)."""
    w, h = (size, size) if isinstance(size, int) else size
    ox, oy = (sensor_size[0] - w) // 2, (sensor_size[1] - h) // 2
    return _box(events, max(ox, 0), max(oy, 0), w, h, ox, oy)


@numba.njit(cache=True, inline="always")
def _floor_div(v, f, shift):  # pragma: no cover - numba
    # a power-of-two factor is an arithmetic shift (floor for negatives too); otherwise the floor of the float64
    # quotient, which is the integer floor quotient for |v| < 2**15 and 1 <= f <= 2**16 and several times faster
    # than an integer division
    return np.int64(v) >> shift if shift >= 0 else np.int64(np.floor(v / f))


@numba.njit(cache=True)
def _downsample_kernel(events, fx, sx, fy, sy, out):  # pragma: no cover - numba
    for i in range(events.shape[0]):
        out[i].t = events[i].t
        out[i].x = _floor_div(events[i].x, fx, sx)
        out[i].y = _floor_div(events[i].y, fy, sy)
        out[i].p = events[i].p


@numba.njit(cache=True)
def _flip_kernel(events, width, height, out):  # pragma: no cover - numba
    # mirrors x in `width` when width > 0, y in `height` when height > 0
    for i in range(events.shape[0]):
        x = events[i].x
        y = events[i].y
        out[i].t = events[i].t
        out[i].x = width - 1 - x if width > 0 else x
        out[i].y = height - 1 - y if height > 0 else y
        out[i].p = events[i].p


def downsample(events: np.ndarray, factor: int | tuple[int, int]) -> np.ndarray:
    """Events with x //= fx, y //= fy (integer factors >= 1); none is dropped or merged."""
    fx, fy = (factor, factor) if isinstance(factor, int) else factor
    if fx < 1 or fy < 1 or int(fx) != fx or int(fy) != fy:
        raise ValueError(f"downsample factors must be integers >= 1, got {factor}")
    events = _as_events(events)
    out = np.empty_like(events)
    # int16 coordinates: any factor above 2**16 gives the same quotients as 2**16
    fx, fy = min(int(fx), 1 << 16), min(int(fy), 1 << 16)
    shift = [f.bit_length() - 1 if f & (f - 1) == 0 else -1 for f in (fx, fy)]
    _downsample_kernel(events, float(fx), shift[0], float(fy), shift[1], out)
    return out


def _flip(events: np.ndarray, width: int, height: int) -> np.ndarray:
    events = _as_events(events)
    out = np.empty_like(events)
    _flip_kernel(events, width, height, out)
    return out


def flip_x(events: np.ndarray, sensor_size: tuple[int, int]) -> np.ndarray:
    """Events mirrored left-right: x -> width - 1 - x."""
    return _flip(events, _positive(sensor_size[0], "sensor width"), 0)


def flip_y(events: np.ndarray, sensor_size: tuple[int, int]) -> np.ndarray:
    """Events mirrored top-bottom: y -> height - 1 - y."""
    return _flip(events, 0, _positive(sensor_size[1], "sensor height"))


def _positive(value: int, what: str) -> int:
    if int(value) < 1:
        raise ValueError(f"{what} must be >= 1, got {value}")
    return int(value)


# --------------------------------------------------------------------------------------------------------------
# Augmentation (seeded)


@numba.njit(cache=True)
def _floyd_keep(n, uniforms):  # pragma: no cover - numba
    # Floyd's sampling: a uniformly random k-subset of range(n) from k draws (k = len(uniforms)), marked False
    keep = np.ones(n, np.bool_)
    k = uniforms.shape[0]
    for step in range(k):
        j = n - k + step
        t = min(np.int64(uniforms[step] * (j + 1)), j)
        if keep[t]:
            keep[t] = False
        else:
            keep[j] = False
    return keep


def drop_event(events: np.ndarray, probability: float, seed: int | np.random.Generator) -> np.ndarray:
    """Events without round(probability * n) of them, chosen uniformly without replacement; order kept."""
    events = _as_events(events)
    if not 0 <= probability <= 1:
        raise ValueError(f"drop probability must be in [0, 1], got {probability}")
    n = events.shape[0]
    uniforms = np.random.default_rng(seed).random(int(probability * n + 0.5))
    return select_events(events, _floyd_keep(n, uniforms))


@numba.njit(cache=True)
def _shift_times_kernel(events, shift, out):  # pragma: no cover - numba
    for i in range(events.shape[0]):
        out[i].t = np.int64(np.rint(events[i].t + shift[i]))
        out[i].x = events[i].x
        out[i].y = events[i].y
        out[i].p = events[i].p


def time_jitter(
    events: np.ndarray,
    std_us: float,
    seed: int | np.random.Generator,
    clip_negative: bool = False,
    sort_timestamps: bool = False,
) -> np.ndarray:
    """Events with N(0, std_us) µs added to each time (rounded to whole µs); `clip_negative` drops times < 0,
    `sort_timestamps` re-sorts by time (stable)."""
    events = _as_events(events)
    rng = np.random.default_rng(seed)
    out = np.empty_like(events)
    _shift_times_kernel(events, rng.normal(0.0, std_us, events.shape[0]), out)
    if clip_negative:
        out = select_events(out, out["t"] >= 0)
    if sort_timestamps:
        out = out[np.argsort(out["t"], kind="stable")]
    return out


# --------------------------------------------------------------------------------------------------------------
# The sensor


def extent(events: np.ndarray) -> str:
    """'x a..b, y c..d' of the events ('no events' when empty)."""
    if not len(events):
        return "no events"
    return (f"x {int(events['x'].min())}..{int(events['x'].max())}, "
            f"y {int(events['y'].min())}..{int(events['y'].max())}")  # fmt: skip


def outside_mask(events: np.ndarray, sensor_size: tuple[int, int]) -> np.ndarray:
    w, h = sensor_size
    x, y = events["x"], events["y"]
    return (x < 0) | (x >= w) | (y < 0) | (y >= h)


def check_inside(events: np.ndarray, sensor_size: tuple[int, int], where: str = "events") -> None:
    """Raise `EventsOutsideSensor` when any event lies outside the (width, height) sensor."""
    bad = outside_mask(events, sensor_size)
    n_bad = int(np.count_nonzero(bad))
    if n_bad:
        w, h = sensor_size
        raise EventsOutsideSensor(
            f"{where}: {n_bad} of {len(events)} events lie outside the declared {w} x {h} sensor (observed extent "
            f"{extent(events)}); declare the right sensor size, or drop them explicitly (--drop-outside)"
        )


def drop_outside(events: np.ndarray, sensor_size: tuple[int, int]) -> tuple[np.ndarray, int]:
    """(events inside the (width, height) sensor, how many were dropped)."""
    bad = outside_mask(events, sensor_size)
    n_bad = int(np.count_nonzero(bad))
    return (events[~bad] if n_bad else events), n_bad


# --------------------------------------------------------------------------------------------------------------
# Specs: transforms by name, as the command line and the store attributes name them

#: name -> (function, parameter names in order, parameters that need the sensor size, seeded)
_REGISTRY: dict[str, tuple[Any, tuple[str, ...], bool, bool]] = {
    "denoise": (denoise, ("filter_time_us",), False, False),
    "refractory_period": (refractory_period, ("refractory_us",), False, False),
    "crop": (crop, ("x0", "y0", "width", "height"), False, False),
    "center_crop": (center_crop, ("width", "height"), True, False),
    "downsample": (downsample, ("factor",), False, False),
    "flip_x": (flip_x, (), True, False),
    "flip_y": (flip_y, (), True, False),
    "drop_event": (drop_event, ("probability",), False, True),
    "time_jitter": (time_jitter, ("std_us",), False, True),
}
TRANSFORMS = tuple(_REGISTRY)


@dataclass(frozen=True)
class TransformSpec:
    """One transform by name with its parameters, e.g. ``TransformSpec("denoise", {"filter_time_us": 10000})``."""

    name: str
    params: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in _REGISTRY:
            raise ValueError(f"unknown transform {self.name!r}; known: {', '.join(TRANSFORMS)}")
        wanted = _REGISTRY[self.name][1]
        if set(self.params) != set(wanted):
            raise ValueError(f"transform {self.name!r} takes {', '.join(wanted) or 'no parameters'}; got "
                             f"{', '.join(self.params) or 'none'}")  # fmt: skip

    @classmethod
    def parse(cls, text: str) -> TransformSpec:
        """From ``name`` or ``name:key=value,key=value`` (values are numbers)."""
        name, _, rest = text.strip().partition(":")
        params: dict[str, float] = {}
        for item in filter(None, (s.strip() for s in rest.split(","))):
            key, eq, value = item.partition("=")
            if not eq:
                raise ValueError(f"transform {text!r}: expected key=value, got {item!r}")
            try:
                number = float(value)
            except ValueError:
                raise ValueError(f"transform {text!r}: {key} must be a number, got {value!r}") from None
            params[key.strip()] = int(number) if number.is_integer() else number
        return cls(name.strip(), params)

    def output_size(self, sensor_size: tuple[int, int]) -> tuple[int, int]:
        """Sensor (width, height) after this transform."""
        p = self.params
        if self.name in ("crop", "center_crop"):
            return int(p["width"]), int(p["height"])
        if self.name == "downsample":
            f = int(p["factor"])
            return math.ceil(sensor_size[0] / f), math.ceil(sensor_size[1] / f)
        return sensor_size

    def apply(self, events: np.ndarray, sensor_size: tuple[int, int], seed: int | None = None) -> np.ndarray:
        fn, names, needs_size, seeded = _REGISTRY[self.name]
        args = [self.params[k] for k in names]
        if self.name == "center_crop":
            return center_crop(events, sensor_size, (int(args[0]), int(args[1])))
        if self.name in ("crop", "downsample"):
            args = [int(a) for a in args]
        if needs_size:
            return fn(events, sensor_size, *args)
        if seeded:
            return fn(events, *args, 0 if seed is None else seed)
        return fn(events, *args)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.params}


def apply_transforms(
    events: np.ndarray, specs: Sequence[TransformSpec], sensor_size: tuple[int, int], seed: int | None = None
) -> tuple[np.ndarray, tuple[int, int]]:
    """(events after every transform of `specs` in order, the sensor size after them). Seeded transforms draw
    from `np.random.default_rng([seed, k])` for the k-th transform, so a sample's result depends only on `seed`."""
    size = tuple(sensor_size)
    for k, spec in enumerate(specs):
        events = spec.apply(events, size, None if seed is None else np.random.default_rng([int(seed), k]))
        size = spec.output_size(size)
    return events, size
