"""Synthetic, learnable spike stores for the trainer tests (class-dependent Poisson rates).

Sample i has label `i % n_classes` (shuffled by a seeded permutation of the labels) and Poisson spikes with rate
`high` on the units of its class (units u with u % n_classes == label) and `low` elsewhere; no spike at step 0.
Every sample depends only on (seed, split, i), so stores are reproducible.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from spikedata.pipeline import SplitJob, dense_to_block, encode_to_store
from spikedata.store import EventBlock


def synthetic_labels(n: int, n_classes: int, seed: int, split_id: int) -> np.ndarray:
    return np.random.default_rng([seed, split_id, 999]).permutation(np.arange(n) % n_classes).astype(np.int16)


def encode_synthetic(start: int, stop: int, *, n: int, n_units: int, n_steps: int, n_classes: int,
                     high: float, low: float, seed: int, split_id: int) -> EventBlock:
    """Samples [start, stop) of a synthetic split (picklable through functools.partial)."""
    labels = synthetic_labels(n, n_classes, seed, split_id)[start:stop]
    preferred = (np.arange(n_units)[None, :] % n_classes) == labels[:, None]  # [k, N]
    rates = np.where(preferred, high, low)
    raster = np.zeros((stop - start, n_steps, n_units), dtype=bool)
    for k, i in enumerate(range(start, stop)):
        rng = np.random.default_rng([seed, split_id, i])
        raster[k] = rng.random((n_steps, n_units)) < rates[k][None, :]
    raster[:, 0] = False
    return dense_to_block(raster, labels)


def make_store(path: Path, n_train: int = 200, n_test: int = 100, n_units: int = 40, n_steps: int = 50,
               n_classes: int = 4, high: float = 0.3, low: float = 0.02, seed: int = 0,
               empty_train: bool = False, n_valid: int = 0) -> Path:
    """Write a synthetic store with splits train/test (and `valid` when `n_valid` > 0) at `path` through
    `encode_to_store`."""
    common = dict(n_units=n_units, n_steps=n_steps, n_classes=n_classes, high=high, low=low, seed=seed)
    jobs = {}
    splits = [("train", 0 if empty_train else n_train), ("test", n_test)] + ([("valid", n_valid)] if n_valid else [])
    for split_id, (name, n) in enumerate(splits):
        jobs[name] = SplitJob(n, partial(encode_synthetic, n=n, split_id=split_id, **common), chunk=64)
    attrs = {
        "dataset": "synthetic",
        "encoder": {"name": "poisson-classes", "params": {"high": high, "low": low}},
        "n_units": n_units,
        "unit_shape": [n_units],
        "n_steps": n_steps,
        "dt_us": 1000,
        "classes": [f"c{k}" for k in range(n_classes)],
        "seed": seed,
        "source": {"files": {}},
    }
    return encode_to_store(path, attrs, jobs, workers=1, progress=False)


def tiny_network_toml(hidden: int = 20, outputs: int = 4, inputs: int | None = None, **train) -> str:
    """The config TOML of a small network for `make_store`'s stores (40 units, T 50): `hidden` -> `outputs` with
    lateral inhibition, the reference's loss margins scaled down; `inputs`: a `[meta] inputs` entry; `train` keys
    (lr, batch_size, epochs, ...)."""
    table = {"lr": 0.01, "batch_size": 8, "epochs": 3, **train}
    meta = f"[meta]\ninputs = {inputs}\n" if inputs is not None else ""
    return (f'steps = 50\n{meta}[[layers]]\nname = "hidden"\nsize = {hidden}\nthreshold = 5.0\n[[layers]]\n'
            f'name = "output"\nsize = {outputs}\nthreshold = 3.0\nlateral_inhibition = 1.0\n'
            "[loss]\ndesired = 10\nundesired = 2\nmargin = 2\n[train]\n"
            + "".join(f"{k} = {v}\n" for k, v in table.items()))
