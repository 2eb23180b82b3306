"""hm2bp: HM2-BP training of spiking networks (Jin, Zhang & Li, NeurIPS 2018) on spikedata stores."""

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
from hm2bp.network import ConvLayer, DenseLayer, Network, PoolLayer, StepResult

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
    "load_config",
]
