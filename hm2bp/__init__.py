"""hm2bp: HM2-BP training of spiking networks (Jin, Zhang & Li, NeurIPS 2018) on spikedata stores.

Layers, from the top: `hm2bp.cli` (command line) -> `hm2bp.train` (loop, run directory, data) -> `hm2bp.model`
(network, layers) -> `hm2bp.kernels` (kernel sets, chosen once) -> `hm2bp.rules` (the HM2-BP maths in torch);
`hm2bp.config`, `hm2bp.geometry`, `hm2bp.errors` and `hm2bp.presets` are used by all.
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
    "StepResult",
    "TrainSpec",
    "Trainer",
    "load_config",
    "load_preset",
    "preset_names",
]


def __getattr__(name: str):
    # The trainer pulls in plotting and the store reader; import it only when asked for.
    if name == "Trainer":
        from hm2bp.train.trainer import Trainer

        return Trainer
    raise AttributeError(f"module 'hm2bp' has no attribute {name!r}")
