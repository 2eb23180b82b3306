"""Optimisers with the reference implementation's semantics (`docs/algorithm.md` §3.9): their state and bookkeeping.

Both update the network's weight tensors in place (the live references of `Network.weights()`), take the
learning rate per call (the schedule lives in `hm2bp.train.schedule`) and keep their state on the weights' device.

* Adam: `m <- 0.9 m + 0.1 g`, `v <- 0.999 v + 0.001 g^2`,
  `w <- w - lr * (m / (1 - b1t)) / (sqrt(v / (1 - b2t)) + 1e-8)`. The per-layer powers `b1t`, `b2t` start at
  0.9 / 0.999 and are multiplied by 0.9 / 0.999 after every update; they are never reset (not between epochs, not on
  resume), so the first step of a run is `-lr * sign(g)` and later epochs are not re-bias-corrected.
* SGD: `u <- momentum * u + lr * g`, `w <- w - u` (the learning rate is inside the velocity, as in the reference).

The update itself is asked of a kernel set (`KernelSet.adam_update` / `sgd_update`): the network's own set, or the
default set for the weights' device. The CPU and CUDA sets run one fused pass per layer whose float32 operations are
those above in that order (bit-equal to each other); tensors they cannot run on (other dtypes, non-dense layouts)
and the torch set take torch ops of the same formulas, which agree to about an ulp. No update reads a value back
from the device.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from hm2bp.kernels import KernelSet, make_kernels

ADAM_BETA1 = 0.9
ADAM_BETA2 = 0.999
ADAM_EPS = 1e-8


def _like(t: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """`t` with the dtype, device and memory layout (strides) of `w`; `t` itself when it already has them."""
    t = t.detach()
    if t.dtype == w.dtype and t.device == w.device and t.stride() == w.stride():
        return t
    return torch.empty_like(w).copy_(t)


class Optimizer:
    """Common bookkeeping: the weights dict, a step counter and checks that gradients match the weights.

    `kernels` runs the updates: the network's kernel set (`Network.kernels`), or None for the default set of the
    weights' device."""

    kind = "base"

    def __init__(self, weights: Mapping[str, torch.Tensor], kernels: KernelSet | None = None):
        if not weights:
            raise ValueError("optimiser needs at least one trainable weight")
        self.weights = dict(weights)
        self.steps = 0
        if kernels is None:
            kernels = make_kernels("auto", next(iter(self.weights.values())).device)
        self.kernels = kernels

    def _check(self, grads: Mapping[str, torch.Tensor]) -> None:
        missing = set(self.weights) - set(grads)
        extra = set(grads) - set(self.weights)
        if missing or extra:
            raise KeyError(f"gradients do not match the weights: missing {sorted(missing)}, unknown {sorted(extra)}")
        for name, g in grads.items():
            if g.shape != self.weights[name].shape:
                raise ValueError(
                    f"gradient of {name!r} has shape {tuple(g.shape)}, weight {tuple(self.weights[name].shape)}"
                )

    def step(self, grads: Mapping[str, torch.Tensor], lr: float) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict:
        raise NotImplementedError

    def load_state_dict(self, state: dict) -> None:
        raise NotImplementedError

    def _load_buffers(self, state: dict, key: str) -> dict[str, torch.Tensor]:
        if state.get("kind") != self.kind:
            raise ValueError(f"optimiser state is for {state.get('kind')!r}, this optimiser is {self.kind!r}")
        buffers = state[key]
        if set(buffers) != set(self.weights):
            raise ValueError(f"optimiser state holds layers {sorted(buffers)}, network has {sorted(self.weights)}")
        out = {}
        for name, w in self.weights.items():
            b = buffers[name]
            if b.shape != w.shape:
                raise ValueError(f"optimiser state of {name!r} has shape {tuple(b.shape)}, weight {tuple(w.shape)}")
            out[name] = torch.empty_like(w).copy_(b)  # a private copy in the weight's layout (fused kernels)
        return out


