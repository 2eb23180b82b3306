"""Triton kernels of the `triton` kernel set (CUDA; CPU tensors under `TRITON_INTERPRET=1`).

One module per operation. Every kernel keeps the float32 operation order of the numba kernels (correctly rounded
division and square root, no fused multiply-add: `launch.launch` compiles with `enable_fp_fusion=False`), so spikes
are bit-equal to them. Scalar float arguments of a Triton kernel are float32; float64 constants travel in tensors.

Specialisation: a compiled Triton kernel is specialised on its int arguments (one equal to 1 becomes a constant,
one divisible by 16 is compiled as such) and on the 16-byte alignment of its pointers; the interpreter specialises
nothing. Int arguments that only bound loops and masks or count something (the batch, the step count, the rows of
a step, the refractory period, the spike-code cap, the S-PSP window, the label train's length) are declared
`do_not_specialize`: knowing them buys no faster code, and one compiled variant then serves every batch (the last
batch of an epoch compiles nothing new). Layer sizes and strides stay specialised (aligned, vectorised loads), and
the kernels are written so that any of them may be 1 (no method call on an int argument: `tl.cast(n, ...)`).
`python -m tests.hm2bp.triton_cases` compiles every variant a training step launches for sm_80, sm_89 and sm_90
without a GPU (docs/gpu.md, "The compile check").

Triton decides when a kernel is defined (for its own helpers: when `triton.language` is imported) whether it is
compiled or interpreted. Importing this package on a machine without CUDA therefore switches on the interpreter
(`TRITON_INTERPRET=1`) unless the variable is set, so that the kernels run (slowly) on CPU tensors; if Triton was
imported before that, in compiled mode, the kernels cannot run on CPU and `interpreting()` says so.
"""

from __future__ import annotations

import os


def _no_cuda() -> bool:
    import torch

    return not torch.cuda.is_available()


if "TRITON_INTERPRET" not in os.environ and _no_cuda():
    os.environ["TRITON_INTERPRET"] = "1"


def interpreting() -> bool:
    """True when the kernels run under Triton's interpreter (on CPU tensors). Raises RuntimeError when the
    interpreter was asked for only after `triton.language` had been imported in compiled mode."""
    if os.environ.get("TRITON_INTERPRET", "0") != "1":
        return False
    import triton.language as tl

    if not type(tl.zeros).__name__.startswith("Interpreted"):
        raise RuntimeError("Triton was imported before TRITON_INTERPRET=1 was set, so its kernels cannot run on CPU "
                           "tensors: set TRITON_INTERPRET=1 in the environment before starting Python")
    import dataclasses

    from triton.runtime import interpreter

    # The interpreter checks every int32 operation for overflow (half of its run time); compiled kernels do that
    # only in debug mode. Index arithmetic that can exceed int32 is done in int64 in these kernels.
    builder = interpreter.interpreter_builder
    if builder.options.sanitize_overflow:
        builder.options = dataclasses.replace(builder.options, sanitize_overflow=False)
    return True
