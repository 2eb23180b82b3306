"""Prophesee decoding and event transforms, side by side in one run (medians): ours vs expelliarmus and tonic.

Called by `bench_events.py` (`--formats`) and runnable alone:

    .venv/bin/python benchmarks/bench_event_formats.py [--repeats 31]

Large files of every format against every peer that reads it: `bench_event_readers.py`.

Decoding: the real EVT 3.0 / EVT 2.0 / DAT samples, file -> event array, `spikedata.read_events` vs
`expelliarmus.Wizard(encoding=...).read` (both include reading the file). Transforms: the real AEDAT 4 sample
(111,954 events) and the N-MNIST sample, ours (`spikedata.transforms`) vs tonic's functional / transform classes.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from sample_data import sample_path
from timing import median

from spikedata import transforms as T
from spikedata.io.events import read_events

DECODE = [("evt3", "dvs/prophesee_evt3_sample.raw"), ("evt2", "dvs/prophesee_evt2_sample.raw"),
          ("dat", "dvs/ncars_sample.dat")]  # fmt: skip


def decoding(repeats: int) -> list[tuple[str, float, float]]:
    from expelliarmus import Wizard

    rows = []
    for enc, rel in DECODE:
        path = str(sample_path(rel))
        wizard = Wizard(encoding=enc)
        n = len(read_events(path))
        assert len(wizard.read(path)) == n
        ours = median(lambda p=path: read_events(p), repeats)
        theirs = median(lambda p=path, w=wizard: w.read(p), repeats)
        rows.append((enc, n / ours, n / theirs))
    return rows


def _cases(ev: np.ndarray):
    """(name, ours, tonic) callables on one recording."""
    import tonic.functional as F
    import tonic.transforms as TT

    size = (int(ev["x"].max()) + 1, int(ev["y"].max()) + 1)
    half = (size[0] // 2, size[1] // 2)
    return [
        ("denoise 10 ms", lambda: T.denoise(ev, 10_000), lambda: F.denoise_numpy(ev, 10_000)),
        ("refractory 1 ms", lambda: T.refractory_period(ev, 1000), lambda: F.refractory_period_numpy(ev, 1000)),
        ("center crop", lambda: T.center_crop(ev, size, half),
         lambda: TT.CenterCrop(sensor_size=(*size, 2), size=half)(ev)),
        ("downsample /2", lambda: T.downsample(ev, 2), lambda: TT.Downsample(spatial_factor=0.5)(ev)),
        ("flip x", lambda: T.flip_x(ev, size), lambda: TT.RandomFlipLR(sensor_size=(*size, 2), p=1.0)(ev)),
        ("drop event 0.2", lambda: T.drop_event(ev, 0.2, 0), lambda: F.drop_event_numpy(ev, 0.2)),
        ("time jitter 100 µs", lambda: T.time_jitter(ev, 100.0, 0), lambda: F.time_jitter_numpy(ev.copy(), 100.0)),
    ]  # fmt: skip


def transforms(repeats: int) -> list[tuple[str, int, float, float]]:
    rows = []
    for rel in ("dvs/sample.aedat4", "nmnist/tonic_sample_nmnist.bin"):
        ev = read_events(sample_path(rel))
        for name, ours_fn, tonic_fn in _cases(ev):
            ours_fn()
            tonic_fn()
            # tonic's denoise / refractory loop over events in Python: 3 repeats on the large file are plenty
            reps = 3 if name.startswith(("denoise", "refractory")) and len(ev) > 10_000 else repeats
            rows.append((f"{name} ({rel.split('/')[-1]})", len(ev), median(ours_fn, reps), median(tonic_fn, reps)))
    return rows


def main(repeats: int = 31) -> None:
    print(f"Prophesee decoding, file -> events, median of {repeats}, {os.cpu_count()} CPUs, one run")
    try:
        for enc, ours, theirs in decoding(repeats):
            print(f"  {enc:5s} ours {ours / 1e6:7.1f} M events/s   expelliarmus {theirs / 1e6:7.1f} M events/s   "
                  f"ratio {ours / theirs:4.2f}x")  # fmt: skip
    except ImportError as exc:
        print(f"  expelliarmus not available ({exc})")
    print(f"Event transforms, median of {repeats} (3 for tonic's per-event Python loops on >10k events)")
    try:
        ratios = []
        for name, n, ours, theirs in transforms(repeats):
            ratios.append(theirs / ours)
            print(f"  {name:45s} {n:7d} events  ours {ours * 1e3:8.3f} ms  tonic {theirs * 1e3:9.3f} ms  "
                  f"{theirs / ours:7.1f}x")  # fmt: skip
        print(f"  smallest speed-up {min(ratios):.1f}x, geometric mean {np.exp(np.mean(np.log(ratios))):.1f}x")
    except ImportError as exc:
        print(f"  tonic not available ({exc})")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=31)
    main(ap.parse_args().repeats)
