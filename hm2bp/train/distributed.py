"""Data-parallel HM2-BP training with `torch.distributed`, launched by `torchrun` (one process per rank).

What a data-parallel run does (see `docs/scaling.md`):

* **Process group.** `init_world` reads the variables `torchrun` sets (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`,
  `MASTER_ADDR`, `MASTER_PORT`) and joins the group: NCCL when the rank trains on CUDA (one GPU per local rank),
  gloo on CPU. Every collective has a bounded timeout, so a rank that dies or hangs makes the others fail with a
  `DistributedError` naming the step, instead of waiting forever. Without those variables (a plain process)
  everything here is a no-op on `SINGLE`.
* **Sharding.** All ranks compute the same seeded epoch order (it depends only on `(seed, epoch)`, see
  `hm2bp.train.loader`) and cut it into global batches of `world_size * B` samples; rank `r` takes the contiguous share
  `rank_bounds(len(global batch), r, world_size)` of each. So N ranks at per-rank batch B see exactly the samples
  one process at batch N*B sees, batch by batch (a short last batch is split as evenly as possible; a rank may get
  0 samples and still takes part in the reduction with weight 0).
* **Gradients.** `Network.gradients` is the batch *mean* of the per-sample data gradients plus the regulariser.
  `reduce_step` all-reduces `n_r * g_r` and `n_r` (float64, one collective for all layers) and divides: the result
  is `sum(data gradients) / sum(n_r) + regulariser`, the gradient of the global batch.
* **Boost, metrics, test accuracy.** Per-sample results (correctness flags for the boost, predictions of the test
  split) are written by their rank into a zero array of the full length and summed (`gather_disjoint`): every rank
  then holds the same full arrays, so boost weights stay identical on every rank without a broadcast.
* **Files.** Only rank 0 (`World.is_main`) writes checkpoints, metrics and plots; `on_main` runs a setup step
  (checkpoint loading when a run resumes) on rank 0 and hands its result, or its error, to every rank, so other
  machines need no copy of the run directory.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from hm2bp.errors import Hm2bpError

if TYPE_CHECKING:
    from hm2bp.train.splits import SplitSource

DEFAULT_TIMEOUT_S = 300.0
TIMEOUT_ENV = "HM2BP_DIST_TIMEOUT"
_ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")

T = TypeVar("T")


class DistributedError(Hm2bpError, RuntimeError):
    """A collective or the process-group setup failed (a rank died, hung or cannot be reached)."""


@dataclass(frozen=True)
class World:
    """This process's place in the run. `device` is where collective tensors live (the rank's GPU for NCCL)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None  # None: a single process, no process group
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that prints and writes files."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.backend is not None and self.world_size > 1

    def describe(self) -> str:
        return f"rank {self.rank}/{self.world_size}" if self.is_distributed else "single process"


SINGLE = World()


# ------------------------------------------------------------------------------------------------ setup


def env_ranks(environ: Mapping[str, str] | None = None) -> tuple[int, int, int] | None:
    """`(rank, world_size, local_rank)` from torchrun's variables, or None outside torchrun."""
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env and "RANK" not in env:
        return None
    try:
        rank, world, local = (int(env.get(k, "0" if k == "LOCAL_RANK" else "")) for k in _ENV_KEYS)
    except ValueError:
        raise DistributedError(
            f"RANK={env.get('RANK')!r}, WORLD_SIZE={env.get('WORLD_SIZE')!r}, LOCAL_RANK={env.get('LOCAL_RANK')!r}: "
            "expected integers (launch with torchrun, which sets them)"
        ) from None
    if world < 1 or not 0 <= rank < world or local < 0:
        raise DistributedError(f"invalid ranks: RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local}")
    return rank, world, local


def timeout_from_env(default: float = DEFAULT_TIMEOUT_S, environ: Mapping[str, str] | None = None) -> float:
    """Collective timeout in seconds: `$HM2BP_DIST_TIMEOUT` when set, else `default`."""
    env = os.environ if environ is None else environ
    raw = env.get(TIMEOUT_ENV)
    if raw is None:
        return float(default)
    try:
        value = float(raw)
    except ValueError:
        raise DistributedError(f"{TIMEOUT_ENV}={raw!r}: expected a number of seconds") from None
    if not value > 0:
        raise DistributedError(f"{TIMEOUT_ENV}={raw!r}: must be > 0 seconds")
    return value


