"""Data-parallel training (`hm2bp.train.distributed`): sharding, reductions, and `hm2bp fit` under torchrun (gloo, CPU).

The end-to-end tests launch real process groups on 127.0.0.1: `torchrun --standalone --nproc_per_node 2` for the
equivalence with one process at the doubled batch, and two single-process "machines" (`--nnodes 2`) for a rank
that dies mid-run.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from hm2bp import Network
from hm2bp.cli import app as hm2bp_app
from hm2bp.config import load_config
from hm2bp.train import distributed as dp
from hm2bp.train.checkpoint import load_checkpoint
from hm2bp.train.loader import SpikeLoader
from hm2bp.train.metrics import read_metrics
from hm2bp.train.run import validation_split
from hm2bp.train.rundir import LAST, RUN_INFO
from hm2bp.train.trainer import Trainer
from spikedata.store import open_store
from tests.hm2bp.synthetic import make_store

REPO = Path(__file__).resolve().parents[2]
FIT = "import sys; from hm2bp.cli import main; sys.argv[0] = 'hm2bp'; main()"
CONFIG = (
    'steps = 50\n[[layers]]\nname = "hidden"\nsize = 20\nthreshold = 5.0\n'
    '[[layers]]\nname = "output"\nsize = 4\nthreshold = 3.0\nlateral_inhibition = 1.0\n'
    "[loss]\ndesired = 10\nundesired = 2\nmargin = 2\n"
    '[train]\noptimizer = "adam"\nlr = 0.01\nbatch_size = 4\nepochs = 2\nseed = 3\n'
)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                              "MASTER_PORT", "GROUP_RANK")}
    return {**env, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _torchrun(*launcher: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *launcher, "--no-python", sys.executable]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


@pytest.fixture(scope="module")
def store_path(tmp_path_factory) -> Path:
    return make_store(tmp_path_factory.mktemp("dist") / "s.zarr", n_train=64, n_test=21)


@pytest.fixture(scope="module")
def config_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("dist_cfg") / "tiny.toml"
    path.write_text(CONFIG)
    return path


# ------------------------------------------------------------------------------------------------ sharding


@pytest.mark.parametrize("n, world", [(0, 3), (1, 2), (7, 3), (8, 2), (16, 4)])
def test_rank_bounds_tile_in_rank_order_and_balance(n, world):
    bounds = [dp.rank_bounds(n, r, world) for r in range(world)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(bounds[r][1] == bounds[r + 1][0] for r in range(world - 1))
    sizes = [hi - lo for lo, hi in bounds]
    assert max(sizes) - min(sizes) <= 1
    if n % world == 0:
        assert sizes == [n // world] * world


def test_rank_bounds_rejects_bad_rank():
    with pytest.raises(ValueError, match="rank 2 outside"):
        dp.rank_bounds(5, 2, 2)


@pytest.mark.parametrize("n, batch, world, block, buffer", [(17, 4, 2, 256, 4096), (50, 3, 3, 4, 8)])
def test_loader_shards_equal_one_loader_at_global_batch(store_path, n, batch, world, block, buffer):
    """Batch k of rank r is the r-th share of batch k of one loader at batch world*B: same samples, spikes, labels
    (also with several buffers, whose batches straddle buffer boundaries, and ranks with an empty last share)."""
    split = open_store(store_path)["train"]
    kw = dict(shuffle=True, seed=5, limit=n, block_size=block, buffer_samples=buffer, prefetch=0)
    single = list(SpikeLoader(split, batch * world, **kw).epoch(2))
    ranks = [list(SpikeLoader(split, batch, rank=r, world_size=world, **kw).epoch(2)) for r in range(world)]
    assert all(len(batches) == len(single) for batches in ranks)
    seen = []
    for k, whole in enumerate(single):
        parts = [batches[k] for batches in ranks]
        np.testing.assert_array_equal(np.concatenate([p.indices for p in parts]), whole.indices)
        assert torch.equal(torch.cat([p.spikes for p in parts]), whole.spikes)
        assert torch.equal(torch.cat([p.labels for p in parts]), whole.labels)
        seen.append(whole.indices)
    assert sorted(np.concatenate(seen).tolist()) == list(range(n))
    if n == 17:
        assert len(ranks[0][-1]) == 0 and ranks[0][-1].spikes.shape == (0, 50, 40)


def test_split_shard_reads_its_range(store_path):
    split = open_store(store_path)["test"]
    shard = dp.shard_split(split, dp.World(rank=1, world_size=2, backend="gloo"))
    assert (shard.offset, len(shard), shard.n_total) == (10, 11, 21)
    np.testing.assert_array_equal(shard.labels, split.labels[10:21])
    whole = split.read_range(12, 15)
    part = shard.read_range(2, 5)
    np.testing.assert_array_equal(part.indptr, whole.indptr)
    np.testing.assert_array_equal(part.units, whole.units)
    with pytest.raises(IndexError):
        shard.read_range(0, 12)


def test_single_process_is_a_no_op():
    g = {"w": torch.arange(6, dtype=torch.float32).view(2, 3)}
    grads, total, stats = dp.reduce_step(g, 5, dp.SINGLE, (1.5, 2.0))
    assert grads["w"] is g["w"] and total == 5 and stats == [1.5, 2.0]
    np.testing.assert_array_equal(dp.gather_flags(np.array([True, False]), dp.SINGLE), [True, False])
    assert dp.on_main(lambda: 7, dp.SINGLE) == 7


def test_env_parsing(monkeypatch):
    assert dp.env_ranks({}) is None
    assert dp.env_ranks({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == (1, 4, 1)
    with pytest.raises(dp.DistributedError, match="invalid ranks"):
        dp.env_ranks({"RANK": "4", "WORLD_SIZE": "4"})
    with pytest.raises(dp.DistributedError, match="expected integers"):
        dp.env_ranks({"RANK": "x", "WORLD_SIZE": "2"})
    assert dp.timeout_from_env(environ={dp.TIMEOUT_ENV: "12.5"}) == 12.5
    with pytest.raises(dp.DistributedError, match="> 0"):
        dp.timeout_from_env(environ={dp.TIMEOUT_ENV: "0"})
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    world, dev = dp.init_world("cpu")
    assert (world.rank, world.world_size, world.backend, dev) == (0, 1, None, torch.device("cpu"))
    assert world.is_main and not world.is_distributed


# ------------------------------------------------------------------------------------------------ collectives

_HELPERS = r"""
import json
import numpy as np, torch
from hm2bp.train import distributed as dp
world, dev = dp.init_world("cpu", timeout_s=60)
r = world.rank
out = {"rank": r, "world": world.world_size, "backend": world.backend, "device": str(dev)}
g = {"a": torch.full((2, 3), float(r + 1)), "b": torch.arange(4.0) * (r + 1)}
grads, total, stats = dp.reduce_step(g, 3 if r == 0 else 1, world, (10.0 * (r + 1), float(r)))
out["uneven"] = [grads["a"].tolist(), grads["b"].tolist(), total, stats, str(grads["a"].dtype)]
grads, total, _ = dp.reduce_step(g, 2 if r == 0 else 0, world)
out["empty"] = [grads["a"].tolist(), total]
flags = np.zeros(6, bool)
flags[[0, 2] if r == 0 else [5]] = True
out["flags"] = dp.gather_flags(flags, world).tolist()
lo, hi = dp.rank_bounds(5, r, 2)
out["gathered"] = [a.tolist() for a in dp.gather_disjoint([np.arange(lo, hi) * 10, np.full(hi - lo, r)], 5, lo, world)]
out["on_main"] = dp.on_main(lambda: {"from": r}, world)
try:
    dp.on_main(lambda: (_ for _ in ()).throw(FileNotFoundError("rank 0 found no checkpoint")), world)
