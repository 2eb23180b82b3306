"""HM2-BP networks as NIR graphs (the Neuromorphic Intermediate Representation, `nir` 1.0): `to_nir`, `from_nir`,
`write_nir`, `read_nir`, and `export_checkpoint` (what `hm2bp export --format nir` does). docs/nir.md has the
mapping, its derivation and what NIR cannot carry.

Every layer becomes its synapse node and one `CubaLIF` (`<layer>_affine`, `_conv` or `_pool`, then `<layer>_lif`);
a dense layer after a spatial one is preceded by a `Flatten`; lateral inhibition is a recurrent `Linear`
(`<layer>_lateral`, `-w0` off the diagonal) from the layer's `CubaLIF` back into it. With `dt` the seconds per step,

    tau_syn = tau_s * dt,  tau_mem = tau_m * dt,  r = tau_m,  w_in = 1,  v_leak = v_reset = 0,  v_threshold = vth,

so that NIR's `tau_syn dI/dt = -I + w_in S`, `tau_mem dv/dt = -v + r I`, stepped by forward Euler with `dt` (current
first, then the membrane with the new current, as NIR's simulators do), is algorithm.md §1's update with `I = ep/tau_s`.
The refractory period, the one-step input delay, the threshold epsilon and the layer names go into node and graph
metadata; `from_nir` reads them back, so a round trip gives the same config, weights and spikes.
"""

from __future__ import annotations

import io
import json
import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hm2bp.config import ConfigError, load_config
from hm2bp.errors import Hm2bpError
from hm2bp.model import Network
from hm2bp.rules.lif import spike_threshold
from hm2bp.train.checkpoint import atomic_write_bytes, load_checkpoint
from hm2bp.train.evaluate import load_network_from_checkpoint

#: Graph metadata key and value that mark a graph written by `to_nir`, and the version of its metadata layout.
PRODUCER = "hm2bp"
METADATA_VERSION = 1
#: The reference's step order (algorithm.md §1), which NIR's continuous-time nodes cannot state.
STEP_ORDER = (
    "per step t: (1) v -= v/tau_m, ep -= ep/tau_s; (2) at t = 0 nothing else; (3) the input is that of step t-1 "
    "(feed-forward and lateral); (4) ep += input; (5) v += ep/tau_s; (6) if refractory: v = 0 (after integration, "
    "ep keeps integrating); (7) spike iff v > threshold, then v = 0 and refractory for refractory_steps steps"
)
DISCRETISATION = (
    "forward Euler with dt, the synaptic current first and the membrane with the new current: "
    "I += dt/tau_syn (w_in S - I), v += dt/tau_mem (r I - v); ep = tau_s I, tau_s = tau_syn/dt, tau_m = tau_mem/dt"
)


class NirError(Hm2bpError, ValueError):
    """A NIR graph or file that cannot be written or cannot be read as an hm2bp network; the message names the node
    or file."""


def import_nir():
    """The `nir` package, or a NirError saying how to install it."""
    try:
        import nir
    except ImportError:
        raise NirError("NIR export and import need the `nir` package: pip install 'spikedata-hm2bp[nir]'") from None
    return nir


# ------------------------------------------------------------------------------------------------------- export
def node_prefixes(names: list[str]) -> list[str]:
    """Node-key prefixes for layer names: letters, digits and `_` only (NIR tools use keys as Python names and split
    them at dots), unique. Every layer node key has a suffix (`_lif`, ...), so none is `input` or `output`."""
    out: list[str] = []
    for k, name in enumerate(names):
        key = re.sub(r"\W", "_", name, flags=re.ASCII) or f"layer{k}"
        out.append(key if key not in out else f"{key}_{k}")
    return out


def lateral_matrix(n: int, w0: float) -> np.ndarray:
    """The fixed lateral inhibition `[n, n]` float64: `-w0` off the diagonal, 0 on it (algorithm.md §1)."""
    w = np.full((n, n), -float(w0), dtype=np.float64)
    np.fill_diagonal(w, 0.0)
    return w


