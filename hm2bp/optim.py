"""Optimisers with the reference implementation's semantics (`docs/algorithm.md` §3.9).

Both update the network's weight tensors in place (the live references of `Network.weights()`), take the
learning rate per call (the schedule lives in `hm2bp.schedule`) and keep their state on the weights' device.

* Adam: `m <- 0.9 m + 0.1 g`, `v <- 0.999 v + 0.001 g^2`,
  `w <- w - lr * (m / (1 - b1t)) / (sqrt(v / (1 - b2t)) + 1e-8)`. The per-layer powers `b1t`, `b2t` start at
  0.9 / 0.999 and are multiplied by 0.9 / 0.999 after every update; they are never reset (not between epochs, not on
  resume), so the first step of a run is `-lr * sign(g)` and later epochs are not re-bias-corrected.
* SGD: `u <- momentum * u + lr * g`, `w <- w - u` (the learning rate is inside the velocity, as in the reference).

Contiguous float32 CPU tensors are updated by one fused numba pass per layer (weights, moments and gradient
read once, no temporaries; ~0.35 ms instead of 2-8 ms of torch ops for the 627k hidden weights of 784-800-10; one
thread, since the pass is memory-bound). Every operation there is a correctly rounded float32 operation in the order
written below (no fused multiply-add), the scalars rounded to float32 as in a float32 tensor op:

    m' = 0.9 m + 0.1 g,   v' = 0.999 v + (0.001 g) g,   w' = w - (lr (m' / (1 - b1t))) / (sqrt(v' / (1 - b2t)) + 1e-8)
    SGD: u' = mu u + lr g,   w' = w - u'

With the `triton` backend (the CUDA path) the same update is one fused Triton kernel per layer, with the same
float32 operation order (correctly rounded division and square root, no fused multiply-add): bit-equal to the
numba kernel. Other tensors (non-contiguous, other dtypes, the `torch` backend) take torch ops of the same formulas;
they agree to about an ulp (torch may fuse the multiply-adds, and its vectorised float32 square root is not always
correctly rounded). No update reads a value back from the device.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from numba import njit

ADAM_BETA1 = 0.9
ADAM_BETA2 = 0.999
ADAM_EPS = 1e-8


@njit(cache=True, nogil=True, error_model="numpy")
def _adam_kernel(w, g, m, v, b1, b1c, b2, b2c, lr, c1, c2, eps):
    # All arguments float32 (1-D arrays of one layer, scalars as np.float32): float32 arithmetic throughout.
    for k in range(w.shape[0]):
        gk = g[k]
        mk = b1 * m[k] + b1c * gk
        vk = b2 * v[k] + (b2c * gk) * gk
        m[k] = mk
        v[k] = vk
        w[k] = w[k] - (lr * (mk / c1)) / (np.sqrt(vk / c2) + eps)


@njit(cache=True, nogil=True, error_model="numpy")
def _sgd_kernel(w, g, u, mu, lr):
    for k in range(w.shape[0]):
        uk = mu * u[k] + lr * g[k]
        u[k] = uk
        w[k] = w[k] - uk


def _flat32(*tensors: torch.Tensor) -> list[torch.Tensor] | None:
    """Flat float32 views of the memory of `tensors` (all in the same element order), or None unless all are
    float32 tensors on one device that are contiguous or, all alike, transposed-contiguous 2-D views (a dense
    layer's `weight` is the transposed view of its `[n_pre, n_post]` storage). The updates are elementwise, so
    storage order is as good as any."""
    out = []
    transposed = None
    for t in tensors:
        if t.dtype != torch.float32 or t.device != tensors[0].device:
            return None
        if t.is_contiguous():
            flip = False
        elif t.dim() == 2 and t.T.is_contiguous():
            flip = True
        else:
            return None
        if transposed is None:
            transposed = flip
        elif flip != transposed:
            return None
        out.append((t.detach().T if flip else t.detach()).reshape(-1))
    return out


def resolve_optimizer_backend(backend: str, device: torch.device) -> str:
    """"auto" -> numba for CPU weights, triton for CUDA weights when Triton can be imported, else torch."""
    if backend == "auto":
        from hm2bp.kernels import resolve_backend

        return resolve_backend("auto", device)
    if backend not in ("numba", "triton", "torch"):
        raise ValueError(f"optimizer backend must be auto, numba, triton or torch; got {backend!r}")
    return backend


def _launch_elementwise(kernel, n: int, *args) -> None:
    from hm2bp.kernels.triton.launch import launch

    block = 1024
    launch(kernel, (-(-n // block),), *args, BLOCK=block)


def _mark_modified(*tensors: torch.Tensor) -> None:
    # The kernels write through numpy views; bump the version counters as torch's own in-place ops would (autograd
    # and any cache keyed on `_version` then see the update).
    for t in tensors:
        torch.autograd.graph.increment_version(t)


def _like(t: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """`t` with the dtype, device and memory layout (strides) of `w`; `t` itself when it already has them."""
    t = t.detach()
    if t.dtype == w.dtype and t.device == w.device and t.stride() == w.stride():
        return t
    return torch.empty_like(w).copy_(t)



class Optimizer:
    """Common bookkeeping: the weights dict, a step counter and checks that gradients match the weights."""

    kind = "base"

    def __init__(self, weights: Mapping[str, torch.Tensor], backend: str = "auto"):
        if not weights:
            raise ValueError("optimiser needs at least one trainable weight")
        self.weights = dict(weights)
        self.steps = 0
        self.backend = resolve_optimizer_backend(backend, next(iter(self.weights.values())).device)

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

    def __init__(self, weights: Mapping[str, torch.Tensor], lr: float = 1e-3, backend: str = "auto"):
        super().__init__(weights, backend)
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
            flat = _flat32(w, g, m, v) if self.backend != "torch" else None
            f32 = np.float32
            scalars = (f32(ADAM_BETA1), f32(1.0 - ADAM_BETA1), f32(ADAM_BETA2), f32(1.0 - ADAM_BETA2), f32(lr),
                       f32(c1), f32(c2), f32(ADAM_EPS))
            if flat is not None and self.backend == "numba" and w.device.type == "cpu":
                _adam_kernel(*(t.numpy() for t in flat), *scalars)
                _mark_modified(w, m, v)
            elif flat is not None and self.backend == "triton":
                from hm2bp.kernels.triton.optim import adam_kernel

                _launch_elementwise(adam_kernel, flat[0].numel(), *flat, flat[0].numel(), *map(float, scalars))
            else:
                _adam_torch(w, g, m, v, lr, c1, c2)
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


def _adam_torch(w: torch.Tensor, g: torch.Tensor, m: torch.Tensor, v: torch.Tensor, lr: float, c1: float,
                c2: float) -> None:
    """The Adam update with torch ops (any device); `c1 = 1 - b1t`, `c2 = 1 - b2t`."""
    m.mul_(ADAM_BETA1).add_(g, alpha=1.0 - ADAM_BETA1)
    v.mul_(ADAM_BETA2).addcmul_(g, g, value=1.0 - ADAM_BETA2)
    m_hat = m / c1
    v_hat = v / c2
    w.sub_(lr * m_hat / (v_hat.sqrt_() + ADAM_EPS))


class SGD(Optimizer):
    """SGD with momentum as in the reference (`g_sgd_vecAdd`): `u <- mu u + lr g`, `w <- w - u`."""

    kind = "sgd"

    def __init__(self, weights: Mapping[str, torch.Tensor], lr: float = 1e-3, momentum: float = 0.9,
                 backend: str = "auto"):
        super().__init__(weights, backend)
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
            g = _like(grads[name], w)
            flat = _flat32(w, g, u) if self.backend != "torch" else None
            if flat is not None and self.backend == "numba" and w.device.type == "cpu":
                _sgd_kernel(*(t.numpy() for t in flat), np.float32(self.momentum), np.float32(lr))
                _mark_modified(w, u)
            elif flat is not None and self.backend == "triton":
                from hm2bp.kernels.triton.optim import sgd_kernel

                _launch_elementwise(sgd_kernel, flat[0].numel(), *flat, flat[0].numel(),
                                    float(np.float32(self.momentum)), float(np.float32(lr)))
            else:
                _sgd_torch(w, g, u, self.momentum, lr)
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


def _sgd_torch(w: torch.Tensor, g: torch.Tensor, u: torch.Tensor, momentum: float, lr: float) -> None:
    """The SGD update with torch ops (any device)."""
    u.mul_(momentum).add_(g, alpha=lr)
    w.sub_(u)


def make_optimizer(kind: str, weights: Mapping[str, torch.Tensor], lr: float, momentum: float = 0.9,
                   backend: str = "auto") -> Optimizer:
    """The optimiser named by `TrainSpec.optimizer` ("adam" or "sgd"); `backend` picks its fused update (a
    network's `kernels.optimizer_backend`)."""
    if kind == "adam":
        return Adam(weights, lr, backend)
    if kind == "sgd":
        return SGD(weights, lr, momentum, backend)
    raise ValueError(f"unknown optimizer {kind!r}; known: adam, sgd")