class Adam(Optimizer):
    """Adam as in the reference (`g_adam_vecAdd`): float32 moments, never-reset per-layer bias-correction powers."""

    kind = "adam"

    def __init__(self, weights: Mapping[str, torch.Tensor], lr: float = 1e-3, kernels: KernelSet | None = None):
        super().__init__(weights, kernels)
        self.lr = lr
        self.m = {k: torch.zeros_like(w) for k, w in self.weights.items()}
        self.v = {k: torch.zeros_like(w) for k, w in self.weights.items()}
        # Host-side powers beta^t of the reference; kept in double precision (Python floats).
        self.beta1_power = {k: ADAM_BETA1 for k in self.weights}
        self.beta2_power = {k: ADAM_BETA2 for k in self.weights}

    @torch.no_grad()
    def step(self, grads: Mapping[str, torch.Tensor], lr: float | None = None) -> None:
        """One update of every layer with learning rate `lr` (default: the constructor's)."""
        self._check(grads)
        lr = self.lr if lr is None else float(lr)
        for name, w in self.weights.items():
            g = _like(grads[name], w)
            m, v = self.m[name], self.v[name]
            c1, c2 = 1.0 - self.beta1_power[name], 1.0 - self.beta2_power[name]
            self.kernels.adam_update(w, g, m, v, lr, c1, c2, ADAM_BETA1, ADAM_BETA2, ADAM_EPS)
            self.beta1_power[name] *= ADAM_BETA1
            self.beta2_power[name] *= ADAM_BETA2
        self.steps += 1

    def state_dict(self) -> dict:
        return {
            "kind": self.kind,
            "steps": self.steps,
            "m": {k: t.detach().cpu().clone() for k, t in self.m.items()},
            "v": {k: t.detach().cpu().clone() for k, t in self.v.items()},
            "beta1_power": dict(self.beta1_power),
            "beta2_power": dict(self.beta2_power),
        }

    def load_state_dict(self, state: dict) -> None:
        self.m = self._load_buffers(state, "m")
        self.v = self._load_buffers(state, "v")
        self.beta1_power = {k: float(state["beta1_power"][k]) for k in self.weights}
        self.beta2_power = {k: float(state["beta2_power"][k]) for k in self.weights}
        self.steps = int(state["steps"])


class SGD(Optimizer):
    """SGD with momentum as in the reference (`g_sgd_vecAdd`): `u <- mu u + lr g`, `w <- w - u`."""

    kind = "sgd"

    def __init__(self, weights: Mapping[str, torch.Tensor], lr: float = 1e-3, momentum: float = 0.9,
                 kernels: KernelSet | None = None):
        super().__init__(weights, kernels)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must lie in [0, 1); got {momentum}")
        self.lr = lr
        self.momentum = float(momentum)
        self.velocity = {k: torch.zeros_like(w) for k, w in self.weights.items()}

    @torch.no_grad()
    def step(self, grads: Mapping[str, torch.Tensor], lr: float | None = None) -> None:
        self._check(grads)
        lr = self.lr if lr is None else float(lr)
        for name, w in self.weights.items():
            u = self.velocity[name]
            self.kernels.sgd_update(w, _like(grads[name], w), u, self.momentum, lr)
        self.steps += 1

    def state_dict(self) -> dict:
        return {
            "kind": self.kind,
            "steps": self.steps,
            "momentum": self.momentum,
            "velocity": {k: t.detach().cpu().clone() for k, t in self.velocity.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        self.velocity = self._load_buffers(state, "velocity")
        self.steps = int(state["steps"])


def make_optimizer(kind: str, weights: Mapping[str, torch.Tensor], lr: float, momentum: float = 0.9,
                   kernels: KernelSet | None = None) -> Optimizer:
    """The optimiser named by `TrainSpec.optimizer` ("adam" or "sgd"); `kernels` runs its updates (a network's
    `kernels`; None: the default set of the weights' device)."""
    if kind == "adam":
        return Adam(weights, lr, kernels)
    if kind == "sgd":
        return SGD(weights, lr, momentum, kernels)
    raise ValueError(f"unknown optimizer {kind!r}; known: adam, sgd")
