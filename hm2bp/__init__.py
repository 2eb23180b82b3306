"""hm2bp: HM2-BP training of spiking networks (Jin, Zhang & Li, NeurIPS 2018) on spikedata stores.

Layers, from the top: `hm2bp.cli` (command line) -> `hm2bp.train` (loop, run directory, data) -> `hm2bp.model`
(network, layers) -> `hm2bp.kernels` (kernel sets, chosen once) -> `hm2bp.rules` (the HM2-BP maths in torch);
`hm2bp.config`, `hm2bp.geometry`, `hm2bp.errors` and `hm2bp.presets` are used by all; `hm2bp.interop` (NIR export and
import) sits above `hm2bp.train`, below the command line.
"""

from hm2bp.config import (
    AugmentSpec,
    ConfigError,
    LayerSpec,
    LossSpec,
    NetworkConfig,
    NeuronParams,
    RegularizerSpec,
    TrainSpec,
    load_config,
)
from hm2bp.model import ConvLayer, DenseLayer, Network, PoolLayer, StepResult
from hm2bp.presets import load_preset, preset_names

__all__ = [
    "AugmentSpec",
    "ConfigError",
    "ConvLayer",
    "DenseLayer",
    "LayerSpec",
    "LossSpec",
    "Network",
    "NetworkConfig",
    "NeuronParams",
    "PoolLayer",
    "RegularizerSpec",
    "SpikeDataset",
    "StepResult",
    "TrainSpec",
    "Trainer",
    "collate_dense",
    "from_nir",
    "load_config",
    "load_preset",
    "preset_names",
    "to_nir",
]


#: Names imported only when asked for (the trainer pulls in plotting and the store reader, NIR needs `nir`).
_LAZY = {
    "Trainer": "hm2bp.train.trainer",
    "SpikeDataset": "hm2bp.train.dataset",
    "collate_dense": "hm2bp.train.dataset",
    "to_nir": "hm2bp.interop.nir",
    "from_nir": "hm2bp.interop.nir",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hm2bp' has no attribute {name!r}")
