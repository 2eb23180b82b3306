"""One writer per store path (OS lock naming the holder's PID), recovery from dead writers, `overwrite` that never
leaves the path without a store, and encoding worker processes (errors cross them; they die with their parent)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from spikedata.locking import LockError, PathLock
from spikedata.pipeline import SplitJob, dense_to_block, encode_to_store
from spikedata.store import StoreError, StoreWriter, open_store
from tests.messages import message_lines

REPO = Path(__file__).resolve().parents[2]
N_UNITS, N_STEPS = 12, 30
ATTRS = dict(dataset="synthetic", encoder={"name": "x", "params": {}}, n_units=N_UNITS, unit_shape=[3, 4],
             n_steps=N_STEPS, dt_us=1000, classes=["a", "b"], seed=0, source={"files": {}})


def block(start, stop, seed=0):
    r = np.stack([np.random.default_rng([seed, i]).random((N_STEPS, N_UNITS)) < 0.1 for i in range(start, stop)])
    return dense_to_block(r, np.arange(start, stop) % 2)


def write(path, n=20, seed=0, overwrite=False):
    return encode_to_store(path, ATTRS, {"train": SplitJob(n, lambda a, b: block(a, b, seed), chunk=5)},
                           progress=False, overwrite=overwrite)


def python(script: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


HOLD = """
    import sys, time
    from spikedata.store import StoreWriter
    attrs = {attrs!r}
    with StoreWriter({path!r}, attrs) as w:
        w.split("train")
        print("holding", flush=True)
        time.sleep(120)
"""


def siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name != path.name)


def test_second_writer_is_refused_then_a_dead_writers_lock_and_partial_are_recovered(tmp_path):
    out = tmp_path / "s.zarr"
    holder = python(HOLD.format(attrs=ATTRS, path=str(out)))
    try:
        assert holder.stdout.readline().strip() == "holding", holder.stderr.read()
        with pytest.raises(LockError, match=rf"s\.zarr: the spike store is being written by process {holder.pid} "
                                            r"\(lock file .*\.s\.zarr\.lock\)"):
            with StoreWriter(out, ATTRS):
                pass
        with pytest.raises(LockError, match=str(holder.pid)):
            write(out)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert any(n.startswith(".s.zarr.partial-") for n in siblings(out)) and ".s.zarr.lock" in siblings(out)
    with StoreWriter(out, ATTRS) as w:
        w.split("train").append(np.array([0, 1]), np.array([2]), np.array([3]), np.array([1]))
    assert w._lock.recovered_from == holder.pid
    assert any(c.startswith("removed .s.zarr.partial-") for c in w.cleaned)
    assert siblings(out) == [] and len(open_store(out)["train"]) == 1


def test_same_process_cannot_write_one_path_twice(tmp_path):
    with StoreWriter(tmp_path / "s.zarr", ATTRS):
        with pytest.raises(LockError, match="already being written by this process"):
            StoreWriter(tmp_path / "s.zarr", ATTRS).__enter__()
    assert siblings(tmp_path / "s.zarr") == []


def test_reentrant_lock_and_inode_check(tmp_path):
    target = tmp_path / "run"
    target.mkdir()
    a = PathLock(target, target / ".lock", reentrant=True).acquire()
    b = PathLock(target, target / ".lock", reentrant=True).acquire()  # same process, reentrant: counted
    b.release()
    assert (target / ".lock").exists() and a.held
    a.release()
    assert not (target / ".lock").exists()


OVERWRITE_LOOP = """
    import numpy as np
    from spikedata.pipeline import SplitJob, dense_to_block, encode_to_store
    attrs = {attrs!r}
    def block(a, b, seed):
        r = np.stack([np.random.default_rng([seed, i]).random(({steps}, {units})) < 0.1 for i in range(a, b)])
        return dense_to_block(r, np.arange(a, b) % 2)
    k = 0
    while True:
        k += 1
        encode_to_store({path!r}, attrs, {{"train": SplitJob(20 + k % 2, lambda a, b: block(a, b, k % 2), 5)}},
                        progress=False, overwrite=True)
        print(k, flush=True)
