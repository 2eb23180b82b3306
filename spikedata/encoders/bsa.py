"""Ben's Spiker Algorithm (BSA): analog channels -> spike trains, as in the HM2-BP reference (algorithm.md §2.3).

Per channel (float64 arithmetic, as the reference's C++):

* signal: every analog frame held for `hold` steps and multiplied by `scale`, then `taps` zeros appended;
* FIR kernel: `taps` values k[j] = exp(-(j - taps/2)^2 / 25), normalised to sum 1;
* for i = 0 .. frames*hold - 1: e1 = sum_j |sig[i+j] - k[j]|, e2 = sum_j |sig[i+j]|; if e1 < e2 - threshold,
  a spike at step i + 1 (kept when < steps) and the kernel is subtracted from sig[i : i + taps].

Spikes convolved with the kernel therefore approximate the scaled, held signal.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["bsa_encode", "bsa_kernel"]

_WIDTH = 25.0  # 2 sigma^2 of the Gaussian kernel, in steps^2 (fixed by the reference)


def bsa_kernel(taps: int = 24) -> np.ndarray:
    """The BSA FIR kernel float64 [taps]: exp(-(j - taps/2)^2 / 25), normalised to sum 1."""
    if taps < 1:
        raise ValueError(f"taps must be >= 1, got {taps}")
    j = np.arange(taps, dtype=np.float64)
    k = np.exp(-(j - taps / 2.0) * (j - taps / 2.0) / _WIDTH)
    # Sum sequentially, as the reference does, so the normalised taps are bit-identical.
    total = 0.0
    for v in k:
        total += v
    return k / total


@numba.njit(cache=True)
def _bsa_kernel(analog, steps, hold, scale, kernel, threshold):  # pragma: no cover - numba
    n_ch, n_frames = analog.shape
    taps = kernel.shape[0]
    n_sig = n_frames * hold
    out = np.zeros((steps, n_ch), dtype=np.bool_)
    # Positions i >= steps - 1 would spike at i + 1 >= steps and cannot change an earlier decision.
    n_loop = min(n_sig, steps - 1)
    # Time-major (sig[t * n_ch + c]), so that the channels, which are independent, sit side by side: the sums of all
    # channels advance together (vectorised), each channel's still in the reference's order j = 0 .. taps - 1.
    sig = np.zeros((n_sig + taps) * n_ch)
    for f in range(n_frames):
        for h in range(hold):
            row = (f * hold + h) * n_ch
            for c in range(n_ch):
                sig[row + c] = np.float64(analog[c, f]) * scale
    e1 = np.empty(n_ch)
    e2 = np.empty(n_ch)
    for i in range(n_loop):
        e1[:] = 0.0
        e2[:] = 0.0
        for j in range(taps):
            kj = kernel[j]
            row = sig[(i + j) * n_ch : (i + j + 1) * n_ch]
            for c in range(n_ch):
                s = row[c]
                e1[c] += abs(s - kj)
                e2[c] += abs(s)
        for c in range(n_ch):
            if e1[c] < e2[c] - threshold:
                out[i + 1, c] = True
                for j in range(taps):
                    sig[(i + j) * n_ch + c] -= kernel[j]
    return out


def bsa_encode(
    analog: np.ndarray,
    steps: int,
    hold: int = 10,
    scale: float = 2000.0,
    taps: int = 24,
    threshold: float = 0.6,
) -> np.ndarray:
    """BSA spike trains bool [steps, channels] from `analog` float [channels, frames].

    One analog frame spans `hold` steps; spikes land at steps 1 .. min(frames * hold, steps - 1) (step 0 never
    spikes). Defaults are the reference's (algorithm.md §2.3): hold 10, scale 2000, 24-tap Gaussian kernel, threshold
    0.6.
    float32 input is widened exactly, so the reference's float-read cochleagrams give its rasters bit for bit.
    """
    a = np.asarray(analog)
    if a.ndim != 2:
        raise ValueError(f"analog must be [channels, frames]; got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.floating) and not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"analog must be real numbers; got dtype {a.dtype}")
    if not np.all(np.isfinite(a)):
        raise ValueError("analog contains NaN or infinite values")
    steps, hold, taps = int(steps), int(hold), int(taps)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if hold < 1:
        raise ValueError(f"hold must be >= 1, got {hold}")
    if a.dtype != np.float32:
        a = a.astype(np.float64)
    return _bsa_kernel(np.ascontiguousarray(a), steps, hold, float(scale), bsa_kernel(taps), float(threshold))
