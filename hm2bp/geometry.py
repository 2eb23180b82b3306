"""Shapes of spatial layers (`docs/algorithm.md` §1): valid convolutions with stride 1 and non-overlapping pooling.

A layer's neurons `[C, H, W]` are flattened channel-major, `index = c*H*W + x*W + y`. Pure shape arithmetic with
the checks a config needs, shared by the model (building layers), the rules and the kernel sets (reshaping).
"""

from __future__ import annotations

import math

Shape3 = tuple[int, int, int]


def conv_output_shape(in_shape: Shape3, channels: int, kernel: int) -> Shape3:
    """`(c_out, H - k + 1, W - k + 1)` of a valid convolution; ValueError if the kernel does not fit."""
    c, h, w = (int(v) for v in in_shape)
    if kernel > h or kernel > w:
        raise ValueError(f"conv kernel {kernel} does not fit the input {c}x{h}x{w}")
    return int(channels), h - kernel + 1, w - kernel + 1


def pool_output_shape(in_shape: Shape3, window: int) -> Shape3:
    """`(C, H / w, W / w)` of non-overlapping pooling; ValueError unless `w` divides H and W."""
    c, h, w = (int(v) for v in in_shape)
    if h % window or w % window:
        raise ValueError(f"pool window {window} does not divide the input {c}x{h}x{w} (non-overlapping windows)")
    return c, h // window, w // window


def as_input_shape(input_shape: tuple | None, n_inputs: int) -> Shape3:
    """Normalise a store's `unit_shape` to `(C, H, W)`: `(28, 28) -> (1, 28, 28)`; checks `prod == n_inputs`."""
    if input_shape is None:
        raise ValueError("a network whose first layer is conv/pool needs input_shape (the store's unit_shape)")
    shape = tuple(int(v) for v in input_shape)
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3 or math.prod(shape) != n_inputs:
        raise ValueError(f"input_shape {tuple(input_shape)} is not (H, W) or (C, H, W) with {n_inputs} units")
    return shape  # type: ignore[return-value]