"""


def test_overwrite_killed_at_any_moment_leaves_a_store_and_the_next_writer_cleans_up(tmp_path):
    out = tmp_path / "s.zarr"
    write(out)
    rng = np.random.default_rng(3)
    for _ in range(3):
        proc = python(OVERWRITE_LOOP.format(attrs=ATTRS, path=str(out), steps=N_STEPS, units=N_UNITS))
        assert proc.stdout.readline().strip().isdigit(), proc.stderr.read()  # overwrites are under way
        time.sleep(float(rng.uniform(0.0, 0.4)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert len(open_store(out)["train"]) in (20, 21)  # the old or the new store, never none
    write(out, overwrite=True)
    assert siblings(out) == []


def test_interrupted_two_rename_replacement_is_restored(tmp_path, monkeypatch):
    """Where no atomic swap exists: old store renamed aside, killed before the new one moved in."""
    out = write(tmp_path / "s.zarr", n=20)
    aside = tmp_path / ".s.zarr.old-1234abcd"
    out.rename(aside)
    with pytest.raises(StoreError, match=r"interrupted --overwrite left the previous store at .*old-1234abcd"):
        open_store(out)
    monkeypatch.setattr("spikedata.store.swap.exchange_paths", lambda a, b: False)
    with StoreWriter(out, ATTRS, overwrite=True) as w:
        w.split("train").append(np.array([0, 1]), np.array([2]), np.array([3]), np.array([1]))
    assert w.cleaned == [f"restored {out} from .s.zarr.old-1234abcd"]
    assert len(open_store(out)["train"]) == 1 and siblings(out) == []


def write_atis(path: Path, events: list[tuple[int, int, int, int]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(bytes([x, y, (p << 7) | (t >> 16), (t >> 8) & 0xFF, t & 0xFF]) for x, y, p, t in events))


def test_event_error_in_a_worker_is_one_clean_line(tmp_path):
    src = tmp_path / "ev"
    good = [(i % 30, (3 * i) % 30, i % 2, 100 * i) for i in range(50)]
    for k in range(6):
        write_atis(src / "a" / f"{k}.bin", good)
    write_atis(src / "b" / "bad.bin", good[:20] + [(40, 5, 1, 2100)] + good[21:])  # x = 40 outside 34 x 34
    from spikedata.cli import app

    result = CliRunner().invoke(app, ["encode", "events", "--source", str(src), "--out", str(tmp_path / "o.zarr"),
                                      "--sensor-size", "34,34", "--steps", "10", "--workers", "2", "--chunk", "2",
                                      "--quiet"])
    assert result.exit_code == 1
    lines = message_lines(result.output)
    assert len(lines) == 1, result.output
    # the declared-sensor check of the encode step: which file, how many events, their extent
    assert lines[0].startswith("error: ") and "bad.bin: 1 of 50 events lie outside the declared" in lines[0]
    assert "observed extent x 0..40, y 0..27" in lines[0]
    assert "Traceback" not in result.output and "BrokenProcessPool" not in result.output
    assert not (tmp_path / "o.zarr").exists() and siblings(tmp_path / "o.zarr") == ["ev"]


SLOW_JOB = """
import time

import numpy as np

from spikedata.pipeline import dense_to_block


def slow(a, b):
    time.sleep(60)  # a long chunk: a worker that does not watch its parent would live on for a minute
    return dense_to_block(np.zeros((b - a, {steps}, {units}), bool), np.zeros(b - a, int))
"""

WORKERS = """
    import sys
    sys.path.insert(0, {folder!r})
    from slow_job import slow
    from spikedata.pipeline import SplitJob, encode_to_store
    encode_to_store({path!r}, {attrs!r}, {{"train": SplitJob(100000, slow, 10)}}, workers=2, progress=False)
"""


def children_of(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry.name))
    return out


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to find the worker processes")
def test_workers_die_with_their_parent(tmp_path):
    (tmp_path / "slow_job.py").write_text(SLOW_JOB.format(steps=N_STEPS, units=N_UNITS))
    proc = python(WORKERS.format(folder=str(tmp_path), attrs=ATTRS, path=str(tmp_path / "w.zarr")))
    deadline = time.monotonic() + 60
    while len(workers := [c for c in children_of(proc.pid) if "spawn_main" in _cmdline(c)]) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.1)
    time.sleep(1.0)  # both workers are inside a chunk now
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    try:
        while (alive := [w for w in workers if Path(f"/proc/{w}").exists() and "Z" not in _state(w)]):
            assert time.monotonic() < deadline, f"workers {alive} outlived their parent"
            time.sleep(0.1)
    finally:
        for w in workers:  # never leave them running, even when the test fails
            try:
                os.kill(w, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _cmdline(pid: int) -> str:
    try:
        return (Path(f"/proc/{pid}") / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def _state(pid: int) -> str:
    try:
        return (Path(f"/proc/{pid}") / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"
