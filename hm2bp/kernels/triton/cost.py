"""What one launch of a kernel of this set costs: lane instructions, bytes to and from device memory and bytes served
again by the caches, derived from the launch's arguments and grid and from the kernel's access pattern (read off
its source, below); for the kernels whose work follows the spikes, from the spikes themselves.

`launch_cost(kernel, grid, args, meta, spikes)` -> `Cost`. `spikes(n)` returns the 0/1 raster (numpy bool
`[B, T, n]`) of the layer with `n` units whose spikes the launch walks (the benchmark takes it from a forward pass
on the same input: every kernel set gives the same spikes). The counts are of what runs, masked lanes and padded
tiles included (they take issue slots), not of the useful arithmetic alone. `benchmarks/bench_gpu.py` turns them
into a modelled time. Every kernel of the package has a cost function here (tested), so a new kernel cannot leave
the model silently.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass
class Cost:
    """`f64`: float64 lane instructions (a multiply-add is one); `ops32`: 32-bit float and integer lane instructions;
    `dram`: bytes that must move between the chip and device memory; `l2`: bytes read again from on-chip caches
    (gathers of rows that stay resident); `loop`: the most iterations of a dependent loop (time steps, or spike
    chunks whose loads wait on the previous loads) one program runs, `iters` those of all programs together,
    `threads` a program's threads: what bounds a kernel whose loops wait on memory (0: no such loop)."""

    f64: float = 0.0
    ops32: float = 0.0
    dram: float = 0.0
    l2: float = 0.0
    loop: int = 0
    iters: float = 0.0
    threads: int = 128


