"""Seeded, stratified splits and subsets of a dataset: the same on every machine, for every worker count.

Every sample has a *key*: a string that identifies it within its dataset (a file path relative to the source
folder, ``"<file>#<segment>"``, or ``"<split>:<index>"`` for samples of one file). Within each class, samples are
ranked by ``blake2b-64(seed, key)`` (ties by key), so the choice depends only on the seed and on the keys: not
on numpy's random streams, the file system's listing order, the platform or the number of workers, and a sample
keeps its side of the split when other files are added to the folder.

* `stratified_split(labels, keys, test_fraction, seed)` -> (train indices, test indices): round(F * n) test
  samples in all, shared out over the classes by largest remainder (each class gets F of its samples, to within
  one);
* `stratified_subset(labels, keys, n, seed)` -> indices of n samples with the class proportions of the whole
  (largest remainder again): what ``--max-train N`` / ``--max-test N`` take instead of the first N;
* `split_record(...)` / `subset_record(...)`: what the store's ``split`` attribute records.

Indices come back sorted, so the chosen samples keep the dataset's order.

Use in a dataset (the pattern the event and image datasets follow)::

    from spikedata.splits import stratified_split, stratified_subset, split_record, subset_record

    keys = [relative_path_of(i) for i in range(n)]            # stable per-sample identifiers
    train, test = stratified_split(labels, keys, 0.2, seed)    # only when the dataset publishes no split
    keep = stratified_subset(labels[train], [keys[i] for i in train], max_train, seed)
    train = train[keep]
    attrs["split"] = {"train": ..., "test": ...}              # records from split_record / subset_record
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from spikedata.text import raw_bytes

#: How the ranking is computed (recorded in the store so that a reader can re-derive the split).
METHOD = "stratified; rank within class by blake2b-64(seed, sample key), largest-remainder quotas"


def rank_keys(keys: Sequence[str], seed: int) -> np.ndarray:
    """uint64 rank of every key for `seed`: the first 8 bytes (little-endian) of blake2b(seed || 0 || key), the key
    as UTF-8 (a file name's own bytes when it is not UTF-8)."""
    prefix = int(seed).to_bytes(8, "little", signed=True) + b"\x00"
    return np.array(
        [int.from_bytes(hashlib.blake2b(prefix + raw_bytes(k), digest_size=8).digest(), "little") for k in keys],
        dtype=np.uint64,
    )


def _order_within_classes(labels: np.ndarray, keys: Sequence[str], seed: int) -> dict[int, np.ndarray]:
    ranks = rank_keys(keys, seed)
    key_arr = np.asarray(keys, dtype=object)
    out = {}
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        # lexsort: last key is primary -> rank, then key text for ties
        order = np.lexsort((key_arr[members].astype(str), ranks[members]))
        out[int(c)] = members[order]
    return out


def largest_remainder(counts: np.ndarray, total: int) -> np.ndarray:
    """Integer quotas [k] summing to `total`, proportional to `counts` (largest remainder; ties to the lower
    class index); never more than a class has."""
    counts = np.asarray(counts, dtype=np.int64)
    n = int(counts.sum())
    if total < 0 or total > n:
        raise ValueError(f"cannot take {total} of {n} samples")
    if n == 0:
        return np.zeros_like(counts)
    exact = counts * total / n
    quota = np.floor(exact).astype(np.int64)
    left = total - int(quota.sum())
    order = np.lexsort((np.arange(len(counts)), -(exact - quota)))
    for c in order:
        if left == 0:
            break
        if quota[c] < counts[c]:
            quota[c] += 1
            left -= 1
    return quota


def _check(labels, keys) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != len(keys):
        raise ValueError(f"{len(labels)} labels for {len(keys)} keys")
    if len(set(keys)) != len(keys):
        raise ValueError("sample keys must be unique")
    return labels


def stratified_split(
    labels: Sequence[int] | np.ndarray, keys: Sequence[str], test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, test indices), both sorted: round(test_fraction * n) test samples, stratified by class."""
    labels = _check(labels, keys)
    if not 0 < test_fraction < 1:
        raise ValueError(f"test fraction must lie strictly between 0 and 1, got {test_fraction}")
    ordered = _order_within_classes(labels, keys, seed)
    classes = sorted(ordered)
    counts = np.array([len(ordered[c]) for c in classes])
    quota = largest_remainder(counts, int(round(test_fraction * len(labels))))
    test = [ordered[c][: quota[k]] for k, c in enumerate(classes)]
    test_idx = np.sort(np.concatenate(test)) if test else np.zeros(0, np.int64)
    train_mask = np.ones(len(labels), dtype=bool)
    train_mask[test_idx] = False
    return np.flatnonzero(train_mask), test_idx.astype(np.int64)


def stratified_subset(labels: Sequence[int] | np.ndarray, keys: Sequence[str], n: int, seed: int) -> np.ndarray:
    """Sorted indices of `n` samples (all when n >= len), class proportions kept (largest remainder)."""
    labels = _check(labels, keys)
    if n < 0:
        raise ValueError(f"subset size must be >= 0, got {n}")
    if n >= len(labels):
        return np.arange(len(labels))
    ordered = _order_within_classes(labels, keys, seed)
    classes = sorted(ordered)
    quota = largest_remainder(np.array([len(ordered[c]) for c in classes]), n)
    chosen = [ordered[c][: quota[k]] for k, c in enumerate(classes)]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def split_record(test_fraction: float, seed: int, source_split: str, n_train: int, n_test: int) -> dict[str, Any]:
    """The store's record of a split made here (the dataset publishes none)."""
    return {"kind": "seeded", "method": METHOD, "test_fraction": float(test_fraction), "seed": int(seed),
            "from": source_split, "n_train": int(n_train), "n_test": int(n_test)}  # fmt: skip


def subset_record(n_kept: int, n_of: int, seed: int) -> dict[str, Any]:
    """The store's record of a ``--max-*`` subset of one split."""
    return {"method": METHOD, "seed": int(seed), "kept": int(n_kept), "of": int(n_of)}
