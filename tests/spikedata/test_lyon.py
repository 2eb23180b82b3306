"""lyon_passive_ear against the `lyon` package (a port of Slaney's AuditoryToolbox) on real FSDD speech."""

import numpy as np
import pytest

from spikedata.encoders.lyon import design_lyon_filters, lyon_passive_ear
from spikedata.io.audio import read_audio, resample

lyon = pytest.importorskip("lyon", reason="test-only reference package `lyon` is not installed")
from lyon.calc import LyonCalc  # noqa: E402
from lyon.utils import design_lyon_filters as ref_design  # noqa: E402

RATE = 12500


@pytest.fixture(scope="module")
def speech(shared_data):
    """Two real recordings (8 kHz) resampled to 12.5 kHz, trimmed to keep the reference's Python loop short."""
    out = []
    for name in ("0_george_0.wav", "7_theo_12.wav"):
        audio, rate = read_audio(shared_data / "speech" / "fsdd" / name)
        assert rate == 8000
        out.append(resample(audio, rate, RATE)[:4000])
    return out


def test_filter_design_matches_toolbox():
    ours, cf = design_lyon_filters(RATE)
    ref, ref_cf = ref_design(RATE, 8, 8 / 32)
    assert ours.shape == (80, 5)  # pre-emphasis + high-pass + 78 ear stages
    np.testing.assert_allclose(ours, ref.T, rtol=0, atol=1e-12)
    np.testing.assert_allclose(cf, ref_cf, rtol=1e-12)
    assert np.all(np.diff(cf) < 0)  # highest frequency first


@pytest.mark.parametrize("decimation", [1, 20, 200])
@pytest.mark.parametrize("differ,agc", [(True, True), (False, True), (True, False)])
def test_matches_lyon_package(speech, decimation, differ, agc):
    calc = LyonCalc()
    for audio in speech:
        ref = calc.lyon_passive_ear(audio, RATE, decimation, differ=differ, agc=agc)
        ours = lyon_passive_ear(audio, RATE, decimation, differ=differ, agc=agc)
        assert ours.shape == ref.shape == (len(audio) // decimation, 78)
        assert np.abs(ours - ref).max() <= 1e-3 * np.abs(ref).max()
        assert ref.max() > 0


def test_other_parameters_match(speech):
    audio = speech[1][:2000]
    ref = LyonCalc().lyon_passive_ear(audio, RATE, 10, ear_q=6.0, step_factor=0.4, tau_factor=2)
    ours = lyon_passive_ear(audio, RATE, 10, ear_q=6.0, step_factor=0.4, tau_factor=2)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() <= 1e-3 * np.abs(ref).max()


def test_ti46_rate_gives_78_channels_and_16ms_frames():
    audio = np.zeros(12500)
    out = lyon_passive_ear(audio, RATE, 200)
    assert out.shape == (62, 78)  # 12500 // 200 frames of 16 ms
    assert not out.any()  # silence in, silence out


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="mono"):
        lyon_passive_ear(np.zeros((10, 2)), RATE)
    with pytest.raises(ValueError, match="decimation"):
        lyon_passive_ear(np.zeros(10), RATE, 0)
    with pytest.raises(ValueError, match="NaN"):
        lyon_passive_ear(np.array([0.0, np.nan]), RATE)
