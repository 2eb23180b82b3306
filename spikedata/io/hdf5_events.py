"""HDF5 event files, in the layouts in use:

* **Prophesee / Metavision** (``.hdf5``): ``/CD/events``, a compound dataset (x uint16, y uint16, p int16,
  t int64 µs) in chunks compressed with Prophesee's ECF filter (id 36559), ``/CD/indexes`` (a time index, not
  needed to read everything), ``/EXT_TRIGGER/events`` (counted as skipped), file attributes ``geometry``
  (``"1280x720"``), ``format``, ``version``. ECF chunks are decoded here (`spikedata.io.ecf`) from the raw
  chunks, so no HDF5 filter plugin is needed; a ``/CD/events`` dataset without the filter is read by h5py.
* **Column layout** of DSEC, evlib and others: one 1-d dataset per field in a group ``events`` (or the file's
  root): time ``t`` / ``ts`` / ``timestamps``, ``x`` / ``xs``, ``y`` / ``ys``, polarity ``p`` / ``ps`` /
  ``polarity``. Integer time is µs; floating-point time is seconds (evlib writes ``ts`` in float64 seconds; it
  reads its own files back truncated to whole µs of the seconds value, a quirk we do not copy). DSEC adds
  ``ms_to_idx`` (index of the first event of each millisecond: checked against the time stamps) and ``t_offset``
  (µs added to every ``t``: the returned times are absolute). Polarity 1 = ON, 0 or -1 = OFF. DSEC compresses
  with Blosc through ``hdf5plugin``: it is imported when a dataset needs a filter h5py lacks (install
  ``hdf5plugin`` to read DSEC; the error says so).

Sensor size: the ``geometry`` attribute (Prophesee), else ``width`` / ``height`` or ``sensor_size`` attributes of
the file or group, else the caller's. The events then go through `spikedata.io.validate.check_events`. Columns are
read slice by slice straight into the event records (one slice of each column at a time besides the events), and
ECF chunks straight from the file's bytes.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from spikedata.io import ecf
from spikedata.io.event_types import EVENT_DTYPE, EventFileError, EventFileInfo, skipped_info
from spikedata.io.validate import check_events, check_sensor_size

FORMAT = "hdf5"
MAGIC = b"\x89HDF\r\n\x1a\n"
_COLUMNS = {"t": ("t", "ts", "timestamps", "timestamp", "time"), "x": ("x", "xs"), "y": ("y", "ys"),
            "p": ("p", "ps", "polarity", "polarities", "pol")}  # fmt: skip
#: Events per slice when copying columns into the records.
SLICE = 1 << 20


def _open(data, path):
    import h5py

    p = Path(str(path))
    try:
        if p.is_file() and p.stat().st_size == len(data):
            return h5py.File(p, "r")
        return h5py.File(io.BytesIO(bytes(data)), "r")
    except (OSError, ValueError) as exc:
        raise EventFileError(path, FORMAT, None, f"not a readable HDF5 file ({exc})") from None


def _text(value) -> str:
    if isinstance(value, bytes | np.bytes_):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray) and value.size == 1:
        return _text(value.reshape(-1)[0])
    return str(value)


def _stated_size(*nodes) -> tuple[int, int] | None:
    for node in nodes:
        attrs = node.attrs
        if "geometry" in attrs:
            w, _, h = _text(attrs["geometry"]).lower().partition("x")
            if w.strip().isdigit() and h.strip().isdigit():
                return int(w), int(h)
        if "width" in attrs and "height" in attrs:
            return int(np.asarray(attrs["width"]).reshape(-1)[0]), int(np.asarray(attrs["height"]).reshape(-1)[0])
        if "sensor_size" in attrs:
            size = np.asarray(attrs["sensor_size"]).reshape(-1)
            if size.size >= 2:
                return int(size[0]), int(size[1])
    return None


def _guard(path, what: str, fn):
    """Run an h5py read; HDF5 errors (a damaged file, a filter h5py lacks) become EventFileError."""
    try:
        return fn()
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        message = str(exc)
        if "filter" in message.lower() or "can't synchronously read" in message.lower():
            try:
                import hdf5plugin  # noqa: F401 - registers Blosc, LZ4, Zstd, ... (DSEC uses Blosc)

                return fn()
            except ImportError:
                message += "; install hdf5plugin (DSEC compresses with Blosc)"
            except (OSError, ValueError, KeyError, TypeError, RuntimeError) as again:
                message = str(again)
        raise EventFileError(path, FORMAT, None, f"{what}: {message}") from None


def _prophesee(f, data, path) -> tuple[np.ndarray, dict[str, int]]:
    ds = f["CD"]["events"]
    names = ds.dtype.names or ()
    if ds.ndim != 1 or not {"x", "y", "p", "t"} <= set(names):
        raise EventFileError(path, FORMAT, None, f"/CD/events has shape {ds.shape} and fields {names}, not the "
                             "CD event layout (x, y, p, t)")
    n = ds.shape[0]
    events = np.empty(n, EVENT_DTYPE)
    plist = ds.id.get_create_plist()
    filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
    if ecf.FILTER_ID in filters:
        _ecf_chunks(ds, data, path, events)
    else:
        for a in range(0, n, SLICE):
            block = _guard(path, "/CD/events", lambda a=a: ds[a : a + SLICE])
            for k in "txyp":
                events[k][a : a + len(block)] = block[k]
    skipped = {}
    if "EXT_TRIGGER" in f and "events" in f["EXT_TRIGGER"]:
        skipped["ext_trigger"] = int(f["EXT_TRIGGER"]["events"].shape[0])
    return events, skipped


def _ecf_chunks(ds, data, path, events) -> None:
    """Decode the ECF chunks of /CD/events from the file's bytes (chunk index from h5py)."""
    n = ds.shape[0]
    chunk = ds.chunks[0] if ds.chunks else 0
    if not chunk or chunk > ecf.MAX_CHUNK_EVENTS or 16 * n > 16 * chunk * max(1, ds.id.get_num_chunks()):
        raise EventFileError(path, FORMAT, None, f"/CD/events: chunks of {ds.chunks} events do not hold its {n} "
                             f"events (ECF chunks hold at most {ecf.MAX_CHUNK_EVENTS})")
    infos = []
    _guard(path, "/CD/events chunk index", lambda: ds.id.chunk_iter(infos.append))
    infos.sort(key=lambda c: c.chunk_offset[0])
    starts = np.array([c.chunk_offset[0] for c in infos], np.int64)
    if len(infos) != -(-n // chunk) or not np.array_equal(starts, np.arange(len(infos)) * chunk):
        raise EventFileError(path, FORMAT, None, f"/CD/events: {len(infos)} chunks stored for {n} events in chunks "
                             f"of {chunk} (missing or misplaced chunks)")
    offsets = np.array([c.byte_offset for c in infos], np.int64)
    sizes = np.array([c.size for c in infos], np.int64)
    if len(infos) and (offsets.min() < 0 or (offsets + sizes).max() > len(data)):
        raise EventFileError(path, FORMAT, None, "/CD/events: a chunk lies outside the file (truncated file)")
    counts = np.minimum(chunk, n - starts)
    raw = np.array([c.filter_mask & 1 for c in infos], np.bool_)
    buf = np.frombuffer(data, np.uint8)
    k, err, where = ecf.decode_chunks(buf, offsets, sizes, counts, raw, events)
    if k >= 0:
        raise EventFileError(path, FORMAT, int(where), f"/CD/events: ECF chunk {int(k)} (events {int(starts[k])}.."
                             f"{int(starts[k] + counts[k]) - 1}) is damaged: {ecf.ERRORS[int(err)]}")


def _column_group(f):
    """(group, {field: dataset}) of the column layout, or None."""
    for group in (f.get("events"), f):
        if group is None or not hasattr(group, "keys"):
            continue
        found = {}
        for field, names in _COLUMNS.items():
            for name in names:
                if name in group and hasattr(group[name], "shape"):
                    found[field] = group[name]
                    break
        if len(found) == 4:
            return group, found
    return None


def _extra(f, group, name: str):
    """A DSEC extra (`t_offset`, `ms_to_idx`): beside the columns or at the file's root (where DSEC puts them)."""
    for node in (group, f):
        if name in node and hasattr(node[name], "shape"):
            return node[name]
    return None


def _columns(f, group, cols, path) -> np.ndarray:
    n = cols["t"].shape[0]
    for k, ds in cols.items():
        if ds.ndim != 1 or ds.shape[0] != n:
            raise EventFileError(path, FORMAT, None, f"{ds.name}: shape {ds.shape}, expected ({n},) like "
                                 f"{cols['t'].name}")
        if ds.dtype.kind not in "iuf" + ("b" if k == "p" else ""):
            raise EventFileError(path, FORMAT, None, f"{ds.name}: dtype {ds.dtype} is not numeric")
    seconds = cols["t"].dtype.kind == "f"
    t_offset = _extra(f, group, "t_offset")
    offset = int(np.asarray(t_offset).reshape(-1)[0]) if t_offset is not None else 0
    events = np.empty(n, EVENT_DTYPE)
    for a in range(0, n, SLICE):
        b = min(n, a + SLICE)
        for k, ds in cols.items():
            block = _guard(path, ds.name, lambda ds=ds, a=a, b=b: ds[a:b])
            if k == "t":
                block = np.rint(block * 1e6).astype(np.int64) if seconds else block.astype(np.int64)
                block += offset
            elif k == "p":
                block = (np.asarray(block) > 0).astype(np.int8) if block.dtype.kind == "i" else block
            elif block.dtype.kind == "f":
                if not np.all(block == np.floor(block)):
                    raise EventFileError(path, FORMAT, None, f"{ds.name}: non-integer coordinates")
            events[k][a:b] = block
    ms_to_idx = _extra(f, group, "ms_to_idx")
    if ms_to_idx is not None:
        _check_ms_index(ms_to_idx, events["t"] - offset, path)
    return events


def _check_ms_index(ds, t, path) -> None:
    """DSEC's ms_to_idx[k] is the index of the first event at or after k ms (from t_offset)."""
    idx = _guard(path, ds.name, lambda: np.asarray(ds[:], np.int64))
    if idx.ndim != 1 or (idx.size and (idx.min() < 0 or idx.max() > t.shape[0])):
        raise EventFileError(path, FORMAT, None, f"{ds.name}: indices outside the {t.shape[0]} events")
    expect = np.searchsorted(t, np.arange(idx.size, dtype=np.int64) * 1000, side="left")
    bad = np.flatnonzero(idx != expect)
    if bad.size:
        k = int(bad[0])
        raise EventFileError(path, FORMAT, None, f"{ds.name}[{k}] = {int(idx[k])}, but the first event at or after "
                             f"{k} ms is event {int(expect[k])}: the index and the time stamps disagree")


def read_hdf5_events(data, path: str | os.PathLike = "<bytes>",
                     sensor_size: tuple[int, int] | None = None) -> tuple[np.ndarray, EventFileInfo]:
    """Events of an HDF5 event file's bytes (layouts in the module docstring) and its info; `sensor_size` bounds
    x, y when the file states no size."""
    try:
        return _read(data, path, sensor_size)
    except EventFileError:
        raise
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, AttributeError) as exc:
        # libhdf5 reports damaged object headers, links and messages from wherever it meets them
        raise EventFileError(path, FORMAT, None, f"damaged HDF5 file: {type(exc).__name__}: {exc}") from None


