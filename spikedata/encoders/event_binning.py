"""Bin camera events (`spikedata.io.events.EVENT_DTYPE`) into one spike train per pixel and polarity.

Mapping of one event (t µs, x, y, p), in this order:

1. optional N-MNIST saccade stabilisation (`stabilize`), exactly as the dataset authors' ``stabilize.m`` that the
   HM2-BP reference converter calls (algorithm.md §2.2), on 1-based coordinates in float64::

       t <= 105 ms:          x -= 3.5 t / 105e3            y -= 7 t / 105e3
       105 ms < t <= 210 ms: x -= 3.5 + 3.5 (t - 105e3) / 105e3   y += -7 + 7 (t - 105e3) / 105e3
       t > 210 ms:           x += -7 + 7 (t - 210e3) / 105e3      (y unchanged)

   then both rounded half away from zero (MATLAB's ``round``); t is the file's time stamp in µs;
2. optional crop ``(x0, y0, width, height)``: x -= x0, y -= y0, events outside the box are dropped
   (without a crop the box is the sensor: events outside it, e.g. moved out by stabilisation, are dropped);
3. optional spatial downsampling by integer factors (fx, fy): x //= fx, y //= fy;
4. time step ``s = floor((t - t_start) / dt_us)`` (``rounding="floor"``) or ``ceil(...)`` (``"ceil"``), plus
   `time_shift`; events with s < 0 or s >= n_steps are dropped;
5. unit: ``p * H * W + y * W + x`` (``unit_order="pyx"``: unit_shape (C, H, W), polarity x height x width) or
   ``p * W * H + x * H + y`` (``"pxy"``: unit_shape (C, W, H), the reference converter's channel order); with
   ``polarity="merge"`` both polarities share one channel (C = 1), else C = 2 (0 = OFF, 1 = ON);
6. several events of one unit in one step collapse to one spike; their number is reported (`n_collapsed`).

The HM2-BP reference conversion of N-MNIST (``NMNIST_Converter('Train', 1, 600)`` followed by the C++ reader's
+1 shift and ``t + 1 >= END_TIME`` cut, algorithm.md §2.2) is `spikedata.datasets.nmnist.NMNIST_REFERENCE`:
stabilise, 34 x 34 box, step ``ceil(t / 600) + 1`` kept when < 540, reference channel ``c`` (1-based) = unit + 1
with ``unit_order="pxy"``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, NamedTuple

import numba
import numpy as np

ROUNDINGS = ("floor", "ceil")
UNIT_ORDERS = ("pyx", "pxy")
POLARITY_MODES = ("split", "merge")


@dataclass(frozen=True)
class BinningOptions:
    """Parameters of `bin_events` (see the module docstring for their exact meaning).

    `sensor_size` (width, height) px; `dt_us` bin width µs; `n_steps` steps kept; `t_start_us` origin of time in
    µs, or None for each sample's first event; `crop` (x0, y0, width, height) px; `downsample` factor (fx, fy).
    """

    sensor_size: tuple[int, int] = (34, 34)
    dt_us: int = 600
    n_steps: int = 540
    t_start_us: int | None = 0
    rounding: str = "floor"
    time_shift: int = 0
    stabilize: bool = False
    crop: tuple[int, int, int, int] | None = None
    downsample: tuple[int, int] = (1, 1)
    polarity: str = "split"
    unit_order: str = "pyx"

    def __post_init__(self) -> None:
        w, h = self.sensor_size
        if w <= 0 or h <= 0:
            raise ValueError(f"sensor_size must be positive (width, height), got {self.sensor_size}")
        if self.dt_us <= 0 or self.n_steps <= 0:
            raise ValueError(f"dt_us and n_steps must be positive, got {self.dt_us}, {self.n_steps}")
        if self.rounding not in ROUNDINGS:
            raise ValueError(f"rounding must be one of {ROUNDINGS}, got {self.rounding!r}")
        if self.unit_order not in UNIT_ORDERS:
            raise ValueError(f"unit_order must be one of {UNIT_ORDERS}, got {self.unit_order!r}")
        if self.polarity not in POLARITY_MODES:
            raise ValueError(f"polarity must be one of {POLARITY_MODES}, got {self.polarity!r}")
        if isinstance(self.downsample, int):
            object.__setattr__(self, "downsample", (self.downsample, self.downsample))
        fx, fy = self.downsample
        if fx < 1 or fy < 1:
            raise ValueError(f"downsample factors must be >= 1, got {self.downsample}")
        if self.crop is not None:
            x0, y0, cw, ch = self.crop
            if cw <= 0 or ch <= 0 or x0 < 0 or y0 < 0:
                raise ValueError(f"crop must be (x0 >= 0, y0 >= 0, width > 0, height > 0), got {self.crop}")

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(x0, y0, width, height) of the kept region before downsampling."""
        return self.crop if self.crop is not None else (0, 0, *self.sensor_size)

    @property
    def grid(self) -> tuple[int, int]:
        """(width, height) px after crop and downsampling."""
        _, _, cw, ch = self.box
        fx, fy = self.downsample
        return -(-cw // fx), -(-ch // fy)

    @property
    def channels(self) -> int:
        return 1 if self.polarity == "merge" else 2

    @property
    def unit_shape(self) -> tuple[int, int, int]:
        """(C, H, W) for unit_order 'pyx', (C, W, H) for 'pxy'."""
        w, h = self.grid
        return (self.channels, h, w) if self.unit_order == "pyx" else (self.channels, w, h)

    @property
    def n_units(self) -> int:
        return math.prod(self.unit_shape)

    def params(self) -> dict[str, Any]:
        """JSON-able parameters for the store's `encoder.params`."""
        d = asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


class BinnedEvents(NamedTuple):
    """Spikes of one sample sorted by (time, unit), at most one per (unit, step); counts of what was lost."""

    times: np.ndarray  # uint32 [k], steps
    units: np.ndarray  # uint32 [k], flat unit index
    n_collapsed: int  # events merged into an existing spike of the same (unit, step)
    n_dropped_time: int  # events outside [0, n_steps) steps
    n_dropped_space: int  # events outside the sensor / crop box (after stabilisation)


@numba.njit(cache=True)
def _round_half_away(v: float) -> int:  # pragma: no cover - numba
    a = abs(v)
    r = math.floor(a)
    if a - r >= 0.5:
        r += 1
    return int(r) if v >= 0 else -int(r)


@numba.njit(cache=True)
def _bin_kernel(t, x, y, p, t0, dt, ceil, shift, n_steps, stabilize, x0, y0, cw, ch, fx, fy, merge, pxy):
    n = t.shape[0]
    gw = (cw + fx - 1) // fx
    gh = (ch + fy - 1) // fy
    n_units = (1 if merge else 2) * gw * gh
    bits = _unit_bits(n_units)
    keys = np.empty(n, np.int64)
    k = 0
    drop_t = 0
    drop_s = 0
    last_s = -1
    steps_monotone = True
    for i in range(n):
        xi = np.int64(x[i])
        yi = np.int64(y[i])
        if stabilize:
            ts = float(t[i])
            xf = xi + 1.0
            yf = yi + 1.0
            if ts <= 105e3:
                xf = xf - 3.5 * ts / 105e3
                yf = yf - 7 * ts / 105e3
            elif ts <= 210e3:
                xf = xf - 3.5 - 3.5 * (ts - 105e3) / 105e3
                yf = yf - 7 + 7 * (ts - 105e3) / 105e3
            else:
                xf = xf - 7 + 7 * (ts - 210e3) / 105e3
            xi = _round_half_away(xf) - 1
            yi = _round_half_away(yf) - 1
        xi -= x0
        yi -= y0
        if xi < 0 or yi < 0 or xi >= cw or yi >= ch:
            drop_s += 1
            continue
        xi //= fx
        yi //= fy
        d = t[i] - t0
        s = -((-d) // dt) if ceil else d // dt
        s += shift
        if s < 0 or s >= n_steps:
            drop_t += 1
            continue
        if s < last_s:
            steps_monotone = False
        last_s = s
        c = 0 if merge else np.int64(p[i] != 0)
        if pxy:
            u = (c * gw + xi) * gh + yi
        else:
            u = (c * gh + yi) * gw + xi
        keys[k] = (s << bits) | u
        k += 1
    times, units, collapsed = _spikes_from_keys(keys[:k], steps_monotone, bits)
    return times, units, collapsed, drop_t, drop_s


@numba.njit(cache=True)
def _unit_bits(n_units):  # pragma: no cover - numba
    """Bits a unit index needs: keys are `step << bits | unit`, ordered as (step, unit), split without division."""
    bits = 0
    while (1 << bits) < n_units:
        bits += 1
    return bits


@numba.njit(cache=True)
def _spikes_from_keys(keys, steps_monotone, bits):  # pragma: no cover - numba
    """Keys `step << bits | unit` (sorted in place) -> sorted unique (times, units) uint32 and the number of
    keys that collapsed into an earlier equal one. `steps_monotone`: keys are already ordered by step."""
    k = keys.shape[0]
    if steps_monotone:
        # Recordings are time-ordered, so keys are already sorted by step and only the few events of one step
        # need ordering by unit: an insertion sort is linear here (a full sort was half the binning time).
        for i in range(1, k):
            key = keys[i]
            j = i - 1
            while j >= 0 and keys[j] > key:
                keys[j + 1] = keys[j]
                j -= 1
            keys[j + 1] = key
    else:
        keys.sort()
    m = 0
    for i in range(k):
        if i == 0 or keys[i] != keys[i - 1]:
            keys[m] = keys[i]
            m += 1
    times = np.empty(m, np.uint32)
    units = np.empty(m, np.uint32)
    mask = (1 << bits) - 1
    for i in range(m):
        times[i] = keys[i] >> bits
        units[i] = keys[i] & mask
    return times, units, k - m


def bin_events(events: np.ndarray, options: BinningOptions | None = None, **overrides: Any) -> BinnedEvents:
    """Spike train of one recording: events [n] (`EVENT_DTYPE`, any order) -> sorted (times, units) + counts.

    `options` (default `BinningOptions()`: 34 x 34 sensor, 600 µs bins, 540 steps) with any field overridden by
    keyword, e.g. ``bin_events(ev, sensor_size=(128, 128), dt_us=1000, n_steps=1500)``. Steps are `dt_us` µs;
    units follow ``options.unit_shape``.
    """
    opts = replace(options or BinningOptions(), **overrides) if overrides else (options or BinningOptions())
    x0, y0, cw, ch = opts.box
    fx, fy = opts.downsample
    t = np.ascontiguousarray(events["t"], dtype=np.int64)
    if opts.t_start_us is None:
        t0 = int(t.min()) if t.shape[0] else 0
    else:
        t0 = int(opts.t_start_us)
    times, units, collapsed, drop_t, drop_s = _bin_kernel(
        t, np.ascontiguousarray(events["x"]), np.ascontiguousarray(events["y"]), np.ascontiguousarray(events["p"]),
        t0, opts.dt_us, opts.rounding == "ceil", opts.time_shift, opts.n_steps, opts.stabilize,
        x0, y0, cw, ch, fx, fy, opts.polarity == "merge", opts.unit_order == "pxy",
    )  # fmt: skip
    return BinnedEvents(times, units, int(collapsed), int(drop_t), int(drop_s))


def spikes_to_dense(times: np.ndarray, units: np.ndarray, n_steps: int, n_units: int) -> np.ndarray:
    """Dense raster bool [n_steps, n_units] of one sample's (times, units)."""
    out = np.zeros((n_steps, n_units), dtype=bool)
    out[times, units] = True
    return out


# --------------------------------------------------------------------------------------------------------------
# Spike trains given as (time in seconds, unit): the Heidelberg datasets' cochlea spikes, many samples at once


class BinnedBlock(NamedTuple):
    """Spikes of k samples in CSR form (`indptr` [k + 1]; times in steps, units; sorted by (time, unit) within a
    sample, at most one per (unit, step)) and the counts of what binning merged or cut."""

    indptr: np.ndarray  # int64 [k + 1]
    times: np.ndarray  # uint32, steps
    units: np.ndarray  # uint32
    n_collapsed: int  # spikes merged into an existing spike of the same (unit, step)
    n_dropped_time: int  # spikes at steps >= n_steps
    n_truncated: int  # samples that lost at least one spike that way


_BAD_TIME_NAN, _BAD_TIME_NEGATIVE, _BAD_UNIT = 1, 2, 3


@numba.njit(cache=True)
def _bin_unit_block(indptr, t_s, units, n_units, dt_us, n_steps):  # pragma: no cover - numba
    n = indptr.shape[0] - 1
    total = t_s.shape[0]
    for e in range(total):  # validate everything first: a bad file must not produce a partial block
        t = t_s[e]
        if not np.isfinite(t):
            return None, None, None, 0, 0, 0, e, _BAD_TIME_NAN
        if t < 0:
            return None, None, None, 0, 0, 0, e, _BAD_TIME_NEGATIVE
        if units[e] < 0 or units[e] >= n_units:
            return None, None, None, 0, 0, 0, e, _BAD_UNIT
    out_t = np.empty(total, np.uint32)
    out_u = np.empty(total, np.uint32)
    out_ptr = np.zeros(n + 1, np.int64)
    collapsed = 0
    dropped = 0
    truncated = 0
    dt = float(dt_us)
    inv_dt = 1.0 / dt
    bits = _unit_bits(n_units)
    w = 0
    for i in range(n):
        lo, hi = indptr[i], indptr[i + 1]
        keys = np.empty(hi - lo, np.int64)
        k = 0
        last = -1
        monotone = True
        lost = 0
        for e in range(lo, hi):
            t_us = t_s[e] * 1e6
            q = t_us * inv_dt
            if q >= n_steps + 1:  # far beyond the last step (and beyond int64 for absurd times)
                lost += 1
                continue
            s = np.int64(q)  # t_us >= 0: truncation is floor, up to the rounding corrected next
            # exact floor of t_us / dt_us whatever the rounding of the product
            if s * dt > t_us:
                s -= 1
            elif (s + 1) * dt <= t_us:
                s += 1
            if s >= n_steps:
                lost += 1
                continue
            if s < last:
                monotone = False
            last = s
            keys[k] = (s << bits) | units[e]
            k += 1
        times, us, merged = _spikes_from_keys(keys[:k], monotone, bits)
        m = times.shape[0]
        out_t[w : w + m] = times
        out_u[w : w + m] = us
        w += m
        out_ptr[i + 1] = w
        collapsed += merged
        dropped += lost
        truncated += lost > 0
    return out_ptr, out_t[:w], out_u[:w], collapsed, dropped, truncated, -1, 0


def bin_unit_events(indptr: np.ndarray, times_s: np.ndarray, units: np.ndarray, n_units: int, dt_us: float,
                    n_steps: int) -> BinnedBlock:
    """Bin k samples of (time, unit) spikes given in CSR form: sample i's spikes are [indptr[i], indptr[i+1]) of
    `times_s` (seconds, any order) and `units` (0 <= unit < n_units).

    A spike at t s goes to step ``floor(t * 1e6 / dt_us)`` (exactly, on the float64 value t * 1e6 µs; time 0 is
    the recording's start); steps >= `n_steps` are dropped (counted, per spike and per sample); several spikes of
    one unit in one step collapse to one (counted). Raises ValueError naming the sample and spike for a time that
    is negative or not finite, or a unit outside [0, n_units).
    """
    indptr = np.ascontiguousarray(indptr, dtype=np.int64)
    t = np.ascontiguousarray(times_s, dtype=np.float64)
    u = np.ascontiguousarray(units, dtype=np.int64)
    if t.shape != u.shape or indptr[0] != 0 or indptr[-1] != t.shape[0] or np.any(np.diff(indptr) < 0):
        raise ValueError(f"inconsistent CSR block: indptr {indptr[:1]}..{indptr[-1:]}, {t.shape[0]} times, "
                         f"{u.shape[0]} units")
    ptr, times, us, collapsed, dropped, truncated, bad, kind = _bin_unit_block(
        indptr, t, u, int(n_units), float(dt_us), int(n_steps))
    if bad >= 0:
        sample = int(np.searchsorted(indptr, bad, side="right")) - 1
        where = f"sample {sample}, spike {bad - int(indptr[sample])}"
        if kind == _BAD_UNIT:
            raise ValueError(f"{where}: unit {int(u[bad])} outside [0, {n_units})")
        state = "not finite" if kind == _BAD_TIME_NAN else "negative"
        raise ValueError(f"{where}: time {float(t[bad])!r} s is {state}")
    return BinnedBlock(ptr, times, us, int(collapsed), int(dropped), int(truncated))
