"""The model: a `Network` of dense, conv and pool spiking layers, and the walk of a batch through them.

A layer owns its weights and hands its spikes to the network's kernel set (`hm2bp.kernels`), once per direction.
"""

from hm2bp.model.layers import ConvLayer, DenseLayer, PoolLayer
from hm2bp.model.network import Network, StepResult, check_memory, layer_sizes

__all__ = ["ConvLayer", "DenseLayer", "Network", "PoolLayer", "StepResult", "check_memory", "layer_sizes"]
