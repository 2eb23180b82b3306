"""Lyon's passive ear model (Slaney's AuditoryToolbox `LyonPassiveEar` semantics), as one numba kernel.

The model, per audio sample (all arithmetic float64):

1. **Ear filter cascade.** A pre-emphasis stage, a high-pass stage, then `n` second-order sections whose pole
   frequencies fall from just below Nyquist down to where the pole Q would drop under 1/2, spaced by
   `step_factor` equivalent bandwidths (EB = sqrt(cf^2 + 1000^2) / ear_q Hz). Each section's numerator has a
   sharper resonance (Q = 5 cf_zero / EB) slightly above its pole (cf + 1.5 step_factor EB); its DC gain is the
   ratio of neighbouring centre frequencies. Every stage's output feeds the next stage and is also a channel.
2. **Half-wave rectification** of every stage output.
3. **Automatic gain control**: four coupled stages (time constants 0.64, 0.16, 0.04, 0.01 s; targets 0.0032,
   0.0016, 0.0008, 0.0004). Each stage scales its input by (1 - state) and updates the state from the output and
   the previous states of the channel and its two neighbours (edges repeat the end channel), capped at 0.9.
4. **Channel difference** (optional): channel c minus channel c + 1 in cascade order, rectified again
   (the first channel passes unchanged); this sharpens the frequency response.
5. **Decimation** (when `decimation > 1`): a two-pole low-pass per channel with time constant
   `tau_factor * decimation / sample_rate`, unit DC gain; every `decimation`-th sample is kept (the last of each
   block), and trailing samples that do not fill a block are dropped.

The first two cascade stages (pre-emphasis, high-pass) take part in the AGC and the difference but are not
returned: at 12.5 kHz with the defaults the output has 78 channels, highest frequency first.
"""

from __future__ import annotations

from functools import lru_cache

import numba
import numpy as np

__all__ = ["lyon_passive_ear", "design_lyon_filters"]

# Constants of the ear model (Lyon / Slaney).
_EB_HZ = 1000.0  # bandwidth floor of the ear's filters
_ZERO_OFFSET = 1.5  # zero above its pole, in units of step_factor * bandwidth
_SHARPNESS = 5.0  # Q of the zero relative to the pole's
_PREEMPH_CORNER_HZ = 300.0
_AGC_TAUS_S = (0.64, 0.16, 0.04, 0.01)
_AGC_TARGETS = (0.0032, 0.0016, 0.0008, 0.0004)
_AGC_STATE_LIMIT = 0.9
_N_FRONT = 2  # pre-emphasis and high-pass stages, not returned


def _epsilon(tau_s: float, sample_rate: float) -> float:
    """Per-sample update fraction of a one-pole smoother with time constant `tau_s` seconds."""
    return 1.0 - np.exp(-1.0 / (tau_s * sample_rate))


def _resonator(freq_hz: np.ndarray, q: np.ndarray, sample_rate: float) -> np.ndarray:
    """Second-order polynomial [1, c1, c2] per row whose roots are a resonance at `freq_hz` with quality `q`."""
    f = np.atleast_1d(np.asarray(freq_hz, dtype=np.float64)) / sample_rate
    q = np.atleast_1d(np.asarray(q, dtype=np.float64))
    radius = np.exp(-np.pi * f / q)
    angle = 2.0 * np.pi * f * np.sqrt(1.0 - 1.0 / (4.0 * q * q))
    return np.stack([np.ones_like(radius), -2.0 * radius * np.cos(angle), radius * radius], axis=1)


def _scale_to_gain(section: np.ndarray, gain: float, freq_hz: float, sample_rate: float) -> np.ndarray:
    """Scale the numerator of section [b0, b1, b2, a1, a2] so that |H| = `gain` at `freq_hz`."""
    z1 = np.exp(-2j * np.pi * freq_hz / sample_rate)  # z^-1 on the unit circle
    num = section[0] + section[1] * z1 + section[2] * z1 * z1
    den = 1.0 + section[3] * z1 + section[4] * z1 * z1
    out = section.astype(np.float64).copy()
    out[:3] *= gain / abs(num / den)
    return out