def neuron_node(nir, layer, shape: list[int], dt: float):
    """The `CubaLIF` of a layer (see the module docstring) with what NIR cannot say in its metadata."""
    nrn = layer.spec.neuron
    epsilon = layer.kind != "conv"
    threshold = float(spike_threshold(layer.vth) if epsilon else np.float32(layer.vth))

    def full(value: float) -> np.ndarray:
        return np.full(shape, value, dtype=np.float64)

    metadata = {
        "hm2bp_layer": layer.spec.name, "hm2bp_type": layer.kind, "tau_m_steps": float(nrn.tau_m),
        "tau_s_steps": float(nrn.tau_s), "refractory_steps": int(nrn.refractory),
        "refractory": float(nrn.refractory * dt), "input_delay_steps": 1,
        "threshold_rule": "v > float32(v_threshold - 1e-6)" if epsilon else "v > float32(v_threshold)",
        "threshold_epsilon": 1e-6 if epsilon else 0.0, "float32_threshold": threshold,
    }
    return nir.CubaLIF(tau_syn=full(nrn.tau_s * dt), tau_mem=full(nrn.tau_m * dt), r=full(nrn.tau_m),
                       v_leak=full(0.0), v_threshold=full(layer.vth), v_reset=full(0.0), w_in=full(1.0),
                       metadata=metadata)


def synapse_node(nir, layer, in_shape: list[int]):
    """`(role, node, neuron shape)` of a layer's synapses: Affine (bias 0), Conv2d (valid, stride 1) or SumPool2d."""
    if layer.kind == "pool":
        w = np.array([layer.window, layer.window])
        return "pool", nir.SumPool2d(kernel_size=w, stride=w, padding=np.zeros(2, dtype=np.int64)), \
            list(layer.out_shape)
    weight = np.ascontiguousarray(layer.weight.detach().cpu().numpy(), dtype=np.float32)
    if layer.kind == "conv":
        node = nir.Conv2d(input_shape=tuple(in_shape[1:]), weight=weight, stride=1, padding=0, dilation=1, groups=1,
                          bias=np.zeros(weight.shape[0], dtype=np.float32))
        return "conv", node, list(layer.out_shape)
    return "affine", nir.Affine(weight=weight, bias=np.zeros(layer.n_post, dtype=np.float32)), [layer.n_post]


def neuron_stage(nir, layer, shape: list[int], dt: float):
    """The node that follows a layer's synapses: its `CubaLIF`, or, with lateral inhibition, a subgraph `input ->
    lif <-> lateral, lif -> output` (the recurrent `Linear` feeds the spikes of the previous step back into the
    CubaLIF, as NIR's simulators step a cycle; snnTorch and nirtorch read recurrence in this form)."""
    lif = neuron_node(nir, layer, shape, dt)
    w0 = layer.spec.lateral_inhibition
    if layer.kind != "dense" or w0 == 0.0:
        return "lif", lif
    lateral = nir.Linear(weight=lateral_matrix(layer.n_post, w0),
                         metadata={"hm2bp_lateral_inhibition": float(w0), "delay_steps": 1})
    n = np.array([layer.n_post])
    sub = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": n}), "lif": lif, "lateral": lateral,
                              "output": nir.Output(output_type={"output": n})},
                       edges=[("input", "lif"), ("lif", "lateral"), ("lateral", "lif"), ("lif", "output")],
                       metadata={"hm2bp_layer": layer.spec.name})
    return "recurrent", sub


