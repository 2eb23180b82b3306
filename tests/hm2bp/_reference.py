"""Plain, step-by-step re-statements of the reference (hm2bp-reference.md §1) shared by the hm2bp tests."""

import numpy as np

F32 = np.float32


def plain_lif(cur: np.ndarray, thr: np.float32, tau_m: float, tau_s: float, t_r: int, w0: float) -> np.ndarray:
    """§1 step by step for one sample: float32 current [T, n] -> spikes uint8 [T, n]; w0 = lateral inhibition."""
    steps, n = cur.shape
    v, ep = np.zeros(n, F32), np.zeros(n, F32)
    t_ref = np.zeros(n, np.int64)
    out = np.zeros((steps, n), np.uint8)
    for t in range(steps):
        v = v - v / F32(tau_m)
        ep = ep - ep / F32(tau_s)
        if t == 0:
            continue
        r = cur[t - 1].copy()
        if w0:
            fired = out[t - 1].astype(np.int64)
            r = r + F32(-w0) * (fired.sum() - fired).astype(F32)
        ep = ep + r
        v = v + ep / F32(tau_s)
        for i in range(n):
            if t_ref[i] > 0:
                v[i] = 0
                t_ref[i] -= 1
            if v[i] > thr:
                out[t, i] = 1
                t_ref[i] = t_r
                v[i] = 0
    return out


def plain_forward_lif(pre: np.ndarray, w: np.ndarray, vth: float, tau_m: float, tau_s: float, t_ref_steps: int,
                      w0: float) -> np.ndarray:
    """§1 for one sample: pre [T, n_pre] 0/1, w [n_post, n_pre] -> spikes [T, n_post]; the current of each step is
    the exact sum rounded once to float32, the threshold vth - 1e-6."""
    cur = (pre.astype(np.float64) @ w.astype(np.float64).T).astype(np.float32)
    thr = np.float32(float(np.float32(vth)) - 1e-6)
    return plain_lif(cur, thr, tau_m, tau_s, t_ref_steps, w0)