except FileNotFoundError as exc:
    out["on_main_error"] = str(exc)
dp.check_same({"store": "abc"}, world)
try:
    dp.check_same({"store": "abc", "seed": r}, world)
except dp.DistributedError as exc:
    out["check_same"] = str(exc)
dp.shutdown(world)
# One file per rank: two ranks printing to one pipe can interleave their lines.
import os, pathlib
pathlib.Path(os.environ["RESULT_DIR"], f"rank{out['rank']}.json").write_text(json.dumps(out))
"""


@pytest.mark.slow
def test_collective_helpers_on_two_gloo_ranks(tmp_path):
    proc = subprocess.run([*_torchrun("--standalone", "--nproc_per_node", "2"), "-c", _HELPERS], cwd=REPO,
                          env={**_env(), "RESULT_DIR": str(tmp_path)}, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = sorted((json.loads(p.read_text()) for p in tmp_path.glob("rank*.json")), key=lambda d: d["rank"])
    assert [d["rank"] for d in results] == [0, 1]
    for d in results:
        assert (d["world"], d["backend"], d["device"]) == (2, "gloo", "cpu")
        # (3 * g_0 + 1 * g_1) / 4 with g_r = r + 1: 1.25; stats are plain sums; dtype kept.
        assert d["uneven"] == [[[1.25] * 3] * 2, [0.0, 1.25, 2.5, 3.75], 4, [30.0, 1.0], "torch.float32"]
        assert d["empty"] == [[[1.0] * 3] * 2, 2]  # a rank with 0 samples contributes nothing
        assert d["flags"] == [True, False, True, False, False, True]
        assert d["gathered"] == [[0, 10, 20, 30, 40], [0, 0, 1, 1, 1]]
        assert d["on_main"] == {"from": 0}
        assert d["on_main_error"] == "rank 0 found no checkpoint"
        assert "ranks [1] differ from rank 0 in seed" in d["check_same"]


# ------------------------------------------------------------------------------------------------ hm2bp fit


def _single_process_run(store_path: Path, config_path: Path, batch_size: int, epochs: int, max_train: int):
    """Reference: one in-process Trainer at `batch_size` (what the ranks must reproduce)."""
    cfg = load_config(config_path).replace_train(batch_size=batch_size, epochs=epochs)
    store = open_store(store_path)
    net = Network.from_config(cfg, 40, (40,), generator=torch.Generator().manual_seed(cfg.train.seed))
    # the training samples `hm2bp fit --max-train N` uses: a seeded, stratified subset of N
    train, _, loader_max, _ = validation_split(store, store["train"], None, None, max_train, cfg.train.seed)
    trainer = Trainer(net, train, store["test"], device="cpu", max_train=loader_max)
    trainer.fit()
    return trainer


def _assert_same_training(ckpt: dict, trainer: Trainer) -> None:
    for name, w in trainer.net.weights().items():
        torch.testing.assert_close(ckpt["weights"][name], w, rtol=0, atol=2e-6)
    np.testing.assert_allclose(ckpt["boost"].numpy(), trainer.boost, rtol=1e-12)
    for mine, ref in zip(ckpt["history"], trainer.state.history, strict=True):
        for key in ("epoch", "lr", "train_accuracy", "test_accuracy"):
            assert mine[key] == pytest.approx(ref[key], abs=1e-12), key
        assert mine["train_loss"] == pytest.approx(ref["train_loss"], rel=1e-9)


@pytest.mark.slow
def test_two_ranks_train_like_one_process_at_double_batch(tmp_path, store_path, config_path):
    """2 gloo ranks at batch 4 over 11 samples (global batches of 8 and 3, the last split 2 + 1), 2 epochs with
    boost: weights, boost weights and metrics equal one process at batch 8."""
    out = tmp_path / "run"
    cmd = [*_torchrun("--standalone", "--nproc_per_node", "2"), "-c", FIT, "fit", str(store_path), "--config",
           str(config_path), "--out", str(out), "--device", "cpu", "--quiet", "--max-train", "11"]
    proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 ranks (gloo, global batch 8)" in " ".join(proc.stdout.split())  # rich may wrap lines
    assert proc.stdout.count("final epoch") == 1  # only rank 0 reports
    ckpt = load_checkpoint(out / LAST)
    assert (ckpt["epoch"], ckpt["world_size"], ckpt["global_batch"]) == (1, 2, 8)
    assert json.loads((out / RUN_INFO).read_text())["world_size"] == 2
    assert [r["epoch"] for r in read_metrics(out / "metrics.jsonl")] == [0, 1]
    reference = _single_process_run(store_path, config_path, batch_size=8, epochs=2, max_train=11)
    assert reference.boost.max() > 1  # the boost did change the second epoch's gradients
    _assert_same_training(ckpt, reference)


@pytest.mark.slow
def test_dead_rank_fails_the_others_in_bounded_time_then_resume_on_one_rank(tmp_path, store_path, config_path):
    """Two single-rank 'machines'; machine 1's rank is SIGKILLed mid-run. Rank 0 must exit with a clear error
    well within the timeout; the run then resumes as ONE process at the doubled batch (same global batch) and ends
    with the weights of an uninterrupted one-process run."""
    out = tmp_path / "run"
    port = str(_free_port())
    args = ["fit", str(store_path), "--config", str(config_path), "--out", str(out), "--device", "cpu", "--quiet",
            "--epochs", "5", "--max-train", "32"]
    fit = ["-c", FIT, *args, "--batch-size", "1", "--dist-timeout", "30"]
    nodes = [
        subprocess.Popen([*_torchrun("--nnodes", "2", "--nproc_per_node", "1", "--node_rank", str(k), "--master_addr",
                                     "127.0.0.1", "--master_port", port), *fit],
                         cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for k in (0, 1)
    ]
    try:
        deadline = time.monotonic() + 180
        while not (out / LAST).exists():
            assert nodes[0].poll() is None and time.monotonic() < deadline, "run ended before its first checkpoint"
            time.sleep(0.02)
        victims = _children(nodes[1].pid)
        assert victims, "machine 1 has no worker process"
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        nodes[1].kill()
        killed_at = time.monotonic()
        _, err = nodes[0].communicate(timeout=90)
        elapsed = time.monotonic() - killed_at
    finally:
        for node in nodes:
            if node.poll() is None:
                node.kill()
            node.communicate()
    assert nodes[0].returncode != 0
    assert elapsed < 40, f"rank 0 took {elapsed:.0f} s to notice"
    assert "error: rank 0/2:" in err and "failed: another rank died" in err, err[-3000:]
    interrupted_at = load_checkpoint(out / LAST)["epoch"]
    assert interrupted_at < 4, "the kill came too late to test anything"

    runner = CliRunner()
    resumed = runner.invoke(hm2bp_app, [*args, "--resume", "--batch-size", "2"])
    assert resumed.exit_code == 0, resumed.output
    ckpt = load_checkpoint(out / LAST)
    assert (ckpt["epoch"], ckpt["world_size"], ckpt["global_batch"]) == (4, 1, 2)
    reference = _single_process_run(store_path, config_path, batch_size=2, epochs=5, max_train=32)
    _assert_same_training(ckpt, reference)
    assert [r["epoch"] for r in read_metrics(out / "metrics.jsonl")] == list(range(5))


def test_resume_must_keep_the_global_batch(tmp_path, store_path, config_path):
    runner = CliRunner()
    args = ["fit", str(store_path), "--config", str(config_path), "--out", str(tmp_path / "r"), "--device", "cpu",
            "--quiet", "--epochs", "1", "--max-train", "8"]
    assert runner.invoke(hm2bp_app, args).exit_code == 0
    res = runner.invoke(hm2bp_app, [*args[:-4], "--epochs", "2", "--max-train", "8", "--resume", "--batch-size", "2"])
    assert res.exit_code == 1
    assert "global batch 4" in res.output and "this run's is 2" in res.output
