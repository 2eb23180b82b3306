"""The layering of hm2bp, checked on the source (imports) and at run time (the calls of one training step).

Rooms, from the top: cli -> interop -> train -> model -> kernels -> rules (`interop`, the network in other tools'
formats, builds on the trained network and its checkpoints and serves the command line and the package's API);
`config`, `errors`, `geometry` and `presets` are shared (usable by all, using nothing above them). A room imports
and calls only itself, rooms below it and the shared modules; the model reaches the kernel sets only through
`hm2bp.kernels` (the dispatcher) and `hm2bp.kernels.base`; nothing outside `hm2bp/kernels/` names a backend,
imports a set, numba or Triton, or probes a set with `hasattr`.
"""

from __future__ import annotations

import ast
import os
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from hm2bp import Network
from hm2bp.kernels import BACKENDS

REPO = Path(__file__).resolve().parents[2]
LEVEL = {"shared": 0, "rules": 1, "kernels": 2, "model": 3, "train": 4, "interop": 5, "cli": 6, "api": 7}
SHARED = {"config", "errors", "geometry", "presets"}
BACKEND_NAMES = set(BACKENDS) - {"auto"}


def rel(path: Path) -> Path:
    return path.relative_to(REPO) if path.is_relative_to(REPO) else path


def sources() -> dict[str, Path]:
    """Module name -> file of every module of `hm2bp/` and `cli/hm2bp/` (installed as `hm2bp.cli`)."""
    out = {}
    for root, package in ((REPO / "hm2bp", "hm2bp"), (REPO / "cli" / "hm2bp", "hm2bp.cli")):
        for path in sorted(root.rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([package, *parts])] = path
    return out


MODULES = sources()


def room(module: str) -> str:
    """The room of an hm2bp module (see the module docstring); `api` for the package itself and `__main__`."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] == "__main__":
        return "api"
    return "shared" if parts[1] in SHARED else parts[1]


def imports(tree: ast.Module, module: str) -> list[tuple[str, int]]:
    """(imported module, line) of every import; `from X import y` names `X.y` when that is a module."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")  # a relative import is reported as such: none are used
            for alias in node.names:
                full = f"{base}.{alias.name}"
                out.append((full if full in MODULES else base, node.lineno))
    return out


def _violations_of(module: str, path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    here = room(module)
    found = []
    for target, line in imports(tree, module):
        where = f"{rel(path)}:{line} imports {target}"
        top = target.split(".")[0]
        if not top:
            found.append(f"{where}: a relative import (the project imports absolutely)")
        if top in ("numba", "triton") and here != "kernels":
            found.append(f"{where}: only kernel sets use {top}")
        if top != "hm2bp":
            continue
        there = room(target)
        if target.startswith("hm2bp.kernels.") and target != "hm2bp.kernels.base" and here != "kernels":
            found.append(f"{where}: a specific kernel set outside hm2bp/kernels/")
        if target == "hm2bp.kernels.base" and here not in ("kernels", "model"):
            found.append(f"{where}: only the model builds on the kernel-set interface")
        if there != here and (LEVEL[there] > LEVEL[here] or (here == "shared" and there != "shared")):
            found.append(f"{where}: {here} must not import {there}")
    if here != "kernels":
        found += _backend_names(tree, path) + _probes(tree, path)
    return found


def _backend_names(tree: ast.Module, path: Path) -> list[str]:
    """String constants naming a backend, except as dict keys or subscripts (data keys, not choices)."""
    keys = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            keys.update(id(k) for k in node.keys if k is not None)
        elif isinstance(node, ast.Subscript):
            keys.add(id(node.slice))
    return [f"{rel(path)}:{node.lineno} names the backend {node.value!r}" for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and node.value in BACKEND_NAMES and id(node) not in keys]


def _probes(tree: ast.Module, path: Path) -> list[str]:
    """`hasattr` / `getattr` on a kernel set (an expression mentioning `kernels` or `ks`)."""
    out = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("hasattr", "getattr")
                and node.args and {"kernels", "ks"} & {n.id if isinstance(n, ast.Name) else getattr(n, "attr", "")
                                                       for n in ast.walk(node.args[0])}):
            out.append(f"{rel(path)}:{node.lineno} probes a kernel set with {node.func.id}")
    return out


def test_import_graph_is_layered_and_backends_stay_in_kernels():
    assert len(MODULES) > 50 and {"hm2bp.model.network", "hm2bp.kernels.numba.set", "hm2bp.cli.fit"} <= set(MODULES)
    violations = [v for module, path in MODULES.items() for v in _violations_of(module, path)]
    assert not violations, "\n".join(violations)


