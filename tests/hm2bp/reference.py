"""Plain, step-by-step re-statements of the reference (docs/algorithm.md §1) shared by the hm2bp tests."""

import math

import numpy as np

F32 = np.float32


def plain_lif(cur: np.ndarray, thr: np.float32, tau_m: float, tau_s: float, t_r: int, w0: float) -> np.ndarray:
    """algorithm.md §1 step by step for one sample: float32 current [T, n] -> spikes uint8 [T, n]; w0 = lateral
    inhibition."""
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
    """algorithm.md §1 for one sample: pre [T, n_pre] 0/1, w [n_post, n_pre] -> spikes [T, n_post]; the current of
    each step is
    the exact sum rounded once to float32, the threshold vth - 1e-6."""
    cur = (pre.astype(np.float64) @ w.astype(np.float64).T).astype(np.float32)
    thr = np.float32(float(np.float32(vth)) - 1e-6)
    return plain_lif(cur, thr, tau_m, tau_s, t_ref_steps, w0)


def e_pair(post: list, pre: list, t_r: int = 2, tau_m: float = 64.0, tau_s: float = 8.0) -> float:
    """e_{i|j} of algorithm.md §3.1, per post spike and per pre spike, including window, delay and fallbacks."""
    if not pre:
        return 0.0
    if not post:
        return 0.1
    kappa = 1.0 / (1.0 - tau_s / tau_m)
    total = 0.0
    for k, tk in enumerate(post):
        rk = 1 if k == 0 else post[k - 1] + t_r
        sk = tk - rk
        lb = max(1, int(tk - 4 * tau_m))
        for tau in pre:
            if lb <= tau < tk and tau + t_r <= tk:
                u = tk - (tau + t_r)
                m = min(sk, u)
                total += math.exp(-max(u - sk, 0) / tau_s) * kappa * (math.exp(-m / tau_m) - math.exp(-m / tau_s))
    return total
