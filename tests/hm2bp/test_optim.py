"""Optimisers (algorithm.md §3.9), learning-rate schedule and boost (§3.10) against hand-computed values."""

import math

import numpy as np
import pytest
import torch

from hm2bp.config import TrainSpec
from hm2bp.train.boost import class_error_rates, update_boost
from hm2bp.train.optim import SGD, Adam, make_optimizer
from hm2bp.train.schedule import batch_scaled_lr, epoch_lr, learning_rate


def _weights(seed=0, shape=(5, 7)):
    g = torch.Generator().manual_seed(seed)
    return {"hidden": torch.rand(shape, generator=g) * 2 - 1, "output": torch.rand((3, 5), generator=g) * 2 - 1}


def _grads(seed):
    g = torch.Generator().manual_seed(100 + seed)
    return {"hidden": torch.randn((5, 7), generator=g), "output": torch.randn((3, 5), generator=g)}


def test_schedule_values():
    expected = [1e-3, 1e-3, 1e-3 / math.sqrt(2), 1e-3 / math.sqrt(3)]
    assert [epoch_lr(1e-3, e) for e in range(4)] == pytest.approx(expected)
    assert epoch_lr(1e-3, 3) == pytest.approx(0.000577350, rel=1e-6)
    assert [epoch_lr(0.01, e, "constant") for e in range(3)] == [0.01] * 3
    assert batch_scaled_lr(1e-3, 16, "sqrt") == pytest.approx(4e-3)
    assert batch_scaled_lr(1e-3, 16, "none") == 1e-3
    spec = TrainSpec(lr=1e-3, batch_size=4, lr_batch_scaling="sqrt")
    assert learning_rate(spec, 4) == pytest.approx(2e-3 / 2)
    with pytest.raises(ValueError, match="unknown lr_schedule"):
        epoch_lr(1e-3, 1, "cosine")


def test_sgd_momentum_arithmetic():
    w0 = _weights()
    weights = {k: v.clone() for k, v in w0.items()}
    opt = SGD(weights, lr=0.5, momentum=0.9)
    lrs = [0.1, 0.1, 0.1 / math.sqrt(2)]
    expected = {k: v.double().clone() for k, v in w0.items()}
    velocity = {k: torch.zeros_like(v, dtype=torch.float64) for k, v in w0.items()}
    for step, lr in enumerate(lrs):
        grads = _grads(step)
        opt.step(grads, lr)
        for k in expected:
            velocity[k] = 0.9 * velocity[k] + lr * grads[k].double()
            expected[k] -= velocity[k]
    for k in expected:
        torch.testing.assert_close(weights[k].double(), expected[k], rtol=0, atol=1e-6)
    assert opt.steps == 3


def test_adam_first_step_is_lr_times_sign():
    weights = {k: torch.zeros_like(v) for k, v in _weights().items()}
    grads = _grads(0)
    grads["hidden"][0, 0] = 0.0  # a zero gradient does not move its weight
    opt = Adam(weights, lr=1e-3)
    opt.step(grads, 1e-3)
    for k, w in weights.items():
        torch.testing.assert_close(w, -1e-3 * torch.sign(grads[k]), rtol=1e-5, atol=0)
    assert weights["hidden"][0, 0] == 0.0