@lru_cache(maxsize=32)
def _design(sample_rate: float, ear_q: float, step_factor: float) -> tuple[np.ndarray, np.ndarray]:
    eb = _EB_HZ
    nyq = sample_rate / 2.0
    # Leave room above the first cascade stage for its zero.
    top_bw = np.sqrt(nyq * nyq + eb * eb) / ear_q * step_factor
    top = nyq - top_bw * _ZERO_OFFSET + top_bw
    # Lowest pole: where the pole Q = cf / EB(cf) would fall to 1/2.
    low = eb / np.sqrt(4.0 * ear_q * ear_q - 1.0)
    # Channel index is the integral of 1/EB over frequency: asinh-like spacing, closed form.
    span = np.log(top + np.sqrt(top * top + eb * eb)) - np.log(low + np.sqrt(low * low + eb * eb))
    n = int(np.floor(ear_q * span / step_factor))
    if n < 2:
        raise ValueError(
            f"Lyon filter design gives {n} channels at sample_rate={sample_rate}, ear_q={ear_q}, "
            f"step_factor={step_factor}; need at least 2"
        )
    g = np.exp(np.arange(1, n + 1) * step_factor / ear_q)
    a = top + np.sqrt(eb * eb + top * top)
    centre = (a / g - eb * eb * g / a) / 2.0
    bandwidth = np.sqrt(centre * centre + eb * eb) / ear_q
    zero_cf = centre + bandwidth * step_factor * _ZERO_OFFSET
    zero_q = _SHARPNESS * zero_cf / bandwidth
    pole_q = centre / bandwidth
    zeros = _resonator(zero_cf, zero_q, sample_rate)
    poles = _resonator(centre, pole_q, sample_rate)
    sections = np.concatenate([zeros, poles[:, 1:]], axis=1)
    dc_gain = np.empty(n)
    dc_gain[1:] = centre[:-1] / centre[1:]
    dc_gain[0] = dc_gain[1]
    sections = np.stack([_scale_to_gain(sections[i], dc_gain[i], 0.0, sample_rate) for i in range(n)])
    preemph = np.array([0.0, 1.0, -np.exp(-2.0 * np.pi * _PREEMPH_CORNER_HZ / sample_rate), 0.0, 0.0])
    preemph = _scale_to_gain(preemph, 1.0, sample_rate / 4.0, sample_rate)
    top_poles = _resonator(top, pole_q[0], sample_rate)[0]
    highpass = _scale_to_gain(np.array([1.0, 0.0, -1.0, top_poles[1], top_poles[2]]), 1.0, sample_rate / 4.0,
                              sample_rate)
    all_sections = np.concatenate([preemph[None], highpass[None], sections])
    all_sections.setflags(write=False)
    centre.setflags(write=False)
    return all_sections, centre


def design_lyon_filters(
    sample_rate: float, ear_q: float = 8.0, step_factor: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The ear's filter cascade: sections float64 [n + 2, 5] as rows [b0, b1, b2, a1, a2] (pre-emphasis,
    high-pass, then the `n` ear stages) and the `n` ear stages' centre frequencies in Hz, highest first."""
    if step_factor is None:
        step_factor = ear_q / 32.0
    if sample_rate <= 0 or ear_q <= 0.5 or step_factor <= 0:
        raise ValueError(
            f"need sample_rate > 0, ear_q > 0.5, step_factor > 0; got {sample_rate}, {ear_q}, {step_factor}"
        )
    return _design(float(sample_rate), float(ear_q), float(step_factor))


