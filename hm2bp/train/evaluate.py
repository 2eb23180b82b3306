"""Evaluation: predictions of a split's samples by a network's forward pass, and the network of a checkpoint."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hm2bp.config import ConfigError, NetworkConfig, load_config
from hm2bp.errors import SetupError
from hm2bp.model import Network
from hm2bp.train.checkpoint import CheckpointError, check_against_network
from hm2bp.train.loader import SpikeLoader, resolve_device
from hm2bp.train.metrics import confusion_matrix
from hm2bp.train.neurobench import NeuroBenchMeter
from hm2bp.train.progress import Progress
from hm2bp.train.splits import SplitSource

#: Samples per forward pass in test passes (larger batches amortise the per-call overhead of the forward).
EVAL_BATCH = 128


def check_compatible(config: NetworkConfig, split: SplitSource, expected_inputs: int | None = None,
                     where: str = "config", config_file: str | Path | None = None, training: bool = True) -> None:
    """Clear errors when a store split cannot feed the network of `config`; `training`: a class-count mismatch
    says how to adapt the config (`config_file`: the file it came from)."""
    if expected_inputs is not None and expected_inputs != split.n_units:
        raise SetupError(f"store has {split.n_units} units, {where} expects {expected_inputs}")
    if split.n_steps != config.steps:
        raise SetupError(
            f"store has {split.n_steps} time steps per sample, {where} simulates steps = {config.steps} "
            "(re-encode the store with that many steps or change `steps`)"
        )
    n_out, n_classes = config.layers[-1].size, len(split.classes)
    if n_out != n_classes and not training:
        raise SetupError(f"store has {n_classes} classes, {where} has {n_out} output neurons (it was trained on a "
                         f"store with {n_out} classes)")
    if n_out != n_classes:
        start = f"a copy of {config_file}" if config_file is not None else "your config"
        raise SetupError(f"store has {n_classes} classes, {where} has {n_out} output neurons: to train on this store, "
                         f"write a config with `size = {n_classes}` in its output layer {config.layers[-1].name!r} "
                         f"(e.g. {start}) and pass it with `config_file` FILE")


@dataclass
class EvalResult:
    """Predictions of a split: `labels`, `predictions` int64 [n], `indices` int64 [n] (sample index)."""

    labels: np.ndarray
    predictions: np.ndarray
    indices: np.ndarray
    seconds: float = 0.0

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.labels == self.predictions)) if len(self.labels) else float("nan")

    def confusion(self, n_classes: int) -> np.ndarray:
        return confusion_matrix(self.labels, self.predictions, n_classes)


@torch.no_grad()
def evaluate(network, split: SplitSource, batch_size: int = EVAL_BATCH, device: str | torch.device = "cpu",
             limit: int | None = None, progress: Progress | None = None,
             meter: NeuroBenchMeter | None = None) -> EvalResult:
    """Predict every sample of `split` (the first `limit`) with `network.predict` (forward only); `meter`, if given,
    accumulates NeuroBench's workload metrics of the same forward passes."""
    return evaluate_loader(network, SpikeLoader(split, batch_size, device=device, shuffle=False, limit=limit),
                           progress, meter)


@torch.no_grad()
def evaluate_loader(network, loader: SpikeLoader, progress: Progress | None = None,
                    meter: NeuroBenchMeter | None = None) -> EvalResult:
    """Predict every sample a (sequential) loader serves; predictions are argmax of counts (algorithm.md §3.13)."""
    t0 = time.perf_counter()
    if progress is not None:
        progress.evaluating(loader.split.name, loader.n)
    labels, preds, indices = [], [], []
    for batch in loader.epoch(0):
        inputs, counts = network.spike_counts(batch.spikes)  # every layer's counts (what `predict` computes too)
        if meter is not None:
            meter.add(inputs, counts)
        p = torch.argmax(counts[network.layer_names[-1]], dim=1)
        preds.append(p)
        labels.append(batch.labels)
        indices.append(batch.indices)
    # One read-back per pass: the predictions stay on the device until every batch is enqueued.
    return EvalResult(torch.cat(labels).cpu().numpy().astype(np.int64), torch.cat(preds).cpu().numpy().astype(np.int64),
                      np.concatenate(indices), time.perf_counter() - t0)


def load_network_from_checkpoint(ckpt: dict[str, Any], device: str | torch.device = "cpu",
                                 path: str | Path = "checkpoint", backend: str = "auto"):
    """Rebuild the trained network of a checkpoint (on `device`, with the kernel set `backend`); CheckpointError
    when its config, input size or weights do not fit together."""
    try:
        config = load_config(ckpt["config"])
        net = Network.from_config(config, int(ckpt["n_inputs"]), tuple(ckpt["input_shape"]),
                                           backend=backend)
    except (ConfigError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: its network config does not build ({exc})") from exc
    check_against_network(ckpt, path, net.weights())
    net.load_weights({k: v for k, v in ckpt["weights"].items()})
    return net.to(resolve_device(device))
