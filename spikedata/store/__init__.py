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
"""

from spikedata.store.attributes import fingerprint_of
from spikedata.store.format import (
    EVENT_CHUNK,
    FORMAT,
    FORMAT_VERSION,
    SAMPLE_CHUNK,
    VERSION_HISTORY,
    EventBlock,
    StoreError,
    fill_value_for,
    index_dtype,
)
from spikedata.store.integrity import CHUNK_DIGEST, canonical_sha256, chunk_digest, chunk_digests
from spikedata.store.reader import SpikeStore, Split, is_url, open_store, verify_store
from spikedata.store.swap import clean_leftovers, exchange_paths
from spikedata.store.writer import SplitWriter, StoreWriter

__all__ = [
    "CHUNK_DIGEST", "EVENT_CHUNK", "FORMAT", "FORMAT_VERSION", "SAMPLE_CHUNK", "VERSION_HISTORY", "EventBlock",
    "SpikeStore", "Split", "SplitWriter", "StoreError", "StoreWriter", "canonical_sha256", "chunk_digest",
    "chunk_digests", "clean_leftovers", "exchange_paths", "fill_value_for", "fingerprint_of", "index_dtype", "is_url",
    "open_store", "verify_store",
]  # fmt: skip