@numba.njit(cache=True)
def _lyon_kernel(audio, sections, agc_eps, agc_targets, dec_b, dec_a1, dec_a2, decimation, differ, use_agc,
                 n_skip):  # pragma: no cover - numba
    n_ch = sections.shape[0]
    n_frames = audio.shape[0] // decimation
    out = np.empty((n_frames, n_ch - n_skip))
    s1 = np.zeros(n_ch)  # cascade states (transposed direct form II)
    s2 = np.zeros(n_ch)
    n_stages = agc_eps.shape[0]
    agc = np.zeros((n_stages, n_ch))
    sig = np.empty(n_ch)
    dif = np.empty(n_ch)
    d1 = np.zeros(n_ch)  # decimation filter states
    d2 = np.zeros(n_ch)
    for frame in range(n_frames):
        for k in range(decimation):
            x = audio[frame * decimation + k]
            for c in range(n_ch):
                y = sections[c, 0] * x + s1[c]
                s1[c] = sections[c, 1] * x - sections[c, 3] * y + s2[c]
                s2[c] = sections[c, 2] * x - sections[c, 4] * y
                sig[c] = y if y > 0.0 else 0.0
                x = y
            if k == 0:
                # The toolbox zeroes the front stages' first sample of every block ("test hack").
                for c in range(n_skip):
                    sig[c] = 0.0
            if use_agc:
                for st in range(n_stages):
                    eps_over_target = agc_eps[st] / agc_targets[st]
                    third = (1.0 - agc_eps[st]) / 3.0
                    state = agc[st]
                    # Every channel's update reads its neighbours' previous states: keep the left one rolling.
                    left = state[0]
                    for c in range(n_ch):
                        here = state[c]
                        right = state[c + 1] if c < n_ch - 1 else here
                        v = sig[c] * (1.0 - here)  # sig >= 0 and state <= _AGC_STATE_LIMIT < 1, so v >= 0
                        sig[c] = v
                        f = v * eps_over_target + third * (left + here + right)
                        state[c] = f if f < _AGC_STATE_LIMIT else _AGC_STATE_LIMIT
                        left = here
            if differ:
                dif[0] = sig[0]
                for c in range(1, n_ch):
                    v = sig[c - 1] - sig[c]
                    dif[c] = v if v > 0.0 else 0.0
                for c in range(n_ch):
                    sig[c] = dif[c]
            if decimation > 1:
                for c in range(n_ch):
                    y = d1[c]
                    d1[c] = -dec_a1 * y + d2[c]
                    d2[c] = dec_b * sig[c] - dec_a2 * y
                    sig[c] = y
        for c in range(n_skip, n_ch):
            out[frame, c - n_skip] = sig[c]
    return out


def lyon_passive_ear(
    audio: np.ndarray,
    sample_rate: float,
    decimation: int = 1,
    ear_q: float = 8.0,
    step_factor: float | None = None,
    differ: bool = True,
    agc: bool = True,
    tau_factor: float = 3,
) -> np.ndarray:
    """Cochleagram of mono `audio` (float, amplitude as read, e.g. in [-1, 1)) sampled at `sample_rate` Hz.

    Returns float64 [frames, channels] with frames = len(audio) // decimation (one frame per
    decimation / sample_rate seconds) and channels = the ear stages (78 at 12.5 kHz with ear_q 8, step_factor
    ear_q / 32), highest centre frequency first. `step_factor` defaults to ear_q / 32; `tau_factor` sets the
    decimation low-pass time constant in output frames. See the module docstring for the model.
    """
    x = np.asarray(audio)
    if x.ndim != 1:
        raise ValueError(f"audio must be mono, shape [samples]; got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        raise ValueError(f"audio must be real numbers; got dtype {x.dtype}")
    if not np.all(np.isfinite(x)):
        raise ValueError("audio contains NaN or infinite samples")
    decimation = int(decimation)
    if decimation < 1:
        raise ValueError(f"decimation must be >= 1, got {decimation}")
    if tau_factor <= 0:
        raise ValueError(f"tau_factor must be > 0, got {tau_factor}")
    sections, _ = design_lyon_filters(sample_rate, ear_q, step_factor)
    agc_eps = np.array([_epsilon(t, sample_rate) for t in _AGC_TAUS_S])
    agc_targets = np.array(_AGC_TARGETS)
    # Decimation low-pass: double real pole at 1 - eps, numerator z^-2, unit gain at DC.
    dec_eps = _epsilon(decimation / sample_rate * tau_factor, sample_rate)
    pole = 1.0 - dec_eps
    dec_a1, dec_a2 = -2.0 * pole, pole * pole
    dec_b = 1.0 + dec_a1 + dec_a2
    return _lyon_kernel(
        np.ascontiguousarray(x, dtype=np.float64),
        np.ascontiguousarray(sections),
        agc_eps,
        agc_targets,
        dec_b,
        dec_a1,
        dec_a2,
        decimation,
        bool(differ),
        bool(agc),
        _N_FRONT,
    )
