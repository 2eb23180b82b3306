"""A NIR consumer from the registry running an exported hm2bp network: snnTorch's `import_from_nir` (with nirtorch),
stepped over the same input rasters, and how its output agrees with ours (tests/hm2bp/test_nir.py and
benchmarks/nir_agreement.py; docs/nir.md reports the figures).

snnTorch's importer simulates with a fixed dt of 1e-4 s, so the graph is exported with that dt: the discrete model
depends on tau / dt only.
"""

from __future__ import annotations

import contextlib
import io

import torch

from hm2bp import Network, to_nir

#: The time step snnTorch's NIR import assumes (seconds).
SNNTORCH_DT = 1e-4


def snntorch_counts(graph, x: torch.Tensor) -> torch.Tensor:
    """Output spike counts int64 `[B, n_out]` of snnTorch's import of `graph`, stepped over `x [B, T, n]`."""
    from snntorch import utils
    from snntorch.import_nir import import_from_nir

    with contextlib.redirect_stdout(io.StringIO()):  # it prints how it rescales the thresholds
        module = import_from_nir(graph)
    utils.reset(module)
    state, counts = None, torch.zeros(())
    with torch.no_grad():
        for t in range(x.shape[1]):
            out, state = module(x[:, t].float(), state)  # the state carries the recurrent (lateral) edge
            counts = counts + out
    return counts.round().long()


def without_refractoriness(net: Network) -> Network:
    """The same network with a refractory period of 0 in every layer."""
    d = net.config.to_dict()
    for layer in d["layers"]:
        layer["neuron"]["refractory"] = 0
    plain = Network.from_config(d, net.n_inputs, net.input_shape)
    plain.load_weights(net.weights())
    return plain


def agreement(net: Network, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, float]:
    """snnTorch against hm2bp on `x`: the share of samples with the same predicted class, of output neurons with
    the same spike count (also against our network without refractoriness), the mean output counts, and with
    `labels` both accuracies."""
    theirs = snntorch_counts(to_nir(net, SNNTORCH_DT), x)
    ours = net.forward(x)[net.layer_names[-1]].sum(1)
    plain = without_refractoriness(net).forward(x)[net.layer_names[-1]].sum(1)
    out = {
        "samples": x.shape[0],
        "same_class": (theirs.argmax(1) == ours.argmax(1)).double().mean().item(),
        "same_count": (theirs == ours).double().mean().item(),
        "same_count_without_refractoriness": (theirs == plain).double().mean().item(),
        "same_class_without_refractoriness": (theirs.argmax(1) == plain.argmax(1)).double().mean().item(),
        "mean_count_ours": ours.double().mean().item(),
        "mean_count_snntorch": theirs.double().mean().item(),
    }
    if labels is not None:
        out["accuracy_ours"] = (ours.argmax(1) == labels).double().mean().item()
        out["accuracy_snntorch"] = (theirs.argmax(1) == labels).double().mean().item()
    return out
