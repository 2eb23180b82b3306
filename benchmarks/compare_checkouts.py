"""CPU training speed of two checkouts of this repository, measured in alternation on the same machine.

    .venv/bin/python benchmarks/compare_checkouts.py OLD_CHECKOUT [NEW_CHECKOUT] [--rounds 3]

For a change that must not make the CPU path slower (a restructuring, a kernel rewritten): each round runs, for
each checkout in turn (the order alternates between rounds), `bench_train.py`'s hm2bp child at batch 1 and 32
(784-800-10, T = 400, MNIST Poisson, Adam; the checkout's own copy of the script) and `bench_cnn.py --batches 1 32
--repeats 2` (mnist-cnn). Every run is a fresh process with the checkout first on `PYTHONPATH`, so each measures
its own code (numba compiles each checkout's kernels once, in the untimed first step). Prints samples/s per run and
the medians with the ratio new/old; on a shared machine only ratios taken in the same round mean much.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from sample_data import SAMPLE_DATA

REPO = Path(__file__).resolve().parents[1]
MNIST = SAMPLE_DATA / "mnist" / "t10k-images-idx3-ubyte.gz"


def bench_train(root: Path, batch: int) -> float:
    """samples/s of bench_train's hm2bp child in checkout `root`."""
    cmd = [sys.executable, str(root / "benchmarks" / "bench_train.py"), "--child", "hm2bp", "--batch", str(batch),
           "--samples", str(max(256, 8 * batch) + batch), "--images", str(MNIST)]
    out = _run(cmd, root)
    return json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])["samples_per_s"]


def bench_cnn(root: Path) -> dict[int, float]:
    """samples/s of bench_cnn (batches 1 and 32) in checkout `root`."""
    out = _run([sys.executable, str(root / "benchmarks" / "bench_cnn.py"), "--batches", "1", "32", "--repeats", "2"],
               root)
    return {int(line.split()[1].rstrip(":")): float(line.split("ms/step")[1].split()[0])
            for line in out.splitlines() if line.startswith("batch")}


def _run(cmd: list[str], root: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=root / "benchmarks")
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed in {root}:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old", type=Path, help="the checkout to compare against")
    ap.add_argument("new", type=Path, nargs="?", default=REPO, help="default: this checkout")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if not MNIST.is_file():
        raise SystemExit(f"MNIST images not found at {MNIST} (set SPIKEDATA_SAMPLE_DATA)")
    trees = {"old": args.old.resolve(), "new": args.new.resolve()}
    rows: dict[tuple[str, int, str], list[float]] = {}
    for rnd in range(args.rounds):
        for name in ("old", "new") if rnd % 2 == 0 else ("new", "old"):
            for batch in (1, 32):
                rows.setdefault(("bench_train", batch, name), []).append(bench_train(trees[name], batch))
            for batch, rate in bench_cnn(trees[name]).items():
                rows.setdefault(("bench_cnn", batch, name), []).append(rate)
            print(f"round {rnd} {name}: " + ", ".join(f"{b} batch {n} {v[-1]:.1f}/s" for (b, n, t), v in rows.items()
                                                      if t == name), flush=True)
    print("\nmedians, samples/s")
    for bench in ("bench_train", "bench_cnn"):
        for batch in (1, 32):
            old, new = (statistics.median(rows[bench, batch, t]) for t in ("old", "new"))
            print(f"{bench:11s} batch {batch:2d}: old {old:8.2f}  new {new:8.2f}  new/old {new / old:.2f}")


if __name__ == "__main__":
    main()
