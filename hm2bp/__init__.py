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
        from hm2bp.trainer import Trainer

        return Trainer
    raise AttributeError(f"module 'hm2bp' has no attribute {name!r}")