def init_world(device: str = "auto", timeout_s: float | None = None) -> tuple[World, torch.device]:
    """Join torchrun's process group when launched by it; returns `(world, training device of this rank)`.

    `device` "auto" picks CUDA when available. On CUDA, local rank k trains on `cuda:k` and the backend is NCCL;
    on CPU it is gloo. Outside torchrun, or with WORLD_SIZE 1, no group is created and `SINGLE` is returned.
    `timeout_s` (default `$HM2BP_DIST_TIMEOUT` or 300 s) bounds setup and every collective.
    """
    if str(device) not in ("auto", "cpu", "cuda") and not str(device).startswith("cuda:"):
        raise DistributedError(f"device must be auto, cpu, cuda or cuda:K; got {device!r}")
    timeout = timeout_from_env() if timeout_s is None else float(timeout_s)
    if not timeout > 0:
        raise DistributedError(f"distributed timeout must be > 0 seconds; got {timeout_s}")
    use_cuda = str(device).startswith("cuda") or (str(device) == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise DistributedError("device 'cuda' requested but CUDA is not available (use `device` cpu or auto)")
    ranks = env_ranks()
    if ranks is None or ranks[1] == 1:
        # an explicit `cuda:K` names the GPU of a single process; under torchrun the local rank picks it
        dev = torch.device(str(device) if str(device).startswith("cuda:") else "cuda" if use_cuda else "cpu")
        return World(timeout_s=timeout, device=dev), dev
    rank, world_size, local_rank = ranks
    missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise DistributedError(f"{', '.join(missing)} not set: launch with torchrun (it sets the rendezvous)")
    if use_cuda:
        n_gpus = torch.cuda.device_count()
        if local_rank >= n_gpus:
            raise DistributedError(
                f"rank {rank}: local rank {local_rank} but only {n_gpus} GPU(s) on this machine "
                "(start at most one process per GPU: torchrun's nproc_per_node)"
            )
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
        backend = "nccl"
    else:
        dev = torch.device("cpu")
        backend = "gloo"
    kwargs: dict[str, Any] = {"device_id": dev} if backend == "nccl" else {}
    try:
        if not dist.is_initialized():
            dist.init_process_group(backend, rank=rank, world_size=world_size,
                                    timeout=datetime.timedelta(seconds=timeout), **kwargs)
    except Exception as exc:  # rendezvous failures come as RuntimeError, DistStoreError, TimeoutError, ...
        raise DistributedError(
            f"rank {rank}/{world_size}: cannot join the process group at "
            f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']} within {timeout:g} s ({_first_line(exc)})"
        ) from exc
    return World(rank, world_size, local_rank, backend, dev, timeout), dev


def shutdown(world: World) -> None:
    """Leave the process group (after a successful run; a failed run just exits)."""
    if world.is_distributed and dist.is_initialized():
        dist.destroy_process_group()


def _first_line(exc: BaseException) -> str:
    """`Type: first line of the message`, without the `[file.cc:123]` source location gloo/NCCL put first."""
    lines = str(exc).strip().splitlines()
    first = re.sub(r"^\[[^\]]*\]\s*", "", lines[0]) if lines else ""
    return f"{type(exc).__name__}: {first}"


@contextmanager
def collective(world: World, what: str):
    """Turn a failed collective into a `DistributedError` that says which step failed and what to do."""
    try:
        yield
    except DistributedError:
        raise
    except Exception as exc:  # gloo/NCCL raise RuntimeError / DistBackendError / DistNetworkError
        raise DistributedError(
            f"{world.describe()}: {what} failed: another rank died, was killed or did not answer within "
            f"{world.timeout_s:g} s ({_first_line(exc)}); see the first failing rank's output; the run can be "
            "continued from its last checkpoint with `resume`"
        ) from exc


# ------------------------------------------------------------------------------------------------ sharding


def rank_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rank `rank`'s contiguous share `[lo, hi)` of `n` items: shares in rank order, sizes differ by at most 1
    (`n = world_size * B` gives every rank exactly B)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside [0, {world_size})")
    if n < 0:
        raise ValueError(f"n must be >= 0; got {n}")
    return rank * n // world_size, (rank + 1) * n // world_size


class SplitShard:
    """Read-only view of samples `[start, stop)` of a split, itself a `hm2bp.train.splits.SplitSource`.

    Evaluation gives each rank a contiguous shard (reading 1/N of the split); `offset` maps its sample indices back;
    `n_total` is the number of samples all shards together cover (default: the whole split).
    """

    def __init__(self, split: SplitSource, start: int, stop: int, n_total: int | None = None):
        if not 0 <= start <= stop <= len(split):
            raise ValueError(f"shard [{start}, {stop}) outside split of {len(split)} samples")
        self.split, self.offset, self.stop = split, int(start), int(stop)
        self.n_total = len(split) if n_total is None else int(n_total)
        for name in ("n_units", "n_steps", "unit_shape", "classes", "dt_us"):
            setattr(self, name, getattr(split, name))
        self.name = getattr(split, "name", "?")

    def __len__(self) -> int:
        return self.stop - self.offset

    @property
    def labels(self) -> np.ndarray:
        return np.asarray(self.split.labels[self.offset : self.stop])

    def read_range(self, start: int, stop: int):
        if not 0 <= start <= stop <= len(self):
            raise IndexError(f"range [{start}, {stop}) outside shard of {len(self)} samples")
        return self.split.read_range(self.offset + start, self.offset + stop)


def shard_split(split: SplitSource, world: World, limit: int | None = None) -> SplitShard:
    """This rank's contiguous shard of the first `limit` (default all) samples of `split`."""
    n = len(split) if limit is None else min(int(limit), len(split))
    lo, hi = rank_bounds(n, world.rank, world.world_size)
    return SplitShard(split, lo, hi, n)


# ------------------------------------------------------------------------------------------------ reductions


def reduce_step(
    grads: Mapping[str, torch.Tensor], n_samples: int, world: World, stats: Sequence[float] = ()
) -> tuple[dict[str, torch.Tensor], int, list[float]]:
    """Gradient of the global batch from each rank's batch-mean gradient, weighted by its sample count.

    Returns `(grads, global sample count, sums of `stats` over ranks as Python floats)`. One all-reduce
    (float64) carries `n_r * g_r` of every layer, `n_r` and the stats (e.g. batch loss, correct count). A single
    process gets its own values back unchanged.
    """
    if not world.is_distributed:
        return dict(grads), int(n_samples), [float(x) for x in stats]
    parts = [g.detach().to(world.device, torch.float64).reshape(-1) * float(n_samples) for g in grads.values()]
    tail = torch.tensor([float(n_samples), *map(float, stats)], dtype=torch.float64, device=world.device)
    flat = torch.cat([*parts, tail])
    with collective(world, "gradient all-reduce"):
        dist.all_reduce(flat)
    total = float(flat[-1 - len(stats)])
    if total <= 0:
        raise DistributedError(f"{world.describe()}: global batch with no samples (reduced count {total})")
    out, pos = {}, 0
    for name, g in grads.items():
        out[name] = (flat[pos : pos + g.numel()] / total).view(g.shape).to(g.device, g.dtype)
        pos += g.numel()
    return out, int(round(total)), flat[pos + 1 :].cpu().tolist()


def all_reduce_sum(values: np.ndarray, world: World, what: str = "all-reduce") -> np.ndarray:
    """Element-wise sum over ranks of a float64/int64 numpy array (returned as a new array; same on every rank)."""
    values = np.asarray(values)
    if not world.is_distributed:
        return values.copy()
    dtype = torch.int64 if np.issubdtype(values.dtype, np.integer) or values.dtype == bool else torch.float64
    t = torch.from_numpy(np.ascontiguousarray(values)).to(world.device, dtype)
    with collective(world, what):
        dist.all_reduce(t)
    return t.cpu().numpy()


def gather_flags(flags: np.ndarray, world: World) -> np.ndarray:
    """OR over ranks of bool [n] arrays where each rank set only its own samples (e.g. correctness for boost)."""
    return all_reduce_sum(np.asarray(flags, dtype=np.int64), world, "correctness all-reduce") > 0


def gather_disjoint(arrays: Sequence[np.ndarray], n_total: int, offset: int, world: World) -> list[np.ndarray]:
    """Full int64 arrays [n_total] from each rank's part `arrays[k]` placed at `[offset, offset + len)`.

    The parts of all ranks must tile [0, n_total) (as `shard_split` does); one collective for all arrays.
    """
    if not world.is_distributed:
        return [np.asarray(a, dtype=np.int64) for a in arrays]
    buf = np.zeros((len(arrays), n_total), dtype=np.int64)
    for k, a in enumerate(arrays):
        buf[k, offset : offset + len(a)] = a
    return list(all_reduce_sum(buf, world, "evaluation all-reduce"))


# ------------------------------------------------------------------------------------------------ agreement


def on_main(fn: Callable[[], T], world: World, what: str = "setup") -> T:
    """Run `fn` on rank 0 only and return its result on every rank; an exception there is raised on every rank
    (so a setup error on rank 0 stops all ranks at once, and other machines need no copy of its files)."""
    if not world.is_distributed:
        return fn()
    box: list[Any] = [None]
    if world.is_main:
        try:
            box[0] = ("ok", fn())
        except Exception as exc:  # forwarded to the other ranks, then raised here too
            box[0] = ("error", exc)
    with collective(world, f"{what} broadcast from rank 0"):
        dist.broadcast_object_list(box, src=0, device=world.device if world.backend == "nccl" else None)
    kind, value = box[0]
    if kind == "error":
        raise value
    return value


def check_same(values: Mapping[str, Any], world: World) -> None:
    """Fail on every rank when the ranks disagree on any of `values` (JSON-able: store fingerprint, config, ...).

    Catches launches where machines got different stores or options, which would otherwise train silently wrong.
    """
    if not world.is_distributed:
        return
    mine = {k: hashlib.sha256(json.dumps(v, sort_keys=True, default=str).encode()).hexdigest()
            for k, v in values.items()}
    everyone: list[Any] = [None] * world.world_size
    with collective(world, "consistency check"):
        dist.all_gather_object(everyone, mine)
    for key in values:
        seen = {r: d[key] for r, d in enumerate(everyone)}
        odd = sorted(r for r, h in seen.items() if h != seen[0])
        if odd:
            raise DistributedError(
                f"{world.describe()}: ranks {odd} differ from rank 0 in {key}; every rank must run the same "
                "command on the same store"
            )
