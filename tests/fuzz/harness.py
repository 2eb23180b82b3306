"""The fuzz harness: seeded mutants, run one by one in a child process under a time and a memory limit.

`run_format(fmt, cases, workdir)` makes `cases` mutants of the format's seeds (`Format.mutants`), hands each to a
child process (`python -m tests.fuzz.child`, one JSON line per case on stdin/stdout) and classifies the outcome:

* ``error``      a project error (SpikedataError / Hm2bpError) whose message names the file (wanted);
* ``accepted``   the reader returned a result that passes the format's own plausibility check (wanted);
* ``unnamed``    a project error that does not name the file;
* ``implausible`` a result that fails the plausibility check (garbage events, a damaged store or checkpoint read
  as if intact);
* ``generic``    any other exception (numpy, zarr, torch, KeyError, ...);
* ``crash``      the child died (signal, abort, os._exit);
* ``hang``       no answer within the time limit (the child is killed).

The child sets `RLIMIT_AS` to its size after the imports plus `MEMORY_HEADROOM` (so memory that would have to be
estimated first shows up as an error, not as a machine that swaps), and the parent kills it after `TIME_LIMIT_S`
seconds per case. After a crash or hang the next case gets a fresh child.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
TIME_LIMIT_S = float(os.environ.get("FUZZ_TIME_LIMIT", "30"))
MEMORY_HEADROOM = 2 << 30
WANTED = ("error", "accepted")
OUTCOMES = ("error", "accepted", "unnamed", "implausible", "generic", "crash", "hang")


@dataclass(frozen=True)
class Seed:
    """A pristine input (file or store directory) and what its check needs to know (e.g. the sensor size)."""

    path: Path
    context: dict = field(default_factory=dict)


@dataclass
class Mutant:
    """One case: the mutated input at `path`, made from `seed` by `op` (a short label for the table)."""

    path: Path
    seed: Seed
    op: str


# ------------------------------------------------------------------------------------------ byte mutations


def _flip(data: bytearray, rng: np.random.Generator, lo: int, hi: int) -> None:
    for _ in range(int(rng.integers(1, 4))):
        pos = int(rng.integers(lo, max(lo + 1, hi)))
        if pos < len(data):
            data[pos] ^= 1 << int(rng.integers(8))


def mutate_bytes(data: bytes, rng: np.random.Generator, foreign: list[bytes]) -> tuple[str, bytes | None]:
    """(op, mutated bytes) for one seeded byte-level mutation; bytes None means "a directory instead"."""
    n = len(data)
    b = bytearray(data)
    op = str(rng.choice(["truncate", "flip-header", "flip-header", "flip-body", "flip-body", "zero-span",
                         "random-span", "move-span", "foreign", "random-bytes", "zeros", "directory"],
                        p=[.14, .12, .12, .1, .1, .08, .07, .07, .08, .05, .04, .03]))
    if op == "truncate":
        return op, bytes(b[: int(rng.integers(0, max(1, n)))])
    if op == "flip-header":
        _flip(b, rng, 0, min(n, 512))
    elif op == "flip-body":
        _flip(b, rng, 0, n)
    elif op in ("zero-span", "random-span"):
        start = int(rng.integers(0, max(1, n)))
        size = int(rng.integers(1, 4097))
        fill = bytes(size) if op == "zero-span" else rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        b[start : start + size] = fill[: max(0, min(size, n - start))]
    elif op == "move-span":
        size = int(rng.integers(1, max(2, min(4096, n))))
        src, dst = (int(rng.integers(0, max(1, n - size))) for _ in range(2))
        b[dst : dst + size] = data[src : src + size]
    elif op == "foreign":
        return op, foreign[int(rng.integers(len(foreign)))] if foreign else b"plain text\n" * 100
    elif op == "random-bytes":
        return op, rng.integers(0, 256, int(rng.integers(1, 20000)), dtype=np.uint8).tobytes()
    elif op == "zeros":
        return op, bytes(int(rng.integers(1, 20000)))
    elif op == "directory":
        return op, None
    return op, bytes(b)


def byte_mutants(seeds: list[Seed], rng: np.random.Generator, case_dir: Path, foreign: list[bytes]) -> Mutant:
    """The default `Format.mutants`: one byte-level mutation of a random seed file."""
    seed = seeds[int(rng.integers(len(seeds)))]
    op, data = mutate_bytes(seed.path.read_bytes(), rng, foreign)
    path = case_dir / seed.path.name
    if data is None:
        path.mkdir(parents=True)
        (path / "inside").write_bytes(b"x")
    else:
        path.write_bytes(data)
    return Mutant(path, seed, op)


# ------------------------------------------------------------------------------------------ the child process


class Child:
    """A `tests.fuzz.child` process with its memory limit; `run(mutant)` -> outcome dict."""

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO), "FUZZ_MEMORY_HEADROOM": str(MEMORY_HEADROOM),
               "NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.fuzz.child"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO, env=env, text=True,
                                     bufsize=1)
        ready = self._read(120)
        if ready is None or ready.get("ready") is not True:
            err = self.proc.stderr.read() if self.proc.poll() is not None else ""
            self.close()
            raise RuntimeError(f"fuzz child did not start: {ready} {err[-2000:]}")

    def _read(self, timeout: float) -> dict | None:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return None
        line = self.proc.stdout.readline()
        return json.loads(line) if line else None

    def run(self, fmt: str, mutant: Mutant) -> dict:
        request = {"format": fmt, "path": str(mutant.path), "seed": str(mutant.seed.path),
                   "context": mutant.seed.context, "op": mutant.op}
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            return self._died()
        answer = self._read(TIME_LIMIT_S)
        if answer is not None:
            return answer
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
            return {"outcome": "hang", "detail": f"no answer within {TIME_LIMIT_S:g} s"}
        return self._died()

    def _died(self) -> dict:
        code = self.proc.wait()
        tail = self.proc.stderr.read()[-400:]
        how = f"signal {-code} ({signal.Signals(-code).name})" if code < 0 else f"exit status {code}"
        return {"outcome": "crash", "detail": f"{how}: {tail}"}

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Report:
    """Outcomes of one format: counts per outcome, per op, and the cases that are not wanted."""

    name: str
    counts: Counter = field(default_factory=Counter)
    by_op: dict[str, Counter] = field(default_factory=dict)
    failures: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def bad(self) -> int:
        return sum(v for k, v in self.counts.items() if k not in WANTED)


def run_format(fmt, cases: int, workdir: Path, child: Child | None = None, seed: int = 0,
               foreign: list[bytes] | None = None, keep: Callable[[dict], bool] | None = None) -> Report:
    """Run `cases` seeded mutants of `fmt` (a `tests.fuzz.formats.Format`); returns the report."""
    report = Report(fmt.name)
    started = time.perf_counter()
    seeds = fmt.seeds(workdir / "seeds" / fmt.name)
    own = child is None
    child = child or Child()
    try:
        for case in range(cases):
            rng = np.random.default_rng([seed, fmt.index, case])
            case_dir = workdir / "cases" / fmt.name / str(case)
            case_dir.mkdir(parents=True)
            mutant = fmt.mutants(seeds, rng, case_dir, foreign or [])
            if not child.alive:
                child = Child()
            answer = child.run(fmt.name, mutant)
            if answer["outcome"] in ("crash", "hang"):
                child.close()
                child = Child()
            outcome = answer["outcome"]
            report.counts[outcome] += 1
            report.by_op.setdefault(mutant.op, Counter())[outcome] += 1
            if outcome not in WANTED:
                report.failures.append({"case": case, "op": mutant.op, "seed": mutant.seed.path.name, **answer})
            shutil.rmtree(case_dir, ignore_errors=True)
    finally:
        if own:
            child.close()
    report.seconds = time.perf_counter() - started
    return report
