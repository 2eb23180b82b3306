"""What the compile check of the triton kernel set compiles: real training steps of every shipped preset and of
variations of the paper's MLP and CNN, recorded on shape-only tensors (`hm2bp.kernels.triton.aot` holds the
recording, specialisation and compiling; this module builds the networks and runs the steps, which the kernel
package may not do). Also the check's command line:

    python -m tests.hm2bp.triton_cases [--report] [--json PATH] [--targets 80,89,90] [--jobs N] [--no-cache]
                                       [--cases TEXT]

(from the repository root). `tests/hm2bp/test_triton_compile.py` runs it in CI.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import math
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from hm2bp import Network
from hm2bp.kernels.triton import aot
from hm2bp.presets import load_preset, preset_meta, preset_names
from hm2bp.train.optim import make_optimizer

#: Batches every case is recorded at. A tile holds up to 8 samples of a small layer, so 1, 2, 3 and 7 give every
#: tile height (1, 2, 4, 8); with 64 and 1024 (multiples of 16) and 1 (what Triton turns into a constant where an int
#: is specialised), every class of the batch and of `batch * steps` for every preset's T.
BATCHES = (1, 2, 3, 7, 64, 1024)
BACKEND = "triton"


@dataclass(frozen=True)
class Case:
    """A network (config dict, inputs, input shape) whose training step is recorded at `batches`."""

    name: str
    config: dict = field(compare=False, repr=False)
    n_inputs: int = 0
    input_shape: tuple | None = None
    batches: tuple[int, ...] = BATCHES


def training_step(net: Network, optimizer, batch: int, lr: float) -> None:
    """What `hm2bp fit` runs per batch (`Trainer.train_epoch`: backward pass with boost weights, no label read-back,
    deferred finiteness check, optimiser step), on zero input on the network's device. (An evaluation runs the same
    forward, whose launches at its batch sizes fall in the classes of `BATCHES`.)"""
    dev = net.device
    x = torch.zeros(batch, net.steps, net.n_inputs, dtype=torch.bool, device=dev)
    y = torch.zeros(batch, dtype=torch.int64, device=dev)
    weights = torch.ones(batch, dtype=torch.float64, device=dev)
    result = net.backward_pass(x, y, sample_weights=weights, validate=False, check_finite=False)
    optimizer.step(result.grads, lr)


def record_case(case: Case, device: str = "meta") -> list[aot.Launch]:
    """The launches of `case`'s training steps on the triton set, on `device` ("meta": nothing runs)."""
    net = Network.from_config(case.config, case.n_inputs, case.input_shape, backend=BACKEND).to(device)
    train = net.config.train
    optimizer = make_optimizer(train.optimizer, net.weights(), train.lr, train.momentum, kernels=net.kernels)
    with aot.recorder() as launches:
        for batch in case.batches:
            training_step(net, optimizer, batch, train.lr)
    return launches


def input_shape(config: dict, n_inputs: int) -> tuple[int, int, int] | None:
    """A conv-first preset takes a square single-channel image (its store's unit_shape)."""
    if config["layers"][0].get("type", "dense") == "dense":
        return None
    side = math.isqrt(n_inputs)
    if side * side != n_inputs:
        raise ValueError(f"a conv-first preset needs a square input; got {n_inputs} units")
    return (1, side, side)


def vary(config: dict, lateral: bool, regulariser: bool, effect_ratio: bool, refractory: int,
         optimizer: str | None = None) -> dict:
    """`config` with lateral inhibition of the output, the regulariser and effect ratios switched, a refractory
    period and an optimiser."""
    cfg = copy.deepcopy(config)
    cfg["layers"][-1]["lateral_inhibition"] = 1.0 if lateral else 0.0
    cfg["regularizer"] = {**cfg.get("regularizer", {}), "lambda": 10.0 if regulariser else 0.0,
                          "beta": 0.04 if regulariser else 0.0}
    cfg["train"] = {**cfg.get("train", {}), "effect_ratio": effect_ratio}
    if optimizer:
        cfg["train"]["optimizer"] = optimizer
    cfg["neuron"] = {**cfg.get("neuron", {}), "refractory": refractory}
    return cfg


