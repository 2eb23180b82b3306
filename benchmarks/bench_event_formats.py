"""Prophesee decoding and event transforms, side by side in one run (medians): ours vs expelliarmus and tonic.

Called by `bench_events.py` (`--formats`) and runnable alone:

    .venv/bin/python benchmarks/bench_event_formats.py [--repeats 31]

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


def transforms(repeats: int) -> list[tuple[str, int, float, float]]:
    import tonic.functional as F
    import tonic.transforms as TT

    rows = []
    for rel in ("dvs/sample.aedat4", "nmnist/tonic_sample_nmnist.bin"):
        ev = read_events(sample_path(rel))
        size = (int(ev["x"].max()) + 1, int(ev["y"].max()) + 1)
        cw, ch = size[0] // 2, size[1] // 2
        cases = [
            ("denoise 10 ms", lambda e=ev: T.denoise(e, 10_000), lambda e=ev: F.denoise_numpy(e, 10_000)),
            ("refractory 1 ms", lambda e=ev: T.refractory_period(e, 1000),
             lambda e=ev: F.refractory_period_numpy(e, 1000)),
            ("center crop", lambda e=ev: T.center_crop(e, size, (cw, ch)),
             lambda e=ev: TT.CenterCrop(sensor_size=(*size, 2), size=(cw, ch))(e)),
            ("downsample /2", lambda e=ev: T.downsample(e, 2), lambda e=ev: TT.Downsample(spatial_factor=0.5)(e)),
            ("flip x", lambda e=ev: T.flip_x(e, size), lambda e=ev: TT.RandomFlipLR(sensor_size=(*size, 2), p=1.0)(e)),
            ("drop event 0.2", lambda e=ev: T.drop_event(e, 0.2, 0), lambda e=ev: F.drop_event_numpy(e, 0.2)),
            ("time jitter 100 µs", lambda e=ev: T.time_jitter(e, 100.0, 0),
             lambda e=ev: F.time_jitter_numpy(e.copy(), 100.0)),
        ]  # fmt: skip
        for name, ours_fn, tonic_fn in cases:
            ours_fn()
            tonic_fn()
            reps = repeats if name.startswith(("denoise", "refractory")) is False or len(ev) < 10_000 else 3
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