def to_nir(network: Network, dt: float = 1e-3):
    """The network as a `nir.NIRGraph`. `dt`: seconds per simulation step (the store's `dt_us` x 1e-6; 1 ms for the
    MNIST stores), recorded in the graph metadata; the time constants are `tau x dt` seconds."""
    nir = import_nir()
    if isinstance(dt, bool) or not (isinstance(dt, int | float) and math.isfinite(dt) and dt > 0):
        raise NirError(f"dt must be a positive number of seconds per step, got {dt!r}")
    config = network.config
    spatial = config.layers[0].type != "dense"
    shape = list(network.input_shape) if spatial else [network.n_inputs]
    nodes: dict[str, Any] = {"input": nir.Input(input_type={"input": np.array(shape)})}
    chain = ["input"]
    for key, name in zip(node_prefixes(network.layer_names), network.layer_names, strict=True):
        layer = network.layer(name)
        if layer.kind == "dense" and len(shape) > 1:
            nodes[f"{key}_flatten"] = nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1)
            chain.append(f"{key}_flatten")
        role, synapse, shape = synapse_node(nir, layer, shape)
        stage, neurons = neuron_stage(nir, layer, shape, float(dt))
        nodes[f"{key}_{role}"], nodes[f"{key}_{stage}"] = synapse, neurons
        chain += [f"{key}_{role}", f"{key}_{stage}"]
    nodes["output"] = nir.Output(output_type={"output": np.array(shape)})
    chain.append("output")
    metadata = {
        "producer": PRODUCER, "hm2bp_metadata_version": METADATA_VERSION, "dt": float(dt), "time_unit": "s",
        "steps": int(config.steps), "n_inputs": int(network.n_inputs),
        "input_shape": np.array(network.input_shape, dtype=np.int64), "step_order": STEP_ORDER,
        "discretisation": DISCRETISATION, "hm2bp_config": json.dumps(config.to_dict()),
    }
    return nir.NIRGraph(nodes=nodes, edges=list(zip(chain[:-1], chain[1:], strict=True)), metadata=metadata)


def write_nir(graph, path: str | Path) -> None:
    """Write `graph` to a NIR (HDF5) file, atomically: a reader never sees a half-written file."""
    nir = import_nir()
    buf = io.BytesIO()
    nir.write(buf, graph)
    atomic_write_bytes(path, lambda f: f.write(buf.getvalue()))


def read_nir(path: str | Path):
    """Read a NIR file (`nir.read`), with a one-line NirError for a missing or foreign file."""
    nir = import_nir()
    path = Path(path)
    if not path.is_file():
        raise NirError(f"{path}: is a directory, not a NIR file" if path.is_dir() else f"{path}: no such NIR file")
    try:
        return nir.read(path)
    except Exception as exc:  # h5py and nir raise many types for files that are not NIR graphs
        raise NirError(f"{path}: not a readable NIR graph ({type(exc).__name__}: {exc})") from exc


def recorded_dt_us(ckpt: dict[str, Any], path: str | Path) -> float:
    """The step length (µs) of the store a checkpoint was trained on: recorded in the checkpoint, else read from the
    store at its recorded path; NirError when neither is there."""
    store = ckpt["store"]
    if store.get("dt_us") is not None:
        return float(store["dt_us"])
    try:
        from spikedata.store import open_store

        return float(open_store(store["path"]).dt_us)
    except (KeyError, OSError, ValueError) as exc:
        raise NirError(f"{path}: the checkpoint does not record the step length of its store, and the store "
                       f"{store.get('path')!r} cannot be read ({exc}); pass the step length: dt_us (hm2bp export "
                       "--dt-us)") from None


def export_checkpoint(checkpoint: str | Path, out: str | Path, dt_us: float | None = None):
    """Write the network of an `hm2bp fit` checkpoint to the NIR file `out`, with the step length `dt_us` (default:
    that of the store it was trained on). Returns the graph."""
    ckpt = load_checkpoint(checkpoint)
    network = load_network_from_checkpoint(ckpt, "cpu", checkpoint)
    dt = float(dt_us if dt_us is not None else recorded_dt_us(ckpt, checkpoint)) * 1e-6
    graph = to_nir(network, dt)
    write_nir(graph, out)
    return graph


