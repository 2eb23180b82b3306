"""The speech front end of the paper: audio -> resampled to 12.5 kHz -> Lyon's passive ear (78 channels, one frame
per 16 ms with decimation 200) -> BSA spikes (one frame = `hold` steps).

:class:`SpeechFrontEnd` holds every parameter; its defaults are the TI46 front end of HM2-BP. Any speech corpus
(TI46, FSDD, ...) is encoded with it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from spikedata.encoders.bsa import bsa_encode
from spikedata.encoders.lyon import design_lyon_filters, lyon_passive_ear
from spikedata.io.audio import resample

__all__ = ["SpeechFrontEnd"]


@dataclass(frozen=True)
class SpeechFrontEnd:
    """Audio -> cochleagram -> BSA spikes, with every parameter (defaults: the paper's TI46 front end).

    `sample_rate` Hz is the model's rate (audio is resampled to it with librosa `res_type`); Lyon parameters as
    :func:`spikedata.lyon_passive_ear`; BSA parameters as :func:`spikedata.bsa_encode`; `steps` per sample.
    """

    sample_rate: int = 12500
    decimation: int = 200
    ear_q: float = 8.0
    step_factor: float | None = None
    differ: bool = True
    agc: bool = True
    tau_factor: float = 3.0
    steps: int = 1000
    hold: int = 10
    scale: float = 2000.0
    taps: int = 24
    threshold: float = 0.6
    res_type: str = "soxr_hq"
    n_channels: int = field(init=False)

    def __post_init__(self) -> None:
        for name in ("sample_rate", "decimation", "steps", "hold", "taps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        step_factor = self.ear_q / 32.0 if self.step_factor is None else self.step_factor
        object.__setattr__(self, "step_factor", float(step_factor))
        sections, _ = design_lyon_filters(self.sample_rate, self.ear_q, self.step_factor)
        object.__setattr__(self, "n_channels", sections.shape[0] - 2)

    @property
    def dt_us(self) -> float:
        """One BSA step in µs: a Lyon frame (decimation / sample_rate s) spans `hold` steps."""
        return self.decimation / self.sample_rate / self.hold * 1e6

    def params(self) -> dict[str, Any]:
        """Every parameter, for the store's `encoder.params`."""
        return {k: v for k, v in asdict(self).items() if k != "n_channels"} | {"n_channels": self.n_channels}

    def cochleagram(self, audio: np.ndarray, rate: int) -> np.ndarray:
        """float64 [frames, channels] of mono `audio` sampled at `rate` Hz."""
        x = resample(audio, rate, self.sample_rate, self.res_type)
        return lyon_passive_ear(x, self.sample_rate, self.decimation, self.ear_q, self.step_factor, self.differ,
                                self.agc, self.tau_factor)

    def encode(self, audio: np.ndarray, rate: int) -> tuple[np.ndarray, int]:
        """Spikes bool [steps, channels] and the number of Lyon frames of mono `audio` at `rate` Hz."""
        coch = self.cochleagram(audio, rate)
        spikes = bsa_encode(coch.T, self.steps, self.hold, self.scale, self.taps, self.threshold)
        return spikes, coch.shape[0]
