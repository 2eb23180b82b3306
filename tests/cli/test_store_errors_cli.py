"""A damaged store chunk, met by the real console entry points (`python -m spikedata ...`, `python -m hm2bp ...`
in fresh processes, as a user runs them): one `error:` line on stderr, exit status 1, and nothing after it -- no
tracebacks of zarr's background readers shut down under reads still running ("cannot schedule new futures after
shutdown", "Event loop is closed", "Task was destroyed but it is pending").

The store has small event chunks (1,024 events), so that every read spans dozens of them and many are in flight
when the damaged one fails: before the reader waited for all of a read's chunks, 2 to 4 of every 6 runs of each
command printed such tracebacks (the test fails on that reader at its first run). Each command runs `RUNS` times,
the runs side by side."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from hm2bp.cli import app as hm2bp_app
from spikedata.store import StoreWriter, root_attributes
from tests.hm2bp.synthetic import tiny_network_toml

REPO = Path(__file__).resolve().parents[2]
RUNS = 3
NETWORK = tiny_network_toml(hidden=16, batch_size=16, epochs=1)


def write_store(path: Path, seed: int = 0) -> Path:
    """A store of 400 train and 100 test samples (40 units, 50 steps, 300-600 spikes each) in chunks of 1,024
    events: about 300 chunks per array."""
    rng = np.random.default_rng(seed)
    attrs = root_attributes("synthetic", "random", {}, [40], 50, 1000, ["a", "b", "c", "d"], seed, {"files": {}})
    with StoreWriter(path, attrs, event_chunk=1024) as writer:
        for split, n in (("train", 400), ("test", 100)):
            counts = rng.integers(300, 600, n)
            keys = [np.sort(rng.choice(50 * 40, c, replace=False)) for c in counts]
            flat = np.concatenate(keys)
            writer.split(split).append(np.concatenate([[0], np.cumsum(counts)]), (flat // 40).astype(np.uint32),
                                       (flat % 40).astype(np.uint32), (np.arange(n) % 4).astype(np.int16))
    return path


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    """The store with a byte flipped in the middle of event chunk 3 of both splits (its checksum fails), a network
    config, and a checkpoint trained on the intact store (for `hm2bp eval`)."""
    root = tmp_path_factory.mktemp("damaged")
    good = write_store(root / "good.zarr")
    config = root / "net.toml"
    config.write_text(NETWORK)
    r = CliRunner().invoke(hm2bp_app, ["fit", str(good), "--config", str(config), "--out", str(root / "run"),
                                       "--device", "cpu", "--quiet"])  # fmt: skip
    assert r.exit_code == 0, r.output
    bad = write_store(root / "bad.zarr")
    for split in ("train", "test"):
        chunk = bad / split / "times" / "c" / "3"
        data = bytearray(chunk.read_bytes())
        data[len(data) // 2] ^= 0xFF
        chunk.write_bytes(bytes(data))
    return {"store": bad, "config": config, "checkpoint": root / "run" / "last.pt", "root": root}


def run(module: str, *args: str, times: int = 1) -> list[tuple[int, str]]:
    """(exit status, stderr) of `times` runs of `python -m module args...`, started together ("{k}" in an
    argument becomes the run's number: runs that write get their own directory)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-m", module, *(a.replace("{k}", str(k)) for a in args)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
             for k in range(times)]  # fmt: skip
    errors = [proc.communicate(timeout=300)[1] for proc in procs]
    return [(proc.returncode, stderr) for proc, stderr in zip(procs, errors, strict=True)]


def commands(d: dict) -> dict[str, tuple[str, ...]]:
    store = str(d["store"])
    return {
        "spikedata verify": ("spikedata", "verify", store, "--quiet"),
        "spikedata inspect": ("spikedata", "inspect", store),
        "hm2bp fit": ("hm2bp", "fit", store, "--config", str(d["config"]), "--out", str(d["root"] / "new-{k}"),
                      "--device", "cpu", "--quiet"),
        "hm2bp eval": ("hm2bp", "eval", store, "--checkpoint", str(d["checkpoint"]), "--device", "cpu"),
    }


@pytest.mark.parametrize("command", ["spikedata verify", "spikedata inspect", "hm2bp fit", "hm2bp eval"])
def test_a_damaged_chunk_ends_a_command_with_one_line(damaged, command):
    module, *args = commands(damaged)[command]
    for attempt, (status, stderr) in enumerate(run(module, *args, times=RUNS)):
        # notes (a first numba compilation, how "best" is chosen) and warnings (eval: the checkpoint was selected on
        # the split it evaluates) may come before the error; nothing else may
        lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith(("note:", "warning:"))]
        assert status == 1, (command, attempt, stderr[-2000:])
        assert len(lines) == 1 and lines[0].startswith("error: "), (command, attempt, stderr[-3000:])
        assert "array 'times', chunk 3" in lines[0] and "cannot be decoded" in lines[0], lines[0]