# ------------------------------------------------------------------------------------------------------- import
def uniform(key: str, field: str, values: Any) -> float:
    """The one value every neuron of a node shares (hm2bp layers have one threshold, one tau, ...)."""
    a = np.asarray(values, dtype=np.float64).ravel()
    if a.size == 0 or not np.all(a == a[0]):
        raise NirError(f"NIR node {key!r}: {field} differs between neurons; an hm2bp layer has one value for all")
    return float(a[0])


def in_steps(seconds: float, dt: float, recorded: Any) -> float:
    """A time constant in steps: `seconds / dt`, or the exactly recorded value when it agrees with that."""
    steps = seconds / dt
    if recorded is not None and math.isclose(float(recorded), steps, rel_tol=1e-9):
        return float(recorded)
    return steps


def neuron_params(key: str, node, dt: float) -> tuple[dict[str, Any], float]:
    """(the layer's `neuron` table, its threshold) of a CubaLIF. The input reaches `ep` scaled by `r w_in / tau_m`
    (1 in graphs from `to_nir`); any other scale multiplies `ep` and `v` alike, so the layer keeps its weights and
    its threshold is divided by the scale."""
    meta = node.metadata or {}
    if uniform(key, "v_leak", node.v_leak) != 0.0 or uniform(key, "v_reset", node.v_reset) != 0.0:
        raise NirError(f"NIR node {key!r}: v_leak and v_reset must be 0 (hm2bp neurons leak to and reset to 0)")
    tau_m = in_steps(uniform(key, "tau_mem", node.tau_mem), dt, meta.get("tau_m_steps"))
    tau_s = in_steps(uniform(key, "tau_syn", node.tau_syn), dt, meta.get("tau_s_steps"))
    scale = uniform(key, "r", node.r) * uniform(key, "w_in", node.w_in) / tau_m
    threshold = uniform(key, "v_threshold", node.v_threshold)
    if not (scale > 0 and threshold > 0):
        raise NirError(f"NIR node {key!r}: r, w_in and v_threshold must be positive")
    neuron = {"tau_m": tau_m, "tau_s": tau_s, "refractory": int(meta.get("refractory_steps", 0))}
    return neuron, threshold if scale == 1.0 else threshold / scale


