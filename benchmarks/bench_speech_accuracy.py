"""FSDD accuracy: encode the Free Spoken Digit Dataset (Lyon + BSA, reference TI46 front end) and train the
`fsdd-mlp` preset (the ti46-mlp network with 10 outputs) with HM2-BP; test accuracy on takes 0-4 per epoch.

    .venv/bin/python benchmarks/bench_speech_accuracy.py [--epochs 20] [--work DIR]

Uses the 2,000 recordings in the sample data's speech/fsdd/ (4 speakers x 10 digits x 50 takes; takes 5-49 train,
takes 0-4 test). Prints the per-epoch table of `metrics.jsonl`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sample_data import SAMPLE_DATA

FSDD = SAMPLE_DATA / "speech" / "fsdd"
BIN = Path(sys.executable).parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--work", type=Path, default=None, help="keep the store and run here (default: temporary)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--val-fraction", type=float, default=None,
                    help="hold out this stratified fraction of the training recordings; best.pt is chosen on it")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_fsdd_"))
    work.mkdir(parents=True, exist_ok=True)
    store, run = work / "fsdd.zarr", work / "run"
    t0 = time.perf_counter()
    subprocess.run([BIN / "spikedata", "encode", "fsdd", "--source", FSDD, "--out", store, "--overwrite",
                    "--workers", str(args.workers), "--quiet"], check=True)  # fmt: skip
    encode_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    subprocess.run([BIN / "hm2bp", "fit", store, "--preset", "fsdd-mlp", "--epochs", str(args.epochs), "--device",
                    "cpu", "--out", run, "--overwrite", "--quiet",
                    *(["--val-fraction", str(args.val_fraction)] if args.val_fraction else [])],
                   check=True)  # fmt: skip
    fit_s = time.perf_counter() - t0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    print(f"encode: {encode_s:.1f} s for 2000 recordings; fit: {fit_s:.1f} s for {args.epochs} epochs")
    print(f"{'epoch':>5s} {'train acc %':>11s} {'test acc %':>10s} {'samples/s':>9s}")
    for r in rows:
        rate = r.get("train_samples_per_s") or r.get("samples_per_s") or float("nan")
        print(f"{r['epoch']:5d} {100 * r['train_accuracy']:11.2f} {100 * r['test_accuracy']:10.2f} {rate:9.1f}")
    last = rows[-1]
    print(f"best on {last['best_split']} at epoch {last['best_epoch']}: test {100 * last['test_at_best']:.2f} %; "
          f"final {100 * last['test_accuracy']:.2f} %")  # fmt: skip


if __name__ == "__main__":
    main()