def test_the_import_check_catches_what_it_forbids(tmp_path):
    """The checks above are not vacuous: each kind of violation in a module is reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("from hm2bp.kernels.numba.set import NumbaKernels\nfrom hm2bp.train.loader import SpikeLoader\n"
                   "from numba import njit\nx = make('triton')\nok = {'torch': 1}['torch']\n"
                   "y = hasattr(net.kernels, 'threads')\n")
    found = _violations_of("hm2bp.model.bad", bad)
    assert len(found) == 5, found
    assert any("specific kernel set" in f for f in found) and any("must not import train" in f for f in found)
    assert any("'triton'" in f for f in found) and any("hasattr" in f for f in found)


def test_functions_are_short():
    """No function body over 100 lines (signatures of command-line options excepted)."""
    long = []
    for path in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                body = node.end_lineno - node.body[0].lineno + 1
                if body > 100:
                    long.append(f"{rel(path)}:{node.lineno} {node.name}: {body} lines")
    assert not long, "\n".join(long)


# ------------------------------------------------------------------------------------ the walk of a step
_ROOMS: dict[str, str | None] = {}


def frame_room(filename: str) -> str | None:
    """The room of a frame's source file (`network` and `layers` apart within the model); None outside hm2bp."""
    if filename not in _ROOMS:
        path = Path(filename).resolve()
        if not path.is_relative_to(REPO / "hm2bp"):
            _ROOMS[filename] = None
        else:
            rel = path.relative_to(REPO / "hm2bp")
            if rel.parts[0] == "model":
                _ROOMS[filename] = {"network": "network", "layers": "layers"}.get(rel.stem, "model")
            else:
                _ROOMS[filename] = "shared" if rel.parts[0].removesuffix(".py") in SHARED else rel.parts[0]
    return _ROOMS[filename]


FRAME_LEVEL = {**LEVEL, "network": LEVEL["model"], "layers": LEVEL["model"]}


class Walk:
    """The calls between rooms during one traced call: who calls whom against the layering, how often a call
    returns into a room the walk had left (a room on the caller's stack below another room), and how many
    kernel-set calls each layer's forward / backward makes."""

    def __init__(self) -> None:
        self.against: list[str] = []
        self.returns: list[str] = []
        self.layer_calls: list[list] = []  # [forward or backward, kernel-set calls] per layer visit
        self.open: dict[int, list] = {}  # live layer frames (id) -> their entry of layer_calls

    def profile(self, frame, event, arg) -> None:
        if event == "return":
            if self.open:
                self.open.pop(id(frame), None)
            return
        if event != "call":
            return
        callee = _ROOMS.get(frame.f_code.co_filename, "?")
        if callee == "?":
            callee = frame_room(frame.f_code.co_filename)
        if callee is None:
            return
        stack, f = [], frame.f_back
        while f is not None:  # the project frames below this call, innermost first
            r = _ROOMS.get(f.f_code.co_filename, "?")
            r = frame_room(f.f_code.co_filename) if r == "?" else r
            if r is not None:
                stack.append((r, f))
            f = f.f_back
        if not stack:
            return
        caller, caller_frame = stack[0]
        name = f"{caller} -> {callee}.{frame.f_code.co_name}"
        if FRAME_LEVEL[callee] > FRAME_LEVEL[caller] or (caller == "shared" and callee != "shared"):
            self.against.append(name)
        if callee != caller and callee in {r for r, _ in stack[1:]}:
            self.returns.append(name)
        if caller == "layers" and callee == "kernels" and id(caller_frame) in self.open:
            self.open[id(caller_frame)][1] += 1
        elif callee == "layers" and frame.f_code.co_name in ("forward", "backward"):
            self.open[id(frame)] = [frame.f_code.co_name, 0]
            self.layer_calls.append(self.open[id(frame)])


TINY_CNN = {
    "steps": 40,
    "layers": [
        {"name": "conv", "type": "conv", "channels": 2, "kernel": 3, "threshold": 0.6},
        {"name": "pool", "type": "pool", "window": 2, "threshold": 0.5},
        {"name": "hidden", "size": 6, "threshold": 0.8},
        {"name": "output", "size": 3, "threshold": 0.6, "lateral_inhibition": 1.0},
    ],
    "loss": {"desired": 8, "undesired": 2, "margin": 1},
}


def traced_step(backend: str) -> Walk:
    net = Network.from_config(TINY_CNN, 36, (1, 6, 6), generator=torch.Generator().manual_seed(3), backend=backend,
                              threads=1)
    with torch.no_grad():
        for w in net.weights().values():
            w.mul_(4.0).add_(0.3)  # enough spikes in every layer for every branch of the walk
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((3, 40, 36)) < 0.3)
    x[:, 0] = False
    y = torch.tensor([0, 1, 2])
    counts = {name: int(s.sum()) for name, s in net.forward(x).items()}
    assert all(counts.values()), counts  # (also compiles / warms up what the step runs)
    walk = Walk()
    sys.setprofile(walk.profile)
    try:
        net.backward_pass(x, y)
    finally:
        sys.setprofile(None)
    return walk


@pytest.mark.parametrize("backend", ["numba", "torch", "triton"])
def test_a_step_walks_network_layer_kernel_set(backend):
    """One `backward_pass` per kernel set: no call against the layering, at most 2 returns into a room already left
    (none today), and each layer's forward and backward makes exactly one kernel-set call."""
    if backend == "triton":
        pytest.importorskip("triton", reason="the triton kernel set needs the triton package (test dependency)")
        if torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") != "1":
            pytest.skip("traces the triton set under TRITON_INTERPRET=1 on CPU tensors")
    walk = traced_step(backend)
    assert not walk.against, walk.against
    assert len(walk.returns) <= 2, walk.returns
    per_layer = Counter(tuple(visit) for visit in walk.layer_calls)
    assert per_layer == Counter({("forward", 1): 4, ("backward", 1): 4}), per_layer