def inline(nir, graph) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The nodes and edges of a graph with every subgraph node `k` replaced by its own nodes (`k.name`), its Input
    and Output nodes bypassed: the same network as one flat graph."""
    nodes: dict[str, Any] = {}
    edges: list[tuple[str, str]] = []
    entries: dict[str, list[str]] = {}
    exits: dict[str, list[str]] = {}
    for key, node in graph.nodes.items():
        if not isinstance(node, nir.NIRGraph):
            nodes[key] = node
            continue
        sub_nodes, sub_edges = inline(nir, node)
        ends = {k for k, n in sub_nodes.items() if isinstance(n, nir.Input | nir.Output)}
        if sum(isinstance(sub_nodes[k], nir.Input) for k in ends) != 1 or len(ends) != 2:
            raise NirError(f"NIR node {key!r}: a subgraph needs exactly one Input and one Output node")
        nodes.update({f"{key}.{k}": n for k, n in sub_nodes.items() if k not in ends})
        edges += [(f"{key}.{a}", f"{key}.{b}") for a, b in sub_edges if a not in ends and b not in ends]
        entries[key] = [f"{key}.{b}" for a, b in sub_edges if a in ends and isinstance(sub_nodes[a], nir.Input)]
        exits[key] = [f"{key}.{a}" for a, b in sub_edges if b in ends and isinstance(sub_nodes[b], nir.Output)]
    for a, b in graph.edges:
        edges += [(x, y) for x in exits.get(a, [a]) for y in entries.get(b, [b])]
    return nodes, edges


class GraphWalk:
    """The chain input -> (synapse -> CubaLIF [<-> lateral])* -> output of a graph (subgraphs inlined), checked node
    by node."""

    def __init__(self, nir, graph) -> None:
        self.nir = nir
        self.nodes, edges = inline(nir, graph)
        self.succ: dict[str, list[str]] = defaultdict(list)
        self.pred: dict[str, list[str]] = defaultdict(list)
        for a, b in edges:
            self.succ[a].append(b)
            self.pred[b].append(a)
        self.input = self.only(nir.Input, "Input")
        self.output = self.only(nir.Output, "Output")

    def only(self, kind, what: str) -> str:
        keys = [k for k, n in self.nodes.items() if isinstance(n, kind)]
        if len(keys) != 1:
            raise NirError(f"NIR graph: {len(keys)} {what} nodes; an hm2bp network has exactly one")
        return keys[0]

    def next(self, key: str, skip: str | None = None) -> str:
        after = [k for k in self.succ[key] if k != skip]
        if len(after) != 1:
            raise NirError(f"NIR node {key!r}: {len(after)} successors; hm2bp networks are a chain of layers")
        return after[0]

    def lateral_of(self, lif: str) -> str | None:
        """The recurrent Linear/Affine of a CubaLIF (its only input and only output being that CubaLIF), or None."""
        for k in self.succ[lif]:
            node = self.nodes[k]
            if isinstance(node, self.nir.Linear | self.nir.Affine) and self.succ[k] == [lif] and self.pred[k] == [lif]:
                return k
        return None


def lateral_w0(key: str, node) -> float:
    """`w0` of a recurrent node that is hm2bp's lateral inhibition (`-w0` off the diagonal, 0 on it)."""
    w = np.asarray(node.weight, dtype=np.float64)
    bias = getattr(node, "bias", None)
    n = w.shape[0]
    if w.ndim != 2 or w.shape != (n, n) or (bias is not None and np.any(np.asarray(bias) != 0)):
        raise NirError(f"NIR node {key!r}: a recurrent connection must be a square matrix without bias")
    off = w[~np.eye(n, dtype=bool)]
    if np.any(np.diag(w) != 0) or (off.size and (np.any(off != off[0]) or off[0] > 0)):
        raise NirError(f"NIR node {key!r}: hm2bp's only recurrent connection is lateral inhibition (-w0 off the "
                       "diagonal, 0 on it)")
    return float(-off[0]) if off.size else 0.0


def synapse_layer(key: str, node, nir) -> tuple[dict[str, Any], np.ndarray | None]:
    """(the layer table without neuron parameters, the float32 weight or None) of a synapse node."""
    if isinstance(node, nir.Affine | nir.Linear):
        if getattr(node, "bias", None) is not None and np.any(np.asarray(node.bias) != 0):
            raise NirError(f"NIR node {key!r}: a bias is not supported (hm2bp layers have none)")
        weight = np.asarray(node.weight, dtype=np.float32)
        return {"type": "dense", "size": int(weight.shape[0])}, weight
    if isinstance(node, nir.Conv2d):
        weight = np.asarray(node.weight, dtype=np.float32)
        plain = all(np.all(np.asarray(getattr(node, a)) == v) for a, v in (("stride", 1), ("dilation", 1),
                                                                          ("groups", 1)))
        valid = isinstance(node.padding, str) and node.padding == "valid" or np.all(np.asarray(node.padding) == 0)
        if not plain or not valid or weight.shape[2] != weight.shape[3] or np.any(np.asarray(node.bias) != 0):
            raise NirError(f"NIR node {key!r}: hm2bp convolutions are valid, stride 1, square, without bias")
        return {"type": "conv", "channels": int(weight.shape[0]), "kernel": int(weight.shape[2])}, weight
    if isinstance(node, nir.SumPool2d):
        k, s = np.asarray(node.kernel_size).ravel(), np.asarray(node.stride).ravel()
        if k.size != 2 or k[0] != k[1] or np.any(s != k) or np.any(np.asarray(node.padding) != 0):
            raise NirError(f"NIR node {key!r}: hm2bp pooling is square, non-overlapping (stride = window), unpadded")
        return {"type": "pool", "window": int(k[0])}, None
    raise NirError(f"NIR node {key!r}: a {type(node).__name__} node has no hm2bp layer (Affine, Linear, Conv2d, "
                   "SumPool2d, each followed by a CubaLIF)")