def _cdiv(a: int, b: int) -> int:
    return -(-int(a) // int(b))


def _nbytes(t) -> int:
    return int(t.numel()) * int(t.element_size())


def _any_per_tile(raster: np.ndarray, sb: int, bj: int, first: int = 1) -> int:
    """Number of (tile of `sb` samples x `bj` units, step >= `first`) with at least one spike: the iterations of a
    tile program that skips the steps where none of its units fired."""
    b, t, n = raster.shape
    pad = np.zeros((_cdiv(b, sb) * sb, t, _cdiv(n, bj) * bj), bool)
    pad[:b, :, :n] = raster
    tiles = pad[:, first:].reshape(_cdiv(b, sb), sb, t - first, _cdiv(n, bj), bj)
    return int(tiles.any(axis=(1, 4)).sum())


def _chunks(counts: np.ndarray, size: int) -> np.ndarray:
    """Spike chunks of `size` per list (row, or sample and neuron) (the iterations of a spike loop)."""
    return -(-counts // size)


# ------------------------------------------------------------------------------------------ forward kernels
def compact_rows(a, m, grid, spikes) -> Cost:
    # per row: the raster row in BN chunks, a prefix sum and a masked store of the units that fired
    rows, n = int(a["n_rows"]), int(a["n"])
    nnz = int(spikes(n).sum())
    lanes = rows * _cdiv(n, m["BN"]) * m["BN"]
    return Cost(ops32=10.0 * lanes, dram=_nbytes(a["spk_ptr"]) + nnz * a["idx_ptr"].element_size() + 4 * rows)


def sparse_current(a, m, grid, spikes) -> Cost:
    # per row and tile of BN posts: the row's count, then its pre spikes S at a time: S list entries and the W^T row
    # tiles [S, BN] (masked to the spikes), summed in float64
    rows, n_pre, n_post = int(a["n_rows"]), int(a["n_pre"]), int(a["n_post"])
    s, rb = m["S"], m["RB"]
    per_row = spikes(n_pre).reshape(-1, n_pre).sum(1)
    nnz = int(per_row.sum())
    chunks = _chunks(per_row, s)
    serial = np.zeros(_cdiv(rows, rb) * rb, np.int64)
    serial[:rows] = chunks + 1
    tiles = grid[1]
    lanes = int(chunks.sum()) * s * m["BN"] * tiles
    item = a["idx_ptr"].element_size()
    return Cost(f64=lanes, ops32=2.0 * lanes,
                dram=4 * rows + nnz * item + _nbytes(a["wt_ptr"]) + 4 * rows * n_post,
                l2=4 * nnz * n_post + nnz * (tiles - 1) * item,
                loop=int(serial.reshape(-1, rb).sum(1).max()) if rows else 0, iters=tiles * float(serial.sum()))


def lif_scan(a, m, grid, spikes) -> Cost:
    # per step and lane: two leaks and the integration (three correctly rounded divisions), threshold, code
    batch, steps, n = int(a["batch"]), int(a["steps"]), int(a["n"])
    lanes = grid[0] * m["SB"] * grid[1] * m["BN"]
    return Cost(ops32=40.0 * lanes * max(steps - 1, 0),
                dram=batch * max(steps - 1, 0) * n * 4 + batch * steps * n * 2 + batch * n * 8,
                loop=steps, iters=grid[0] * grid[1] * steps)


# ----------------------------------------------------------------------------------------- backward kernels
def spsp_readout(a, m, grid, spikes) -> Cost:
    # per step and lane: the codes at three offsets, seven power-table gathers, ten guarded float64 updates of the
    # two traces, K stored, the side-effect product with the current
    batch, steps, n = int(a["batch"]), int(a["steps"]), int(a["n"])
    its = max(steps - 1 - int(a["refractory"]), 0)
    lanes = grid[0] * m["SB"] * grid[1] * m["BN"]
    # (the power tables are a few KB, cached next to the cores: their gathers count as instructions)
    return Cost(f64=35.0 * lanes * its, ops32=37.0 * lanes * its,
                dram=batch * steps * n * (2 + 4 + 4) + batch * n * 8,
                l2=batch * steps * n * 2 * 2, loop=its, iters=grid[0] * grid[1] * its)


def output_stage(a, m, grid, spikes) -> Cost:
    batch, n = grid[0], int(a["n"])
    return Cost(f64=batch * m["BN"] * 12.0, ops32=batch * (m["BN"] + m["BT"]) * 10.0, dram=batch * n * 48)


def lateral_factor(a, m, grid, spikes) -> Cost:
    # per sample: E = K^T P over the steps as a [BN, BN] float64 tile, then the ratios and the sum over l
    batch, steps, n, bn = grid[0], int(a["steps"]), int(a["n"]), m["BN"]
    return Cost(f64=batch * (steps * bn * bn * 2.0 + 20.0 * bn * bn), ops32=batch * steps * bn * 2.0,
                dram=batch * steps * n * (4 + 2) + batch * n * 24, loop=steps, iters=batch * steps)


def dense_effect(a, m, grid, spikes) -> Cost:
    # per tile [SB samples, BJ pre] and step with a pre spike in the tile: for every tile of BI posts, delta, the
    # activity, W [BI, BJ] and K [SB, BI], then SB x BI x BJ products summed over the posts; at the end the two
    # plain parts over the posts. A program reloads its own W, delta and activity tiles (cached next to the cores:
    # instructions); the rows of K are shared by the programs of a sample (L2).
    sb, bi, bj = m["SB"], m["BI"], m["BJ"]
    steps, n_post, n_pre = int(a["steps"]), int(a["n_post"]), int(a["n_pre"])
    active = _any_per_tile(spikes(n_pre), sb, bj)
    i_tiles = _cdiv(n_post, bi)
    programs = grid[0] * grid[1]
    per_tile = 2.0 * sb * bi * bj + 4.0 * sb * bi
    k_reads = active * i_tiles * sb * bi * 4
    return Cost(f64=active * i_tiles * per_tile + programs * i_tiles * 4.0 * sb * bi * bj,
                ops32=programs * steps * sb * bj * 3.0
                + (active + 2 * programs) * i_tiles * (2 * bi * bj + 4 * sb * bi),
                dram=_nbytes(a["pre_ptr"]) + min(k_reads, _nbytes(a["k_ptr"])) + _nbytes(a["w_ptr"])
                + _nbytes(a["delta_ptr"]) * 2 + _nbytes(a["out_ptr"]),
                l2=k_reads, loop=steps, iters=programs * steps)


def pool_effect(a, m, grid, spikes) -> Cost:
    # every step: the tile's spikes, K gathered at their pool neurons
    sb, bj, steps = m["SB"], m["BJ"], int(a["steps"])
    lanes = grid[0] * sb * grid[1] * bj
    n_pre = int(a["c"]) * int(a["h"]) * int(a["wd"])
    nnz = int(spikes(n_pre).sum())
    return Cost(f64=2.0 * lanes * steps, ops32=8.0 * lanes * steps,
                dram=_nbytes(a["pre_ptr"]) + _nbytes(a["k_ptr"]) + _nbytes(a["out_ptr"]), l2=4.0 * nnz,
                loop=steps, iters=grid[0] * grid[1] * steps)


def finish_dense(a, m, grid, spikes) -> Cost:
    n = int(a["n_pre"]) * int(a["n_post"])
    parts = int(a["n_parts"])
    reg = bool(m["HAS_REG"])
    return Cost(f64=n * (parts + 2.0 + (30.0 if reg else 0.0)), ops32=4.0 * n,
                dram=n * (8 * parts + 4 + (4 if reg else 0)) + grid[0])


def adam(a, m, grid, spikes) -> Cost:
    n = int(a["n"])
    return Cost(ops32=30.0 * n, dram=28.0 * n)


def sgd(a, m, grid, spikes) -> Cost:
    n = int(a["n"])
    return Cost(ops32=5.0 * n, dram=20.0 * n)


# ------------------------------------------------------------------------------------ event-driven gradients
def column_lists(a, m, grid, spikes) -> Cost:
    # per sample and tile of BJ neurons: the raster in [BT, BJ] tiles, a prefix sum down each column, the steps
    # stored at the column's positions
    batch, steps, n = int(a["batch"]), int(a["steps"]), int(a["n"])
    nnz = int(spikes(n).sum())
    lanes = batch * grid[1] * m["BJ"] * _cdiv(steps, m["BT"]) * m["BT"]
    return Cost(ops32=12.0 * lanes, dram=_nbytes(a["spk_ptr"]) + nnz * a["list_ptr"].element_size() + 4 * batch * n)


def dense_grad(a, m, grid, spikes) -> Cost:
    # per (sample, pre neuron j) of the program's segment: the count; with spikes, the step lists S at a time and
    # the rows of K at them [S, BI] (masked to the spikes), summed in float64; the post counts and coef of the
    # sample; one partial gradient per segment
    s, bi = m["S"], m["BI"]
    batch, steps, seg = int(a["batch"]), int(a["steps"]), int(a["seg"])
    n_pre, n_post = int(a["n_pre"]), int(a["n_post"])
    tiles = grid[1]
    counts = spikes(n_pre).sum(1)  # [B, n_pre]
    chunks = _chunks(counts, s)
    active = int((counts > 0).sum())
    nnz = int(counts.sum())
    n_chunks = int(chunks.sum())
    per_segment = np.add.reduceat(chunks + 1, np.arange(0, batch, seg), axis=0) if batch else np.zeros((1, 1))
    k_bytes = 4 * batch * steps * n_post
    return Cost(f64=tiles * (n_chunks * s * bi * 2.0 + active * bi * (s + 5.0)),
                ops32=tiles * (batch * n_pre * 4.0 + n_chunks * s * (bi + 4.0)),
                dram=2 * nnz + 4 * batch * n_pre + k_bytes + 16 * batch * n_post + _nbytes(a["part_ptr"]),
                l2=max(4.0 * nnz * n_post - k_bytes, 0.0) + 16.0 * active * n_post,
                loop=int(per_segment.max()), iters=tiles * float(per_segment.sum()))


def conv_grad(a, m, grid, spikes) -> Cost:
    # per (sample, input channel, block of PB pixels): per pixel its count; with spikes, the step lists S at a time
    # and K gathered at the [c_out, k*k] posts its window reaches, summed in float64; the pixel's coef and post
    # counts (EFFECT: dcoef and W too), the partial gradient, the effect sum
    s, bo, kk, pb = m["S"], m["BO"], m["KK"], m["PB"]
    batch, steps, c_in = int(a["batch"]), int(a["steps"]), int(a["c_in"])
    area = int(a["h"]) * int(a["wd"])
    c_out, ks = int(a["c_out"]), int(a["ks"])
    n_post = c_out * int(a["ho"]) * int(a["wo"])
    counts = spikes(c_in * area).sum(1)  # [B, n_pre]
    chunks = _chunks(counts, s)
    active = int((counts > 0).sum())
    nnz = int(counts.sum())
    effect = bool(m["EFFECT"])
    tile = bo * kk
    blocks = grid[2]
    per = np.zeros((batch, c_in, blocks * pb), np.int64)
    per[:, :, :area] = (chunks + 1).reshape(batch, c_in, area)
    per_program = per.reshape(batch, c_in, blocks, pb).sum(3)
    taps = c_out * ks * ks
    return Cost(f64=int(chunks.sum()) * s * tile * 2.0 + active * tile * (5.0 + (5.0 if effect else 0.0)),
                ops32=batch * c_in * area * 4.0 + int(chunks.sum()) * s * tile * 4.0 + active * tile * 6.0,
                dram=2 * nnz + 4 * batch * c_in * area + 4 * batch * steps * n_post
                + batch * n_post * (24 if effect else 16) + _nbytes(a["part_ptr"]) + (8 * batch * c_in * area
                                                                                        if effect else 0),
                l2=4.0 * nnz * taps + active * taps * (16.0 + (12.0 if effect else 0.0)),
                loop=int(per_program.max()) if per_program.size else 0, iters=float(per_program.sum()), threads=256)


#: Kernel name -> cost function `(arguments by name, constexprs, grid, spikes) -> Cost`.
COSTS: dict[str, Callable] = {
    "compact_rows_kernel": compact_rows, "sparse_current_kernel": sparse_current, "lif_scan_kernel": lif_scan,
    "spsp_readout_kernel": spsp_readout, "output_stage_kernel": output_stage,
    "lateral_factor_kernel": lateral_factor, "dense_effect_kernel": dense_effect, "pool_effect_kernel": pool_effect,
    "finish_dense_kernel": finish_dense, "adam_kernel": adam, "sgd_kernel": sgd,
    "column_lists_kernel": column_lists, "dense_grad_kernel": dense_grad, "conv_grad_kernel": conv_grad,
}


def launch_cost(kernel, grid: tuple[int, ...], args: tuple, meta: dict,
                spikes: Callable[[int], np.ndarray]) -> Cost:
    """The cost of one launch `kernel[grid](*args, **meta)` (module docstring)."""
    fn = kernel.fn
    names = list(inspect.signature(fn).parameters)
    bound = dict(zip(names, args, strict=False))
    grid = tuple(int(g) for g in grid) + (1,) * (3 - len(grid))
    return COSTS[fn.__name__](bound, meta, grid, spikes)
