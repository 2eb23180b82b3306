"""The triton set's event-driven weight gradients (`hm2bp.kernels.triton.grad`) on CPU tensors under Triton's
interpreter (on CUDA tensors where a GPU is present), against float64 recomputations of the rules and against the
numba set: the per-(sample, neuron) step lists, the dense gradient over several segments of samples (fused with the
error to the layer below, and on its own for a layer wider than one tile), and the conv gradient and effect sums
over one or many pixel blocks."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

pytest.importorskip("triton", reason="the triton kernel set needs the triton package (test dependency)")

from hm2bp.config import RegularizerSpec  # noqa: E402
from hm2bp.kernels.base import Trains  # noqa: E402
from hm2bp.kernels.numba import conv as numba_conv  # noqa: E402
from hm2bp.kernels.numba import gradient as numba_gradient  # noqa: E402
from hm2bp.kernels.numba.csr import raster_to_csr  # noqa: E402
from hm2bp.kernels.triton.set import TritonKernels  # noqa: E402
from hm2bp.rules import conv as rules_conv  # noqa: E402
from hm2bp.rules import gradient as rules  # noqa: E402
from tests.hm2bp.test_backends import TRITON_DEVICE  # noqa: E402

NO_REG = RegularizerSpec(lam=0.0, beta=0.0)
F64 = torch.float64


def kernel_set(wide: bool, **budget) -> TritonKernels:
    ks = TritonKernels(torch.device(TRITON_DEVICE), **budget)
    ks.wide_tiles = wide  # False: the tiles a GPU uses
    return ks


def on(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)).to(TRITON_DEVICE)


def trains(raster: np.ndarray, codes: bool = False) -> Trains:
    spikes = on(np.where(raster, 7, 0).astype(np.int16)) if codes else on(raster)
    return Trains(spikes, on(raster.sum(1).astype(np.int64)))


def readouts(rng, batch: int, steps: int, n_post: int, silent: np.ndarray) -> np.ndarray:
    """Read-out rows K float32 `[B, T, n_post]`: zero at step 0 and for the silent posts, as the read-out gives."""
    k = rng.standard_normal((batch, steps, n_post)).astype(np.float32)
    k[:, 0] = 0.0
    return np.where(silent[:, None, :], np.float32(0.0), k)


@pytest.mark.parametrize("wide,codes,steps", [(False, False, 70), (False, True, 33), (True, True, 70)])
def test_column_lists_are_each_neurons_steps_in_order(wide, codes, steps):
    rng = np.random.default_rng(steps)
    raster = rng.random((3, steps, 70)) < 0.2
    raster[1, :, 5] = False  # a silent neuron
    raster[2, :, 6] = True  # a neuron firing at every step
    lists, counts = kernel_set(wide).column_lists(trains(raster, codes))
    lists, counts = lists.cpu().numpy(), counts.cpu().numpy()
    np.testing.assert_array_equal(counts, raster.sum(1))
    for b in range(3):
        for j in range(70):
            np.testing.assert_array_equal(lists[b, j, :counts[b, j]], np.flatnonzero(raster[b, :, j]))


def dense_case(seed: int, batch: int, steps: int, n_pre: int, n_post: int):
    rng = np.random.default_rng(seed)
    raster = rng.random((batch, steps, n_pre)) < 0.05
    raster[:, 0] = False
    raster[:, :, 1] = False  # a silent pre neuron
    post_counts = rng.integers(0, 6, (batch, n_post))
    post_counts[:, 2] = 0  # a silent post neuron in every sample
    k = readouts(rng, batch, steps, n_post, post_counts == 0)
    coef = rng.standard_normal((batch, n_post))
    delta = rng.standard_normal((batch, n_post))
    w_t = rng.uniform(-1, 1, (n_pre, n_post)).astype(np.float32)
    layer = SimpleNamespace(kind="dense", spec=SimpleNamespace(name="layer"), n_pre=n_pre, n_post=n_post,
                            storage=on(w_t), weight_shape=(n_post, n_pre), vth=1.0)
    return raster, post_counts, k, coef, delta, w_t, layer


def reference_gradient(raster, k, coef, post_counts) -> np.ndarray:
    """`sum_b coef_b[i] (sum_t P[b,t,j] K[b,t,i] + 0.1 [o_bi = 0] [o_bj > 0])`, float64 `[n_pre, n_post]`."""
    e = np.einsum("bti,btj->bji", k.astype(np.float64), raster.astype(np.float64))
    e += 0.1 * (raster.sum(1) > 0)[:, :, None] * (post_counts == 0)[:, None, :]
    return np.einsum("bi,bji->ji", coef, e)


@pytest.mark.parametrize("n_post,effect,wide", [(20, True, False), (20, False, False), (150, True, True)])
def test_dense_gradient_over_segments_equals_float64_and_numba(n_post, effect, wide):
    """Batch 24 at T = 300: segments of 14 samples (two partial gradients); 150 posts take two tiles, whose error
    comes from the tile-skipping effect kernel instead of the fused walk (with the interpreter's wide tiles: the
    GPU's are slow to interpret)."""
    batch, steps, n_pre = 24, 300, 9
    raster, post_counts, k, coef, delta, w_t, layer = dense_case(n_post, batch, steps, n_pre, n_post)
    ks = kernel_set(wide)
    acc = ks.new_accumulator(layer)
    pre = trains(raster, codes=True)
    error = ks.dense_grad_and_effect(acc, layer, on(k), on(coef), on(delta) if effect else None, None, pre,
                                     on(post_counts), pre.counts)
    assert len(acc["parts"]) == 1 and acc["parts"][0].shape[0] == 2
    grad = ks.finish(layer, acc, batch, NO_REG).cpu().numpy()  # [n_post, n_pre]
    ref = reference_gradient(raster, k, coef, post_counts).T / batch
    np.testing.assert_allclose(grad, ref.astype(np.float32), rtol=1e-6, atol=1e-7 * np.abs(ref).max())
    # the numba set's gradient (float32 products and sums) within the backends' tolerance
    g_t = np.zeros((n_pre, n_post), np.float32)
    numba_gradient.weight_gradient(k, coef, np.arange(batch), raster_to_csr(raster), post_counts,
                                   raster.sum(1), g_t)
    np.testing.assert_allclose(grad, g_t.T / batch, rtol=1e-6, atol=1e-6 * np.abs(ref).max())
    if effect:
        expected = rules.effect_ratio_error(torch.from_numpy(k), torch.from_numpy(delta),
                                            torch.from_numpy(w_t.T.copy()), torch.from_numpy(raster),
                                            torch.from_numpy(post_counts), torch.from_numpy(raster.sum(1)))
        np.testing.assert_allclose(error.cpu().numpy(), expected.numpy(), rtol=1e-9, atol=1e-12)
    else:
        assert error is None


def conv_case(seed: int, batch: int, steps: int):
    rng = np.random.default_rng(seed)
    in_shape, c_out, ks_ = (2, 7, 7), 3, 3
    out_shape = (c_out, 5, 5)
    n_pre, n_post = 98, 75
    raster = rng.random((batch, steps, n_pre)) < 0.08
    raster[:, 0] = False
    post_counts = rng.integers(0, 5, (batch, n_post))
    k = readouts(rng, batch, steps, n_post, post_counts == 0)
    coef = rng.standard_normal((batch, n_post))
    delta = rng.standard_normal((batch, n_post))
    w = rng.uniform(-1, 1, (c_out, 2, ks_, ks_)).astype(np.float32)
    layer = SimpleNamespace(kind="conv", spec=SimpleNamespace(name="conv"), n_pre=n_pre, n_post=n_post,
                            storage=on(w), weight_shape=w.shape, in_shape=in_shape, out_shape=out_shape, vth=1.0)
    return raster, post_counts, k, coef, delta, w, layer


@pytest.mark.parametrize("budget", [128 << 20, 1])
def test_conv_gradient_and_effect_from_one_walk_equal_torch_and_numba(budget):
    """2 input channels of 7x7, 3 kernels of 3x3; one pixel per program, or (budget 1 byte) as many as the
    partials' budget forces: every pixel block size gives the same sums."""
    batch, steps = 3, 40
    raster, post_counts, k, coef, delta, w, layer = conv_case(5, batch, steps)
    ks = kernel_set(False, partial_budget=budget)
    acc = ks.new_accumulator(layer)
    pre = trains(raster)
    error = ks.conv_grad_and_effect(acc, layer, on(k), on(coef), on(delta), None, pre, on(post_counts), pre.counts)
    args = (torch.from_numpy(raster), torch.from_numpy(post_counts), torch.from_numpy(raster.sum(1)))
    ref = rules_conv.conv_weight_gradient(torch.from_numpy(k).to(F64), torch.from_numpy(coef), *args,
                                          layer.in_shape, w.shape)
    np.testing.assert_allclose(acc["g"].cpu().numpy(), ref.numpy(), rtol=1e-10, atol=1e-12)
    expected = rules_conv.conv_effect_ratio_error(torch.from_numpy(k).to(F64), torch.from_numpy(delta),
                                                  torch.from_numpy(w), *args, layer.in_shape)
    np.testing.assert_allclose(error.cpu().numpy(), expected.numpy(), rtol=1e-10, atol=1e-12)
    csr = raster_to_csr(raster)
    g = numba_conv.conv_weight_gradient(k, coef, np.arange(batch), csr, post_counts, raster.sum(1),
                                        layer.in_shape, w.shape)
    np.testing.assert_allclose(acc["g"].cpu().numpy(), g, rtol=1e-10, atol=1e-12)
    e = numba_conv.conv_effect_ratio_error(k, torch.from_numpy(delta), torch.from_numpy(w), np.arange(batch), csr,
                                           torch.from_numpy(post_counts), torch.from_numpy(raster.sum(1)),
                                           layer.in_shape)
    np.testing.assert_allclose(error.cpu().numpy(), e.numpy(), rtol=1e-10, atol=1e-12)
