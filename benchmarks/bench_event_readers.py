"""Event readers side by side on large files built from the real samples: ours vs every peer that reads the format
(benchmark-only dependencies: expelliarmus, evlib, faery, dv-processing, aedat), medians of interleaved runs.

    .venv/bin/python benchmarks/bench_event_readers.py [--events 50000000] [--text-events 20000000] [--repeats 5]
        [--formats dat,evt21,...] [--workdir DIR]

The files are written once into `--workdir` (default a temporary folder): the real sample's events tiled in time
up to `--events` events, re-encoded to each format (DAT and EVT 2.1 / text by the writers of this project's tests,
AEDAT 4 LZ4 / zstd by faery, Prophesee HDF5 with the ECF codec by the test encoder). Each contender reads the whole
file into an event array (ours: `spikedata.read_events`; peers: their documented call, their own dtype); counts
must agree. Ratio = peer time / our time (> 1: ours faster).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from sample_data import sample_path
from timing import side_by_side

from spikedata.io.event_types import EVENT_DTYPE
from spikedata.io.events import read_events

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def tiled(rel: str, n: int) -> np.ndarray:
    """The real sample's events repeated back to back in time up to n events (time-ordered, from the sample's
    first time stamp: evlib's ECF reader misreads chunks whose first stamp is below 2^18 µs)."""
    ev = read_events(sample_path(rel))
    ev = ev[np.lexsort((ev["x"], ev["p"], ev["y"], ev["t"]))]
    reps = -(-n // len(ev))
    span = int(ev["t"][-1] - ev["t"][0]) + 1
    out = np.empty(reps * len(ev), EVENT_DTYPE)
    for k in range(reps):
        part = out[k * len(ev) : (k + 1) * len(ev)]
        part[...] = ev
        part["t"] += k * span
    return out[:n]


def tiled_raw(fmt: str, n: int) -> bytes:
    """The real EVT 2.0 / 3.0 sample's words repeated until about n events, each copy's TIME_HIGH words moved on
    by the span of the sample (so time keeps increasing)."""
    data = sample_path(f"dvs/prophesee_{fmt}_sample.raw").read_bytes()
    pos = 0
    while data[pos : pos + 1] == b"%":
        pos = data.index(b"\n", pos) + 1
    per = len(read_events(sample_path(f"dvs/prophesee_{fmt}_sample.raw")))
    copies = -(-n // per)
    if fmt == "evt2":
        words = np.frombuffer(data[pos:], "<u4")
        high = (words >> 28) == 0x8
        first, last = int((words[high] & 0xFFFFFFF).min()), int((words[high] & 0xFFFFFFF).max())
        out = np.tile(words, copies)
        shift = np.repeat(np.arange(copies, dtype=np.uint32) * (last - first + 1), len(words))
    else:
        words = np.frombuffer(data[pos:], "<u2")
        high = (words >> 12) == 0x8
        first, last = int((words[high] & 0xFFF).min()), int((words[high] & 0xFFF).max())
        out = np.tile(words, copies)
        steps = np.arange(copies, dtype=np.int64) * (last - first + 1)
        shift = (np.repeat(steps, len(words)) % 4096).astype(np.uint16)
        h = (out >> 12) == 0x8
        out[h] = 0x8000 | ((out[h] & 0xFFF) + shift[h]) % 4096
        return data[:pos] + out.tobytes()
    h = (out >> 28) == 0x8
    out[h] = 0x80000000 | ((out[h] & 0xFFFFFFF) + shift[h])
    return data[:pos] + out.tobytes()


def build(fmt: str, n: int, folder: Path) -> Path:
    """Write the benchmark file of one format (once)."""
    from tests.spikedata.test_dat_cd import dat_cd_file
    from tests.spikedata.test_evt21 import evt21_file, evt21_words
    from tests.spikedata.test_hdf5_events import write_prophesee_hdf5

    path = folder / {"evt2": "big_evt2.raw", "evt3": "big_evt3.raw", "dat": "big.dat", "evt21": "big_evt21.raw",
                     "aedat4-lz4": "big_lz4.aedat4", "aedat4-zstd": "big_zstd.aedat4", "hdf5-ecf": "big_ecf.hdf5",
                     "csv": "big.csv", "txt": "big.txt"}[fmt]  # fmt: skip
    if path.exists():
        return path
    if fmt in ("evt2", "evt3"):
        path.write_bytes(tiled_raw(fmt, n))
    elif fmt == "dat":
        path.write_bytes(dat_cd_file(tiled("dvs/ncars_sample.dat", n), header=b"% Data file containing CD events.\n"
                                     b"% Version 2\n% Width 304\n% Height 240\n"))  # fmt: skip
    elif fmt == "evt21":
        path.write_bytes(evt21_file(evt21_words(tiled("dvs/prophesee_evt3_sample.raw", n))))
    elif fmt.startswith("aedat4"):
        import faery

        ev = tiled("dvs/sample.aedat4", n)
        src = np.zeros(n, faery.EVENTS_DTYPE)
        src["t"], src["x"], src["y"], src["on"] = ev["t"], ev["x"], ev["y"], ev["p"]
        faery.events_stream_from_array(src, (320, 240)).to_file(str(path), zero_t0=False,
                                                                compression=(fmt.split("-")[1], 1))
    elif fmt == "hdf5-ecf":
        # the packed ECF modes (vectorised in the test encoder); the masked mode's encoder loops per event
        write_prophesee_hdf5(path, tiled("dvs/prophesee_evt3_sample.raw", n), modes=("yxp", "xp"))
    else:
        ev = tiled("dvs/prophesee_evt2_sample.raw", n)
        with open(path, "w") as f:
            if fmt == "csv":
                f.write("t,x@640,y@480,on\n")
                np.savetxt(f, np.column_stack([ev["t"], ev["x"], ev["y"], ev["p"]]), fmt="%d", delimiter=",")
            else:
                f.write("# timestamp x y polarity\n")
                np.savetxt(f, np.column_stack([ev["t"] / 1e6, ev["x"], ev["y"], 2 * ev["p"].astype(int) - 1]),
                           fmt=["%.6f", "%d", "%d", "%d"])
    return path


def peers(fmt: str) -> dict:
    """name -> callable(path) returning the peer's events (its own array / frame)."""
    out = {}
    try:
        import evlib

        if fmt in ("evt2", "evt3", "evt21", "hdf5-ecf", "txt"):  # AEDAT 4: evlib is the slowest (1.4 M ev/s)
            out["evlib"] = lambda p: evlib.load_events(str(p), sort=False).collect()
    except ImportError:
        pass
    try:
        import faery

        if fmt in ("evt2", "evt3", "dat", "csv", "aedat4-lz4", "aedat4-zstd"):
            out["faery"] = lambda p: faery.events_stream_from_file(str(p)).to_array()
    except ImportError:
        pass
    try:
        from expelliarmus import Wizard

        if fmt in ("evt2", "evt3", "dat"):
            wizard = Wizard(encoding=fmt)
            out["expelliarmus"] = lambda p: wizard.read(str(p))
    except ImportError:
        pass
    if fmt.startswith("aedat4"):
        try:
            import dv_processing as dv

            def dv_read(p):
                rec = dv.io.MonoCameraRecording(str(p))
                parts = []
                while (batch := rec.getNextEventBatch()) is not None:
                    parts.append(batch.numpy())
                return np.concatenate(parts)

            out["dv-processing"] = dv_read
        except ImportError:
            pass
        try:
            import aedat

            out["aedat"] = lambda p: np.concatenate([pk["events"] for pk in aedat.Decoder(str(p)) if "events" in pk])
        except ImportError:
            pass
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=50_000_000)
    ap.add_argument("--text-events", type=int, default=20_000_000, help="events of the text / CSV files")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--formats", default="evt3,evt2,dat,evt21,aedat4-lz4,aedat4-zstd,hdf5-ecf,csv,txt")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    folder = args.workdir or Path(tempfile.mkdtemp(prefix="bench_readers_"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"{args.events:,} events per file, median of {args.repeats} interleaved runs, {os.cpu_count()} CPUs")
    print("| format | ours M ev/s | " + " | ".join(["peer", "peer M ev/s", "ratio (peer time / ours)"]) + " |")
    for fmt in args.formats.split(","):
        path = build(fmt, args.text_events if fmt in ("csv", "txt") else args.events, folder)
        n = len(read_events(path))
        fns = {"ours": lambda p=path: read_events(p)}
        for name, fn in peers(fmt).items():
            try:
                got = len(fn(path))
            except BaseException as exc:  # noqa: BLE001 - a peer that cannot read the file is reported, not fatal
                print(f"| {fmt} | | {name}: cannot read it ({type(exc).__name__}: {str(exc)[:80]}) | | |")
                continue
            if got != n:
                print(f"| {fmt} | | {name}: {got} events, ours {n} | | |")
                continue
            fns[name] = lambda p=path, f=fn: f(p)
        times = side_by_side(fns, args.repeats)
        for name, t in times.items():
            if name != "ours":
                print(f"| {fmt} | {n / times['ours'] / 1e6:.1f} | {name} | {n / t / 1e6:.1f} | "
                      f"{t / times['ours']:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