def _read(data, path, sensor_size) -> tuple[np.ndarray, EventFileInfo]:
    with _open(data, path) as f:
        cd = f.get("CD")
        if cd is not None and hasattr(cd, "keys") and "events" in cd:
            events, skipped = _prophesee(f, data, path)
            layout, stated = "prophesee", _stated_size(f, cd)
        else:
            found = _column_group(f)
            if found is None:
                names = sorted(f.keys())[:12]
                raise EventFileError(path, FORMAT, None, f"no event layout found (top-level names {names}); read: "
                                     "/CD/events (Prophesee), events/{t,x,y,p} (DSEC, evlib) or t, x, y, p at the "
                                     "root")
            group, cols = found
            events, skipped = _columns(f, group, cols, path), {}
            layout = "dsec" if _extra(f, group, "ms_to_idx") is not None else "columns"
            stated = _stated_size(f, group) if group is not f else _stated_size(f)
        attrs = {k: _text(v)[:200] for k, v in f.attrs.items()}
    if stated is not None:
        stated = check_sensor_size(stated, path, FORMAT)
    size = stated or (check_sensor_size(sensor_size, path, FORMAT) if sensor_size is not None else None)
    events, repairs = check_events(events, path, FORMAT, size)
    total, by_type = skipped_info(skipped)
    header = {"layout": layout, **attrs}
    return events, EventFileInfo(str(path), FORMAT, len(events), stated, total, by_type, None, layout, header, repairs)
