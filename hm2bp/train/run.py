"""Setting up a training run: the splits, the network and the trainer, the run directory and its lock, resume.

`prepare_run` checks a store against a config, builds the network and the trainer, takes the run directory's lock
(`hm2bp.train.rundir`) and restores a checkpoint to resume; `start_fit` and `run_fit` are what `hm2bp fit` does
with its options, `start_eval` what `hm2bp eval` does before its evaluation pass. A resumed run must have the same
config (but for the epochs), store, splits, shuffle buffer and global batch: every difference is a SetupError naming
it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hm2bp.config import ConfigError, NetworkConfig, load_config
from hm2bp.errors import SetupError
from hm2bp.kernels import resolve_backend
from hm2bp.model import Network
from hm2bp.presets import load_config_file, load_preset, preset_meta
from hm2bp.train import distributed as dp
from hm2bp.train.checkpoint import CheckpointError, atomic_write_text, load_checkpoint
from hm2bp.train.device_data import DEFAULT_RESIDENT_FRACTION
from hm2bp.train.evaluate import check_compatible, load_network_from_checkpoint
from hm2bp.train.loader import DEFAULT_BUFFER, resolve_device
from hm2bp.train.metrics import write_metrics
from hm2bp.train.progress import Progress
from hm2bp.train.rundir import LAST, METRICS, RUN_FILES, RUN_INFO, RunLock
from hm2bp.train.splits import VALID_SPLIT_NAMES, SplitSource, SubsetSplit, holdout
from hm2bp.train.trainer import Trainer
from spikedata.splits import stratified_subset
from spikedata.store import is_url, open_store


def nonempty_split(store, name: str, role: str):
    """The split `name` of `store` (SetupError naming the `role` when it is missing or empty)."""
    if name not in store.splits:
        raise SetupError(f"{store.path}: no {role} split {name!r}; the store has splits {store.splits}")
    split = store[name]
    if len(split) == 0:
        raise SetupError(f"{store.path}: {role} split {name!r} is empty (0 samples)")
    return split


def _config_without(d: dict[str, Any], *train_keys: str) -> dict[str, Any]:
    d = json.loads(json.dumps(d))
    for k in train_keys:
        d["train"].pop(k, None)
    return d


def _diff_keys(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff_keys(a.get(k), b.get(k), f"{path}.{k}" if path else k)
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [p for i, (x, y) in enumerate(zip(a, b, strict=True)) for p in _diff_keys(x, y, f"{path}[{i}]")]
    return [] if a == b else [path or "<root>"]


def checkpoint_to_resume(store, config: NetworkConfig, last: Path, resume: bool, overwrite: bool,
                          global_batch: int) -> dict[str, Any] | None:
    """The checkpoint a resumed run continues (checked against the store and config), or None for a new run."""
    if not resume:
        if last.is_file() and not overwrite:
            raise SetupError(
                f"{last.parent} already holds a run ({LAST}); pass `resume` to continue it, `overwrite` to replace "
                "it, or choose another `run_dir`"
            )
        return None
    if not last.is_file():
        raise SetupError(f"`resume`: no checkpoint {last} to resume from")
    ckpt = load_checkpoint(last)
    if ckpt["store"].get("fingerprint") != store.fingerprint:
        raise SetupError(f"`resume`: {last} was trained on a different store (fingerprint differs)")
    try:
        saved = load_config(ckpt["config"])
    except ConfigError as exc:
        raise CheckpointError(f"{last}: the config stored in the checkpoint is invalid ({exc})") from exc
    keys = ("epochs", "batch_size")  # the batch is compared as the global batch below
    diff = _diff_keys(_config_without(saved.to_dict(), *keys), _config_without(config.to_dict(), *keys))
    if diff:
        raise SetupError(f"`resume`: the config differs from the checkpoint's at {', '.join(diff[:5])}")
    saved_batch = int(ckpt.get("global_batch", saved.train.batch_size))
    if saved_batch != global_batch:
        ranks = global_batch // config.train.batch_size
        hint = f"; with {ranks} rank(s) pass `batch_size` {saved_batch // ranks}" if saved_batch % ranks == 0 else ""
        raise SetupError(f"`resume`: the checkpoint was trained at global batch {saved_batch} (ranks x "
                         f"train.batch_size), this run's is {global_batch}{hint}")
    return ckpt


def validation_split(store, train: SplitSource, valid_split: str | None, val_fraction: float | None,
                     max_train: int | None, seed: int,
                     test_split: str | None = None) -> tuple[SplitSource, SplitSource | None, int | None, dict | None]:
    """The training and validation samples of a run: `(train, valid, max_train for the loader, description)`.

    `max_train` N trains on a seeded (`seed`), stratified subset of N training samples (`spikedata.splits`).
    `val_fraction` F holds out a seeded, stratified fraction F of those (`hm2bp.train.splits.holdout`); the rest is
    trained on. Otherwise `valid_split` names a split of the store ("auto": the store's own validation split,
    `hm2bp.train.splits.VALID_SPLIT_NAMES`, when it has one; None: none).
    The description (None without validation) goes into the checkpoints, so that a resumed run uses the same."""
    own = next((name for name in VALID_SPLIT_NAMES if name in store.splits and name not in (train.name, test_split)),
               None)
    if max_train is not None and max_train < len(train):
        # a seeded, stratified subset, not the first samples (a store sorted by speaker or class would give a few
        # speakers or classes only)
        keep = stratified_subset(np.asarray(train.labels), [str(i) for i in range(len(train))], max_train, seed)
        train, max_train = SubsetSplit(train, keep, train.name), None
    if val_fraction is not None:
        if valid_split not in ("auto", None) or (valid_split == "auto" and own is not None):
            name = own if valid_split == "auto" else valid_split
            raise SetupError(f"{store.path}: the store has its own validation split {name!r}; give either "
                             "`val_fraction` or a validation split, not both")
        n = len(train) if max_train is None else min(max_train, len(train))
        try:
            kept, held = holdout(train, n, float(val_fraction), seed)
        except ValueError as exc:
            raise SetupError(str(exc)) from None
        if len(kept) == 0 or len(held) == 0:
            raise SetupError(f"`val_fraction` {val_fraction:g} of {n} training samples leaves "
                             f"{len(kept)} to train on and {len(held)} to validate on")
        info = {"split": f"{train.name} (held out)", "fraction": float(val_fraction), "seed": int(seed),
                "n": int(len(held))}
        return SubsetSplit(train, kept, train.name), SubsetSplit(train, held, "valid"), None, info
    name = own if valid_split == "auto" else valid_split
    if name is None:
        return train, None, max_train, None
    if name in (train.name, test_split):
        raise SetupError(f"validation split {name!r} is also the {'training' if name == train.name else 'test'} "
                         "split")
    valid = nonempty_split(store, name, "validation")
    return train, valid, max_train, {"split": name, "n": len(valid)}


def prepare_run(
    store,
    config: NetworkConfig,
    run_dir: str | Path,
    *,
    expected_inputs: int | None = None,
    config_source: str = "config",
    resume: bool = False,
    overwrite: bool = False,
    device: str = "auto",
    max_train: int | None = None,
    max_test: int | None = None,
    shuffle_buffer: int = DEFAULT_BUFFER,
    train_split: str = "train",
    test_split: str | None = "test",
    valid_split: str | None = "auto",
    val_fraction: float | None = None,
    command: str = "",
    world: dp.World | None = None,
    backend: str = "auto",
    resident_fraction: float = DEFAULT_RESIDENT_FRACTION,
    report_every: int | None = None,
) -> Trainer:
    """Open the splits, check them against `config`, build the network and the trainer, handle `resume`.

    `test_split=None` trains without a test pass; "test" is skipped silently when the store has no such split.
    Validation (`valid_split`, `val_fraction`): see `validation_split`; `best.pt` is chosen on it when there is one.
    `overwrite` starts a new run in a directory that holds one (its run files are deleted first).
    Data-parallel (`world`): rank 0 alone reads the checkpoint and writes the run directory; the other ranks get the
    checkpoint (or rank 0's error) from it. `resume` needs the same global batch (world size x batch size).
    `backend`: the network's kernel set (`hm2bp.kernels`); `resident_fraction`: the share of the GPU's free memory
    the training events may take to stay on it (`hm2bp.train.loader`); `report_every`: steps between read-backs.
    """
    world = world or dp.SINGLE
    run_dir = Path(run_dir)
    train = nonempty_split(store, train_split, "training")
    check_compatible(config, train, expected_inputs, config_source)
    test = None
    if test_split is not None and (test_split in store.splits or test_split != "test"):
        test = nonempty_split(store, test_split, "test")
    if max_train is not None and max_train < 1:
        raise SetupError(f"`max_train` must be >= 1; got {max_train}")
    dev = resolve_device(device)
    try:
        resolve_backend(backend, dev)
    except ValueError as exc:
        raise SetupError(str(exc)) from None
    last = run_dir / LAST
    if resume and overwrite:
        raise SetupError("`resume` and `overwrite` exclude each other")
    dp.check_same({"store": store.fingerprint, "config": config.to_dict(), "max_train": max_train,
                   "max_test": max_test, "splits": [train_split, test_split, valid_split], "resume": resume,
                   "overwrite": overwrite, "shuffle_buffer": shuffle_buffer, "val_fraction": val_fraction}, world)
    train, valid, loader_max_train, validation = validation_split(
        store, train, valid_split, val_fraction, max_train, config.train.seed, test.name if test is not None else None)
    global_batch = config.train.batch_size * world.world_size
    lock = RunLock(run_dir) if world.is_main else None

    def locked_checkpoint() -> dict[str, Any] | None:
        lock.acquire()
        return checkpoint_to_resume(store, config, last, resume, overwrite, global_batch)

    try:
        ckpt = dp.on_main(locked_checkpoint, world, "checkpoint")
        trainer = build_trainer(store, config, train, test, valid, validation, config_source, run_dir, dev,
                                 loader_max_train, max_test, shuffle_buffer, train_split, world, backend,
                                 resident_fraction, report_every)
        if ckpt is not None:
            trainer.restore(ckpt, last)
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    trainer.run_lock = lock  # held as long as the trainer lives (or until `trainer.run_lock.release()`)
    if not world.is_main:  # rank 0 alone writes the run directory
        return trainer
    info = trainer.store_info
    if overwrite:
        for name in RUN_FILES:  # LAST first: the directory never looks resumable
            (run_dir / name).unlink(missing_ok=True)
    if ckpt is not None:
        write_metrics(run_dir / METRICS, trainer.state.history)  # drop records newer than the checkpoint
    else:
        atomic_write_text(run_dir / RUN_INFO, json.dumps({
            "command": command, "store": info, "device": str(dev), "config": config.to_dict(),
            "max_train": max_train, "max_test": max_test, "shuffle_buffer": shuffle_buffer,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "world_size": world.world_size,
            "backend": trainer.net.backend,
        }, indent=2) + "\n")
    return trainer


def build_trainer(store, config: NetworkConfig, train, test, valid, validation, config_source: str, run_dir: Path,
                   dev, max_train, max_test, shuffle_buffer: int, train_split: str, world: dp.World, backend: str,
                   resident_fraction: float, report_every: int | None) -> Trainer:
    generator = torch.Generator().manual_seed(config.train.seed)
    net = Network.from_config(config, train.n_units, tuple(train.unit_shape), generator=generator,
                                  backend=backend).to(dev)
    info = {"path": str(store.path), "fingerprint": store.fingerprint, "train_split": train_split,
            "test_split": test.name if test is not None else None, "validation": validation}
    store_name = str(store.path).rstrip("/").rsplit("/", 1)[-1]
    return Trainer(net, train, test, valid_split=valid, device=dev, run_dir=run_dir, max_train=max_train,
                   max_test=max_test, store_info=info, shuffle_buffer=shuffle_buffer, world=world,
                   run_title=f"{config_source}, store {store_name}", resident_fraction=resident_fraction,
                   report_every=report_every)


# --------------------------------------------------------------------------------------------------- hm2bp fit
@dataclass
class FitRun:
    """A run set up by `start_fit`: its trainer, run directory, config and where the config came from."""

    trainer: Trainer
    run_dir: Path
    config: NetworkConfig
    source: str  # "preset 'NAME'" or "config PATH"


def fit_config(preset: str | None, config_file: Path | None, overrides: dict[str, Any] | None = None,
               augment: bool | None = None) -> tuple[NetworkConfig, int | None, str]:
    """The config of a run (a shipped preset, else a config file), with `overrides` of `[train]` keys and the
    `[augment]` switch applied; also the input size its `[meta]` expects (or None) and its description."""
    if preset is not None:
        config, inputs = load_config(load_preset(preset)), preset_meta(preset).get("inputs")
        source = f"preset {preset!r}"
    else:
        config, meta = load_config_file(config_file)
        inputs, source = meta.get("inputs"), f"config {config_file}"
    if overrides:
        config = config.replace_train(**overrides)
    if augment is not None:
        config = config.replace_augment(enabled=augment)
    return config, inputs, source


def default_run_dir(store: str, preset: str | None, config_file: Path | None) -> Path:
    """`runs/<store name>-<preset or config file name>`."""
    name = store.rstrip("/").rsplit("/", 1)[-1] if is_url(store) else Path(store).resolve().name
    return Path("runs") / f"{name.removesuffix('.zarr')}-{preset or config_file.stem}"


def start_fit(store: str, *, preset: str | None, config_file: Path | None, overrides: dict[str, Any] | None = None,
              augment: bool | None = None, out: Path | None = None, **options: Any) -> FitRun:
    """Everything `hm2bp fit` does before the first epoch: the config (`fit_config`), the store (a path or an fsspec
    URL), the run directory (`out`, default `default_run_dir`) and `prepare_run(..., **options)`."""
    config, inputs, source = fit_config(preset, config_file, overrides, augment)
    opened = open_store(store)
    run_dir = out or default_run_dir(store, preset, config_file)
    trainer = prepare_run(opened, config, run_dir, expected_inputs=inputs, config_source=source, **options)
    return FitRun(trainer, run_dir, config, source)


def run_fit(trainer: Trainer, progress: Progress | None = None) -> None:
    """Train until the config's epochs are done; the run directory's lock is released however this ends."""
    try:
        trainer.fit(progress=progress)
    finally:
        if trainer.run_lock is not None:
            trainer.run_lock.release()


# -------------------------------------------------------------------------------------------------- hm2bp eval
@dataclass
class EvalRun:
    """A checkpoint's network ready to evaluate a store split (`start_eval`); `same_store` is False when the store
    is not the one the checkpoint was trained on (fingerprints differ)."""

    network: Network
    checkpoint: dict[str, Any]
    split: SplitSource
    device: torch.device
    same_store: bool


def start_eval(store: str, checkpoint: Path, split: str = "test", device: str = "auto",
               backend: str = "auto") -> EvalRun:
    """Everything `hm2bp eval` does before its pass: the checkpoint (checked), the store split (SetupError when it is
    missing or empty), the network on `device` with the kernel set `backend`, checked against the split."""
    ckpt = load_checkpoint(checkpoint)
    opened = open_store(store)
    if split not in opened.splits:
        raise SetupError(f"{store}: no split {split!r}; the store has splits {opened.splits}")
    data = opened[split]
    if len(data) == 0:
        raise SetupError(f"{store}: split {split!r} is empty (0 samples)")
    dev = resolve_device(device)
    net = load_network_from_checkpoint(ckpt, dev, checkpoint, backend)  # checks the config and the weights
    check_compatible(net.config, data, int(ckpt["n_inputs"]), f"checkpoint {checkpoint}")
    return EvalRun(net, ckpt, data, dev, ckpt["store"].get("fingerprint") == opened.fingerprint)