def edge_cases() -> list[Case]:
    """Networks whose sizes, windows, steps and counts reach 1 (Triton turns an int argument equal to 1 into a
    constant): layers of one neuron, a one-spike label train, a spike-code cap of 1, 1x1 convolutions and pools."""
    def dense(steps: int, desired: float, **neuron) -> dict:
        return {"steps": steps, "neuron": neuron, "loss": {"desired": desired, "undesired": 0, "margin": 0},
                "regularizer": {"lambda": 10.0, "beta": 0.04},
                "layers": [{"name": "hidden", "size": 1, "threshold": 1.0},
                           {"name": "output", "size": 1, "threshold": 1.0, "lateral_inhibition": 1.0}]}

    conv = {"steps": 40, "loss": {"desired": 2, "undesired": 0, "margin": 0},
            "layers": [{"name": "conv1", "type": "conv", "channels": 1, "kernel": 1, "threshold": 1.0},
                       {"name": "pool1", "type": "pool", "window": 1, "threshold": 1.0},
                       {"name": "conv2", "type": "conv", "channels": 1, "kernel": 1, "threshold": 1.0},
                       {"name": "pool2", "type": "pool", "window": 1, "threshold": 1.0},
                       {"name": "output", "size": 1, "threshold": 1.0, "lateral_inhibition": 1.0}]}
    return [Case("1-1-1, T 2", dense(2, 1, refractory=1), 1, None, (1, 2)),
            Case("1-1-1, T 40, one-spike label train", dense(40, 2, refractory=1), 1, None, (1, 2)),
            Case("1-1-1, spike-code cap 1", dense(40, 2, tau_m=1.0, tau_s=0.5, refractory=4), 1, None, (1, 2)),
            Case("1x1 conv and pool", conv, 1, (1, 1, 1), (1, 2))]


def cases() -> list[Case]:
    """The recorded steps: every shipped preset (its sizes and T; the batches of `BATCHES` and its own); for the
    paper's MLP and CNN every combination of lateral inhibition, regulariser and effect ratio (refractory period 2),
    refractory periods 0, 1 and 3, and SGD; the edge cases of `edge_cases`."""
    out = []
    for name in preset_names():
        cfg, inputs = load_preset(name), int(preset_meta(name)["inputs"])
        own = int(cfg.get("train", {}).get("batch_size", 1))
        out.append(Case(name, cfg, inputs, input_shape(cfg, inputs), tuple(sorted({*BATCHES, own}))))
    for name in ("mnist-mlp", "mnist-cnn"):
        base, inputs = load_preset(name), int(preset_meta(name)["inputs"])
        shape = input_shape(base, inputs)
        for lateral, reg, effect in itertools.product((True, False), repeat=3):
            label = f"{name} lateral={int(lateral)} reg={int(reg)} effect={int(effect)}"
            out.append(Case(label, vary(base, lateral, reg, effect, 2), inputs, shape))
        for refractory in (0, 1, 3):
            out.append(Case(f"{name} refractory={refractory}", vary(base, True, True, True, refractory), inputs,
                            shape))
        out.append(Case(f"{name} sgd", vary(base, True, True, True, 2, "sgd"), inputs, shape))
    return out + edge_cases()


def main(argv: list[str] | None = None) -> int:
    """The compile check's command line (module docstring); exit status 1 on any failure."""
    ap = argparse.ArgumentParser(prog="python -m tests.hm2bp.triton_cases",
                                 description="Compile every Triton kernel variant the training steps of the presets "
                                             "launch, for real GPUs, without one.")
    ap.add_argument("--report", action="store_true", help="print every variant (default: one line per kernel)")
    ap.add_argument("--json", type=Path, help="write the whole report (variants, launches, results) as JSON")
    ap.add_argument("--targets", default=",".join(map(str, aot.TARGETS)),
                    help="compute capabilities (default: %(default)s)")
    ap.add_argument("--jobs", type=int, default=aot.default_jobs(), help="compile processes (default: %(default)s)")
    ap.add_argument("--no-cache", action="store_true", help=f"compile everything again (cache: {aot.cache_dir()})")
    ap.add_argument("--cases", default=None,
                    help="only the cases whose name contains this text (skips the every-kernel-launched check)")
    args = ap.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":
        # the kernels of this process are interpreted functions: compile in a process where they are not
        env = {**os.environ, "TRITON_INTERPRET": "0"}
        argv = sys.argv[1:] if argv is None else argv
        return subprocess.run([sys.executable, "-m", "tests.hm2bp.triton_cases", *argv], env=env,
                              check=False).returncode
    selected = cases()
    if args.cases is not None:
        selected = [c for c in selected if args.cases in c.name]
        if not selected:
            ap.error(f"no case name contains {args.cases!r}")
    targets = tuple(int(t) for t in args.targets.split(","))
    report = aot.run_check(selected, record_case, targets, args.jobs, not args.no_cache, args.cases is None)
    print(aot.format_variants(report) if args.report else aot.format_summary(report))
    print("\n" + aot.format_footer(report))
    if args.json:
        args.json.write_text(json.dumps(asdict(report), indent=1, default=str) + "\n")
    problems = report.failures()
    for line in problems:
        print(f"FAILED: {line}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    from tests.hm2bp.triton_cases import main as run  # by the module's own name, which worker processes import

    sys.exit(run())
