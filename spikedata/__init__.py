"""spikedata: neuromorphic datasets in their native formats -> spike trains -> Zarr spike stores.

Public entry points: `read_events`, `poisson_encode`, `lyon_passive_ear`, `bsa_encode`, `open_store`.
Names are imported lazily so that `import spikedata` stays fast and never compiles numba kernels it does not use.
"""

from __future__ import annotations

from spikedata.lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "open_store": "spikedata.store",
    "StoreError": "spikedata.store",
    "StoreWriter": "spikedata.store",
    "verify_store": "spikedata.store",
    "encode_to_store": "spikedata.pipeline",
    "EventBlock": "spikedata.store",
    "SplitJob": "spikedata.pipeline",
    "read_idx": "spikedata.io.idx",
    "poisson_encode": "spikedata.encoders.poisson",
    "poisson_encode_events": "spikedata.encoders.poisson",
    "load_manifest": "spikedata.manifest",
    "read_events": "spikedata.io.events",
    "read_events_with_info": "spikedata.io.events",
    "EventFileInfo": "spikedata.io.event_types",
    "EventFileError": "spikedata.io.event_types",
    "bin_events": "spikedata.encoders.event_binning",
    "BinningOptions": "spikedata.encoders.event_binning",
    "NMNIST_REFERENCE": "spikedata.datasets.nmnist",
    "read_audio": "spikedata.io.audio",
    "probe_audio": "spikedata.io.audio",
    "AudioError": "spikedata.io.audio",
    "bin_unit_events": "spikedata.encoders.event_binning",
    "probe_heidelberg": "spikedata.datasets.shared.heidelberg",
    "lyon_passive_ear": "spikedata.encoders.lyon",
    "bsa_encode": "spikedata.encoders.bsa",
    "bsa_kernel": "spikedata.encoders.bsa",
    "design_lyon_filters": "spikedata.encoders.lyon",
    "to_tonic": "spikedata.interop",
    "transforms": "spikedata.transforms",
    "splits": "spikedata.splits",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
