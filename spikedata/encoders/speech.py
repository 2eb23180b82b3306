"""The speech front end of the paper: audio -> resampled to 12.5 kHz -> Lyon's passive ear (78 channels, one frame
per 16 ms with decimation 200) -> BSA spikes (one frame = `hold` steps).

:class:`SpeechFrontEnd` holds every parameter; its defaults are the TI46 front end of HM2-BP. Any speech corpus
(TI46, FSDD, ...) is encoded with it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from spikedata.encoders.bsa import bsa_encode
from spikedata.encoders.lyon import design_lyon_filters, lyon_passive_ear
from spikedata.io.audio import resample

__all__ = ["SpeechFrontEnd"]


def _param(default: Any, doc: str, minimum: float | None = None) -> Any:
    """A front-end parameter: its default, what it means (the CLI's help) and its smallest allowed value."""
    return field(default=default, metadata={"doc": doc, "min": minimum})


@dataclass(frozen=True)
class SpeechFrontEnd:
    """Audio -> cochleagram -> BSA spikes, with every parameter (defaults: the paper's TI46 front end).

    `sample_rate` Hz is the model's rate (audio is resampled to it with librosa `res_type`); Lyon parameters as
    :func:`spikedata.lyon_passive_ear`; BSA parameters as :func:`spikedata.bsa_encode`; `steps` per sample.
    Each field's `metadata` holds its description (`doc`) and smallest allowed value (`min`): the one definition
    the command line's options are built from.
    """

    sample_rate: int = _param(12500, "Model sample rate in Hz (audio is resampled to it).", 1)
    decimation: int = _param(200, "Lyon decimation: audio samples per cochleagram frame.", 1)
    ear_q: float = _param(8.0, "Lyon ear Q (smaller = broader filters).", 0.51)
    step_factor: float | None = _param(None, "Lyon channel spacing; default ear_q / 32.", 0.0)
    differ: bool = _param(True, "Lyon channel difference stage.")
    agc: bool = _param(True, "Lyon automatic gain control.")
    tau_factor: float = _param(3.0, "Lyon decimation low-pass time constant, in frames.", 0.0)
    steps: int = _param(1000, "BSA steps per sample (one step = decimation / sample_rate / hold s).", 1)
    hold: int = _param(10, "BSA steps per cochleagram frame.", 1)
    scale: float = _param(2000.0, "BSA input scale.")
    taps: int = _param(24, "BSA Gaussian FIR kernel length.", 1)
    threshold: float = _param(0.6, "BSA threshold.")
    res_type: str = _param("soxr_hq", "librosa resampling method.")
    n_channels: int = field(init=False)

    def __post_init__(self) -> None:
        for f in fields(self):
            low = f.metadata.get("min") if f.init else None
            value = getattr(self, f.name) if low is not None else None
            if value is not None and value < low:
                raise ValueError(f"{f.name} must be >= {low:g}, got {value}")
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
