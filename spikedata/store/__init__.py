"""The Zarr v3 spike store: the one on-disk contract between `spikedata` and `hm2bp` (format: `docs/store.md`).

One concept per module, every public name re-exported here:

* `spikedata.store.format`: the layout, format name and version, chunk sizes, `EventBlock`, `StoreError` and the
  invariants (events sorted by (time, unit) within a sample, indices in range);
* `spikedata.store.integrity`: chunk digests (crc32c), the chunk manifest of a split and the sha256 digests that
  bind the manifests and the root attributes;
* `spikedata.store.attributes`: the checks of the root attributes at open, the message for a store of another
  format version, the fingerprint;
* `spikedata.store.reader`: `open_store` -> `SpikeStore`, `store[split]` -> `Split` (chunks verified at their first
  read), `verify_store`;
* `spikedata.store.writer`: `StoreWriter` and `SplitWriter`;
* `spikedata.store.swap`: the atomic install of a finished store (`renameat2`) and the leftovers of killed writers.

Stores are written under an exclusive lock into a hidden temporary sibling and swapped into place only after the
content has been re-read and verified, so an interrupted encode never leaves anything `open_store` accepts, and
`overwrite` never leaves the path without a store.

Names are imported lazily (as in `spikedata`), so that a module that needs only the block type or the attribute
helpers does not load zarr.
"""

from __future__ import annotations

from spikedata.lazy import lazy_exports

#: Public name -> the module of this package that defines it.
_EXPORTS = {
    "fingerprint_of": "spikedata.store.attributes",
    "root_attributes": "spikedata.store.attributes",
    "EVENT_CHUNK": "spikedata.store.format",
    "FORMAT": "spikedata.store.format",
    "FORMAT_VERSION": "spikedata.store.format",
    "SAMPLE_CHUNK": "spikedata.store.format",
    "VERSION_HISTORY": "spikedata.store.format",
    "EventBlock": "spikedata.store.format",
    "StoreError": "spikedata.store.format",
    "fill_value_for": "spikedata.store.format",
    "index_dtype": "spikedata.store.format",
    "CHUNK_DIGEST": "spikedata.store.integrity",
    "canonical_sha256": "spikedata.store.integrity",
    "chunk_digest": "spikedata.store.integrity",
    "chunk_digests": "spikedata.store.integrity",
    "SpikeStore": "spikedata.store.reader",
    "Split": "spikedata.store.reader",
    "is_url": "spikedata.store.reader",
    "open_store": "spikedata.store.reader",
    "verify_store": "spikedata.store.reader",
    "clean_leftovers": "spikedata.store.swap",
    "exchange_paths": "spikedata.store.swap",
    "SplitWriter": "spikedata.store.writer",
    "StoreWriter": "spikedata.store.writer",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