def read_layers(nir, graph, dt: float) -> tuple[tuple[int, ...], list[dict[str, Any]], dict[str, np.ndarray]]:
    """(input shape, layer tables, weights by layer name) of the chain of a graph."""
    walk = GraphWalk(nir, graph)
    in_shape = tuple(int(v) for v in np.asarray(walk.nodes[walk.input].input_type["input"]).ravel())
    layers, weights = [], {}
    key = walk.next(walk.input)
    while key != walk.output:
        if isinstance(walk.nodes[key], nir.Flatten):
            key = walk.next(key)
        table, weight = synapse_layer(key, walk.nodes[key], nir)
        lif = walk.next(key)
        node = walk.nodes[lif]
        if not isinstance(node, nir.CubaLIF):
            raise NirError(f"NIR node {lif!r}: expected the CubaLIF of the layer whose synapses are {key!r}, got a "
                           f"{type(node).__name__}")
        lateral = walk.lateral_of(lif)
        if sorted(walk.pred[lif]) != sorted([key] + ([lateral] if lateral else [])):
            raise NirError(f"NIR node {lif!r}: inputs {walk.pred[lif]}; an hm2bp layer has one synapse node "
                           "(and lateral inhibition)")
        neuron, threshold = neuron_params(lif, node, dt)
        name = str((node.metadata or {}).get("hm2bp_layer", lif.removesuffix("_lif")))
        table = {"name": name, **table, "threshold": threshold, "neuron": neuron,
                 "lateral_inhibition": lateral_w0(lateral, walk.nodes[lateral]) if lateral else 0.0}
        layers.append(table)
        if weight is not None:
            weights[name] = weight
        key = walk.next(lif, skip=lateral)
    return in_shape, layers, weights


def from_nir(graph, *, dt: float | None = None, steps: int | None = None, backend: str = "auto") -> Network:
    """The hm2bp `Network` of a NIR graph (`read_nir` reads a file): a chain of Affine/Linear, Conv2d or SumPool2d
    nodes, each followed by a CubaLIF (docs/nir.md). A graph written by `to_nir` comes back with the same config,
    weights and spikes. `dt` (seconds per step) and `steps` (per sample) default to the graph's metadata; a graph
    from another tool needs them, and gets no refractory period unless its CubaLIF metadata states one."""
    nir = import_nir()
    meta = dict(graph.metadata or {})
    dt = float(dt if dt is not None else meta.get("dt", float("nan")))
    if not (math.isfinite(dt) and dt > 0):
        raise NirError("NIR graph: no step length; pass dt (seconds per step)")
    base = json.loads(str(meta["hm2bp_config"])) if "hm2bp_config" in meta else {}
    in_shape, layers, weights = read_layers(nir, graph, dt)
    saved = {d.get("name"): d for d in base.get("layers", [])}
    for table in layers:
        if table["type"] != "pool" and "init" in saved.get(table["name"], {}):
            table["init"] = saved[table["name"]]["init"]
    steps = steps if steps is not None else meta.get("steps", base.get("steps"))
    if steps is None:
        raise NirError("NIR graph: no number of steps per sample; pass steps")
    n_inputs = math.prod(in_shape)
    recorded = tuple(int(v) for v in np.asarray(meta.get("input_shape", in_shape)).ravel())
    input_shape = recorded if math.prod(recorded) == n_inputs else in_shape
    try:
        config = load_config({**base, "steps": int(steps), "layers": layers})
        net = Network(config, n_inputs, input_shape, backend=backend)
        net.load_weights({name: torch.from_numpy(np.ascontiguousarray(w)) for name, w in weights.items()})
    except (ConfigError, ValueError) as exc:
        raise NirError(f"NIR graph: its layers do not make an hm2bp network ({exc})") from None
    return net
