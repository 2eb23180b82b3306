"""The root attributes of a store: their checks at open, the message for another format version, the fingerprint."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from typing import Any

from spikedata.store.format import FORMAT_VERSION, REQUIRED_ROOT_ATTRS, VERSION_HISTORY, StoreError, is_int
from spikedata.store.integrity import canonical_sha256, digested_root_attrs


def version_message(path, version: Any, attrs: dict[str, Any]) -> str:
    """What to tell the user of a store of format `version` (older or newer than this one)."""
    what = VERSION_HISTORY.get(version) if isinstance(version, int) else None
    older = isinstance(version, int) and version < FORMAT_VERSION
    command = (attrs.get("created_by") or {}).get("command") if isinstance(attrs.get("created_by"), dict) else None
    how = f" (it was written by `{command}`)" if command else ""
    if older:
        return (f"{path}: store format version {version} ({what or 'older'}); this spikedata reads only version "
                f"{FORMAT_VERSION} ({VERSION_HISTORY[FORMAT_VERSION]}): re-encode the dataset with this version"
                f"{how}")
    return (f"{path}: store format version {version!r}, this spikedata reads version {FORMAT_VERSION}; "
            f"re-encode the dataset with this version{how}, or use the spikedata that wrote it")


def check_root_attrs(path, attrs: dict[str, Any]) -> None:
    """Check the root attributes of the store at `path`: required keys, types, the splits and their digests
    (StoreError naming the attribute otherwise)."""
    missing = [k for k in (*REQUIRED_ROOT_ATTRS, "splits", "integrity") if k not in attrs]
    if missing:
        raise StoreError(f"{path}: store attributes missing {missing}")

    def bad(key: str, expected: str) -> StoreError:
        return StoreError(f"{path}: attribute {key!r} is {attrs[key]!r}, expected {expected}")

    for key in ("n_units", "n_steps"):
        if not is_int(attrs[key]) or attrs[key] < 1:
            raise bad(key, "a positive integer")
    if not isinstance(attrs["dt_us"], int | float) or isinstance(attrs["dt_us"], bool) or not (
        math.isfinite(attrs["dt_us"]) and attrs["dt_us"] > 0
    ):
        raise bad("dt_us", "a positive number of µs")
    shape = attrs["unit_shape"]
    if not isinstance(shape, list) or not shape or not all(is_int(s) and s > 0 for s in shape):
        raise bad("unit_shape", "a list of positive integers")
    if math.prod(shape) != attrs["n_units"]:
        raise StoreError(f"{path}: unit_shape {shape} does not multiply to n_units {attrs['n_units']}")
    classes = attrs["classes"]
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise bad("classes", "a non-empty list of class names")
    if not isinstance(attrs["dataset"], str):
        raise bad("dataset", "a string")
    if not is_int(attrs["seed"]):
        raise bad("seed", "an integer")
    if not isinstance(attrs["encoder"], dict) or not isinstance(attrs["encoder"].get("name"), str):
        raise bad("encoder", "a table with a 'name'")
    splits = attrs["splits"]
    if not isinstance(splits, list) or not all(isinstance(s, str) and s.isidentifier() for s in splits) or len(
        set(splits)
    ) != len(splits):
        raise bad("splits", "a list of distinct split names")
    integrity = attrs["integrity"]
    if not (isinstance(integrity, dict) and isinstance(integrity.get("splits"), dict)
            and isinstance(integrity.get("attributes"), str)):
        raise bad("integrity", "a table with 'attributes' and 'splits' digests")
    if sorted(integrity["splits"]) != sorted(splits):
        raise StoreError(f"{path}: the integrity digests cover splits {sorted(integrity['splits'])}, the store lists "
                         f"{sorted(splits)}")
    if canonical_sha256(digested_root_attrs(attrs)) != integrity["attributes"]:
        raise StoreError(f"{path}: the root attributes do not match their recorded sha256 digest (edited or "
                         "corrupt zarr.json); re-encode the store or restore it from a copy")


def fingerprint_of(attrs: dict[str, Any]) -> str:
    """sha256 over the root attributes that define the encoding and every split's content hash."""
    keep = {k: attrs[k] for k in (*REQUIRED_ROOT_ATTRS, "split_sha256") if k in attrs}
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()


def root_attributes(dataset: str, encoder: str, params: dict[str, Any], unit_shape: Sequence[int], n_steps: int,
                    dt_us: float, classes: Sequence[str], seed: int, source: dict[str, Any],
                    **more: Any) -> dict[str, Any]:
    """The root attributes an encoder gives `StoreWriter` (docs/store.md), in their order: `dataset`, `encoder`
    {name, params}, `n_units` (the product of `unit_shape`), `unit_shape`, `n_steps`, `dt_us` (µs per step),
    `classes`, `seed`, `source`, then `more` (e.g. the split record)."""
    return {"dataset": dataset, "encoder": {"name": encoder, "params": params}, "n_units": math.prod(unit_shape),
            "unit_shape": list(unit_shape), "n_steps": n_steps, "dt_us": dt_us, "classes": list(classes),
            "seed": seed, "source": source, **more}
