"""Optimisers with the reference implementation's semantics (`hm2bp-reference.md` §3.9).

Both update the network's weight tensors in place (the live references of `Network.weights()`), take the
learning rate per call (the schedule lives in `hm2bp.schedule`) and keep their state on the weights' device.

* Adam: `m <- 0.9 m + 0.1 g`, `v <- 0.999 v + 0.001 g^2`,
  `w <- w - lr * (m / (1 - b1t)) / (sqrt(v / (1 - b2t)) + 1e-8)`. The per-layer powers `b1t`, `b2t` start at
  0.9 / 0.999 and are multiplied by 0.9 / 0.999 after every update; they are never reset (not between epochs, not on
  resume), so the first step of a run is `-lr * sign(g)` and later epochs are not re-bias-corrected.
* SGD: `u <- momentum * u + lr * g`, `w <- w - u` (the learning rate is inside the velocity, as in the reference).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

ADAM_BETA1 = 0.9
ADAM_BETA2 = 0.999
ADAM_EPS = 1e-8


class Optimizer:
    """Common bookkeeping: the weights dict, a step counter and checks that gradients match the weights."""

    kind = "base"

    def __init__(self, weights: Mapping[str, torch.Tensor]):
        if not weights:
            raise ValueError("optimiser needs at least one trainable weight")
        self.weights = dict(weights)
        self.steps = 0

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
            out[name] = b.to(device=w.device, dtype=w.dtype).clone()
        return out


class Adam(Optimizer):
    """Adam as in the reference (`g_adam_vecAdd`): float32 moments, never-reset per-layer bias-correction powers."""

    kind = "adam"

    def __init__(self, weights: Mapping[str, torch.Tensor], lr: float = 1e-3):
        super().__init__(weights)
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
            g = grads[name].to(dtype=w.dtype)
            m, v = self.m[name], self.v[name]
            m.mul_(ADAM_BETA1).add_(g, alpha=1.0 - ADAM_BETA1)
            v.mul_(ADAM_BETA2).addcmul_(g, g, value=1.0 - ADAM_BETA2)
            m_hat = m / (1.0 - self.beta1_power[name])
            v_hat = v / (1.0 - self.beta2_power[name])
            w.sub_(lr * m_hat / (v_hat.sqrt_() + ADAM_EPS))
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

    def __init__(self, weights: Mapping[str, torch.Tensor], lr: float = 1e-3, momentum: float = 0.9):
        super().__init__(weights)
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
            u.mul_(self.momentum).add_(grads[name].to(dtype=w.dtype), alpha=lr)
            w.sub_(u)
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


def make_optimizer(kind: str, weights: Mapping[str, torch.Tensor], lr: float, momentum: float = 0.9) -> Optimizer:
    """The optimiser named by `TrainSpec.optimizer` ("adam" or "sgd")."""
    if kind == "adam":
        return Adam(weights, lr)
    if kind == "sgd":
        return SGD(weights, lr, momentum)
    raise ValueError(f"unknown optimizer {kind!r}; known: adam, sgd")