def test_adam_matches_reference_and_counters_never_reset():
    """Several steps with changing lr (epochs) against a float64 re-statement of g_adam_vecAdd."""
    w0 = _weights()
    weights = {k: v.clone() for k, v in w0.items()}
    opt = Adam(weights, lr=1e-3)
    ref = {k: v.double().clone() for k, v in w0.items()}
    m = {k: torch.zeros_like(v) for k, v in ref.items()}
    v = {k: torch.zeros_like(x) for k, x in ref.items()}
    b1t, b2t = 0.9, 0.999
    schedule = [(0, 1e-3)] * 3 + [(1, 1e-3)] * 3 + [(2, 1e-3 / math.sqrt(2))] * 3  # 3 updates per epoch
    for step, (_, lr) in enumerate(schedule):
        grads = _grads(step)
        opt.step(grads, lr)
        for k in ref:
            g = grads[k].double()
            m[k] = 0.9 * m[k] + 0.1 * g
            v[k] = 0.999 * v[k] + 0.001 * g * g
            ref[k] -= lr * (m[k] / (1 - b1t)) / (torch.sqrt(v[k] / (1 - b2t)) + 1e-8)
        b1t, b2t = b1t * 0.9, b2t * 0.999
    for k in ref:
        torch.testing.assert_close(weights[k].double(), ref[k], rtol=0, atol=2e-6)
    assert opt.beta1_power["hidden"] == pytest.approx(0.9 ** 10)
    assert opt.beta2_power["output"] == pytest.approx(0.999 ** 10)
    # Resetting the counters at an epoch boundary (what the reference does not do) would give other weights.
    reset = {k: x.clone() for k, x in w0.items()}
    opt_reset = Adam(reset)
    for step, (epoch, lr) in enumerate(schedule):
        if step and schedule[step - 1][0] != epoch:
            opt_reset.beta1_power = dict.fromkeys(reset, 0.9)
            opt_reset.beta2_power = dict.fromkeys(reset, 0.999)
        opt_reset.step(_grads(step), lr)
    assert (reset["hidden"] - weights["hidden"]).abs().max() > 1e-5


def _numpy_adam(w, g, m, v, lr, b1t, b2t):
    """One reference update in numpy float32, one correctly rounded operation at a time (no fused multiply-add)."""
    f = np.float32
    m = f(0.9) * m + f(0.1) * g
    v = f(0.999) * v + (f(0.001) * g) * g
    w = w - (f(lr) * (m / f(1 - b1t))) / (np.sqrt(v / f(1 - b2t)) + f(1e-8))
    return w, m, v


def test_fused_adam_and_sgd_equal_float32_restatement_bitwise():
    """The fused CPU kernels: every float32 operation as documented, bit for bit, over steps with changing lr;
    the torch ops (taken for non-contiguous weights, as on other devices) agree to a few ulp."""
    rng = np.random.default_rng(3)
    w0 = (rng.standard_normal((64, 33)) * 0.3).astype(np.float32)
    grads = [(rng.standard_normal(w0.shape) * 10.0 ** rng.integers(-6, 2, w0.shape)).astype(np.float32)
             for _ in range(5)]
    lrs = [1e-3, 1e-3, 7e-4, 5e-4, 5e-4]
    w = {"a": torch.from_numpy(w0.copy())}
    opt = Adam(w)
    version = w["a"]._version
    ref_w, ref_m, ref_v = w0.copy(), np.zeros_like(w0), np.zeros_like(w0)
    b1t, b2t = 0.9, 0.999
    for g, lr in zip(grads, lrs, strict=True):
        opt.step({"a": torch.from_numpy(g)}, lr)
        ref_w, ref_m, ref_v = _numpy_adam(ref_w, g, ref_m, ref_v, lr, b1t, b2t)
        b1t, b2t = b1t * 0.9, b2t * 0.999
        assert np.array_equal(w["a"].numpy(), ref_w) and np.array_equal(opt.m["a"].numpy(), ref_m)
        assert np.array_equal(opt.v["a"].numpy(), ref_v)
    assert w["a"]._version > version  # an in-place update, as torch's own ops would record
    # transposed storage (as `DenseLayer` keeps it, `weight` being the transposed view): the same fused kernel in
    # storage order, bit for bit, with moments in the weight's layout and contiguous gradients converted to it
    base = torch.from_numpy(np.ascontiguousarray(w0.T))
    w_t = {"a": base.T}
    opt_t = Adam(w_t)
    for g, lr in zip(grads, lrs, strict=True):
        opt_t.step({"a": torch.from_numpy(g)}, lr)
    assert opt_t.m["a"].stride() == w_t["a"].stride() == (1, 64)
    assert torch.equal(base.T, w["a"]) and torch.equal(opt_t.v["a"], opt.v["a"])
    # torch path (other devices, or a weight that is not dense in memory: here every other column of a wider array)
    wide = torch.zeros(64, 66)
    wide[:, ::2] = torch.from_numpy(w0)
    w_s = {"a": wide[:, ::2]}
    opt_s = Adam(w_s)
    for g, lr in zip(grads, lrs, strict=True):
        opt_s.step({"a": torch.from_numpy(g)}, lr)
    assert not torch.equal(w_s["a"], torch.from_numpy(w0)) and not wide[:, 1::2].any()
    torch.testing.assert_close(w_s["a"], w["a"], rtol=0, atol=1e-6 * float(np.abs(w0).max()))

    f = np.float32
    w = {"a": torch.from_numpy(w0.copy())}
    sgd = SGD(w, momentum=0.9)
    ref_w, ref_u = w0.copy(), np.zeros_like(w0)
    for g, lr in zip(grads, lrs, strict=True):
        sgd.step({"a": torch.from_numpy(g)}, lr)
        ref_u = f(0.9) * ref_u + f(lr) * g
        ref_w = ref_w - ref_u
    assert np.array_equal(w["a"].numpy(), ref_w) and np.array_equal(sgd.velocity["a"].numpy(), ref_u)


