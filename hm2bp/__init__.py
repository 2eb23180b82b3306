"""hm2bp: HM2-BP training of spiking networks (Jin, Zhang & Li, NeurIPS 2018) on spikedata stores."""

from hm2bp.config import (
    ConfigError,
    LayerSpec,
    LossSpec,
    NetworkConfig,
    NeuronParams,
    RegularizerSpec,
    TrainSpec,
    load_config,
)
from hm2bp.network import DenseLayer, Network, StepResult

__all__ = [
    "ConfigError",
    "DenseLayer",
    "LayerSpec",
    "LossSpec",
    "Network",
    "NetworkConfig",
    "NeuronParams",
    "RegularizerSpec",
    "StepResult",
    "TrainSpec",
    "load_config",
]
