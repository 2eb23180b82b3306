"""Concurrent writers of one store path, some killed at random moments: exactly the invariants of docs/store.md.

A round starts 2-3 writer processes at once on one path (with or without an existing store, with or without
`overwrite`) and SIGKILLs one of them at a random moment in half the rounds. Afterwards: every writer either wrote,
or was refused with a lock error naming another writer's PID or with "already exists", or was killed; the path
holds an openable store (the previous one or one writer's, whole) whenever it held one before or any writer
finished (a writer killed after its store replaced the old one, but before it could say so, counts as one that
wrote: the replacement is one atomic exchange of paths); and the next writer removes every leftover of the killed ones.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
ATTRS = dict(dataset="race", encoder={"name": "x", "params": {}}, n_units=12, unit_shape=[3, 4], n_steps=30,
             dt_us=1000, classes=["a", "b"], seed=0, source={"files": {}})
WRITER = """
    import sys, time, numpy as np
    from spikedata.errors import SpikedataError
    from spikedata.pipeline import SplitJob, dense_to_block, encode_to_store
    n, overwrite = {n}, {overwrite}
    def block(a, b):
        time.sleep(0.15)
        r = np.stack([np.random.default_rng([n, i]).random((30, 12)) < 0.1 for i in range(a, b)])
        return dense_to_block(r, np.arange(a, b) % 2)
    try:
        encode_to_store({path!r}, {attrs!r}, {{"train": SplitJob(n, block, 4)}}, progress=False, overwrite=overwrite)
        print("wrote")
    except (SpikedataError, FileExistsError) as exc:
        print("refused:", exc)
"""


def _writer(path: Path, n: int, overwrite: bool) -> subprocess.Popen:
    script = textwrap.dedent(WRITER.format(n=n, overwrite=overwrite, path=str(path), attrs=ATTRS))
    return subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _samples(path: Path) -> int | None:
    from spikedata.store import StoreError, open_store

    try:
        return len(open_store(path)["train"])
    except StoreError:
        return None


def run_rounds(rounds: int, workdir: Path, seed: int = 0) -> dict:
    """Run the rounds; returns {"scenario", "rounds", "counts", "bad", "problems"}."""
    from spikedata.pipeline import SplitJob, dense_to_block, encode_to_store

    counts: Counter = Counter()
    problems: list[str] = []
    rng = np.random.default_rng([seed, 99])
    for k in range(rounds):
        folder = workdir / str(k)
        folder.mkdir(parents=True)
        path = folder / "s.zarr"
        existed = bool(rng.random() < 0.5)
        if existed:
            encode_to_store(path, ATTRS, {"train": SplitJob(10, lambda a, b: dense_to_block(
                np.zeros((b - a, 30, 12), bool), np.zeros(b - a, int)))}, progress=False)
        overwrite = bool(rng.random() < 0.6)
        sizes = [20 + i for i in range(int(rng.integers(2, 4)))]
        procs = [_writer(path, n, overwrite) for n in sizes]
        killed = None
        if rng.random() < 0.5:
            time.sleep(float(rng.uniform(0.5, 3.0)))
            killed = int(rng.integers(len(procs)))
            procs[killed].send_signal(signal.SIGKILL)
        pids = {p.pid for p in procs}
        wrote = []
        for i, (p, n) in enumerate(zip(procs, sizes, strict=True)):
            out, err = p.communicate(timeout=300)
            if i == killed and p.returncode == -signal.SIGKILL:
                counts["writer killed"] += 1
            elif out.startswith("wrote"):
                counts["writer wrote"] += 1
                wrote.append(n)
            elif out.startswith("refused:") and "being written by process" in out:
                holder = re.search(r"process (\d+)", out)
                if holder and int(holder.group(1)) in pids - {p.pid}:
                    counts["refused: lock held (PID named)"] += 1
                else:
                    problems.append(f"round {k}: lock error naming no other writer: {out.strip()}")
            elif out.startswith("refused:") and "already exists" in out:
                counts["refused: already exists"] += 1
            else:
                problems.append(f"round {k}: writer {n}: rc {p.returncode}: {out.strip()} {err[-300:]}")
        now = _samples(path)
        whole = ([10] if existed else []) + wrote + ([sizes[killed]] if killed is not None else [])
        if existed or wrote:
            if now is None or now not in whole:
                problems.append(f"round {k}: path holds {now} samples; before {10 if existed else None}, wrote {wrote}")
            else:
                counts["store openable after the round"] += 1
        leftovers = [p.name for p in folder.iterdir() if p.name != "s.zarr"]
        if leftovers:
            counts["rounds with leftovers of killed writers"] += 1
        encode_to_store(path, ATTRS, {"train": SplitJob(5, lambda a, b: dense_to_block(
            np.zeros((b - a, 30, 12), bool), np.zeros(b - a, int)))}, progress=False, overwrite=True)
        rest = [p.name for p in folder.iterdir() if p.name != "s.zarr"]
        if rest or _samples(path) != 5:
            problems.append(f"round {k}: the next writer left {rest}")
        else:
            counts["next writer cleaned up"] += 1
        shutil.rmtree(folder, ignore_errors=True)
    counts["problems"] = len(problems)
    return {"scenario": "2-3 writers on one store path, random SIGKILL", "rounds": rounds, "counts": dict(counts),
            "bad": len(problems), "problems": problems}