@pytest.mark.parametrize("kind", ["adam", "sgd"])
def test_state_dict_round_trip_continues_identically(kind):
    """A saved state continues bit for bit, also into weights stored transposed (a dense layer's layout): the
    buffers are copied into the weight's layout, so the fused kernel still applies."""
    a = {k: v.clone() for k, v in _weights().items()}
    b = {k: v.T.contiguous().T for k, v in _weights().items()}
    opt_a = make_optimizer(kind, a, 1e-2)
    for s in range(3):
        opt_a.step(_grads(s), 1e-2)
    state = opt_a.state_dict()
    for k in b:
        b[k].copy_(a[k])
    opt_b = make_optimizer(kind, b, 1e-2)
    opt_b.load_state_dict(state)
    for s in range(3, 5):
        opt_a.step(_grads(s), 5e-3)
        opt_b.step(_grads(s), 5e-3)
    for k in a:
        assert torch.equal(a[k], b[k])
    with pytest.raises(ValueError, match="optimiser state is for"):
        make_optimizer("sgd" if kind == "adam" else "adam", b, 1e-2).load_state_dict(state)


def test_optimizer_rejects_mismatched_gradients():
    opt = Adam(_weights())
    with pytest.raises(KeyError, match="missing"):
        opt.step({"hidden": torch.zeros(5, 7)}, 1e-3)
    with pytest.raises(ValueError, match="shape"):
        opt.step({"hidden": torch.zeros(5, 6), "output": torch.zeros(3, 5)}, 1e-3)


def test_boost_hand_example():
    weights = np.array([1.0, 1.0, 1.0, 1.0, 2.0, 1.0, 1.5])
    labels = np.array([0, 0, 0, 1, 1, 1, 2])
    correct = np.array([True, False, False, True, False, True, True])
    # class 0: 2 of 3 (weight) wrong -> err 2/3; class 1: weight 2 of 4 wrong -> 0.5; class 2: 0; class 3: empty.
    np.testing.assert_allclose(class_error_rates(weights, labels, correct, 4), [2 / 3, 0.5, 0.0, 0.0])
    new = update_boost(weights, labels, correct, 4)
    e0, e1 = math.exp((2 / 3) / 20), math.exp(0.5 / 20)
    np.testing.assert_allclose(new, [1.0, e0, e0, 1.0, 2.0 * e1, 1.0, 1.5], rtol=1e-15)
    # A second epoch compounds from the new weights (no renormalisation).
    again = update_boost(new, labels, correct, 4)
    err0 = 2 * e0 / (1 + 2 * e0)
    np.testing.assert_allclose(again[1], e0 * math.exp(err0 / 20), rtol=1e-15)
    assert again[0] == 1.0
