"""Audio readers: NIST SPHERE (headers written here, both byte orders, damaged files), WAV/FLAC via soundfile."""

import numpy as np
import pytest
import soundfile

from spikedata.io.audio import (
    AudioError,
    parse_sphere_header,
    probe_audio,
    read_audio,
    read_audio_with_info,
    resample,
)
from tests.writers import sphere_bytes

SAMPLES = np.array([0, 1, -1, 32767, -32768, 1234, -4321, 256], dtype=np.int16)


@pytest.mark.parametrize("byte_format", ["01", "10"])
def test_sphere_both_byte_orders(tmp_path, byte_format):
    path = tmp_path / "0af1set0.wav"  # SPHERE despite the suffix, as in TI46
    path.write_bytes(sphere_bytes(SAMPLES, byte_format=byte_format))
    audio, rate = read_audio(path)
    assert rate == 12500 and audio.dtype == np.float64
    np.testing.assert_array_equal(audio, SAMPLES / 32768.0)


def test_sphere_header_fields():
    head = parse_sphere_header(sphere_bytes(SAMPLES, byte_format="10", extra="speaker_id -s2 f1"))
    assert (head.header_bytes, head.sample_count, head.sample_rate, head.channel_count) == (1024, 8, 12500, 1)
    assert head.byte_format == "10" and head.coding == "pcm" and head.fields["speaker_id"] == "f1"


def test_sphere_stereo_and_32_bit(tmp_path):
    stereo = np.array([[1, -1], [2, -2], [3, -3]], dtype=np.int32)
    data = bytearray(sphere_bytes(stereo.ravel(), n_bytes=4, byte_format="3210"))
    data[:1024] = data[:1024].replace(b"channel_count -i 1", b"channel_count -i 2")
    data[:1024] = data[:1024].replace(b"sample_count -i 6", b"sample_count -i 3")
    path = tmp_path / "s.sph"
    path.write_bytes(bytes(data))
    audio, _ = read_audio(path, mono=False)
    np.testing.assert_array_equal(audio, stereo / 2.0**31)
    mono, _ = read_audio(path)
    np.testing.assert_array_equal(mono, np.zeros(3))


def test_truncated_data_is_an_error(tmp_path):
    path = tmp_path / "cut.wav"
    path.write_bytes(sphere_bytes(SAMPLES)[:-3])
    with pytest.raises(AudioError, match=r"cut\.wav: truncated SPHERE data.*16 bytes, file has 13"):
        read_audio(path)


def test_truncated_header_is_an_error(tmp_path):
    path = tmp_path / "head.wav"
    path.write_bytes(sphere_bytes(SAMPLES)[:500])
    with pytest.raises(AudioError, match=r"head\.wav: truncated SPHERE header \(500 of 1024 bytes\)"):
        read_audio(path)


def test_shorten_is_refused_with_a_clear_message(tmp_path):
    path = tmp_path / "sh.wav"
    path.write_bytes(sphere_bytes(SAMPLES, coding="pcm,embedded-shorten-v2.00"))
    with pytest.raises(AudioError, match=r"sh\.wav: SPHERE file is compressed.*shorten.*decompress"):
        read_audio(path)


def test_missing_byte_order_is_read_as_libsndfile_reads_it(tmp_path):
    """No sample_byte_format: little-endian, as libsndfile (soundfile) reads the same file here; noted."""
    path = tmp_path / "x.wav"
    path.write_bytes(sphere_bytes(SAMPLES, byte_format=None))
    audio, info = read_audio_with_info(path)
    np.testing.assert_array_equal(audio, SAMPLES / 32768.0)
    assert len(info.notes) == 1 and "little-endian, as libsndfile" in info.notes[0]
    theirs, rate = soundfile.read(path, dtype="float64")  # libsndfile's own NIST reader
    assert rate == 12500
    np.testing.assert_array_equal(theirs, audio)
    assert probe_audio(path).notes == info.notes
    stated = _write(tmp_path / "y.sph", sphere_bytes(SAMPLES))
    assert read_audio_with_info(stated)[1].notes == () and probe_audio(stated).frames == len(SAMPLES)


def _write(path, data):
    path.write_bytes(data)
    return path


def test_bad_header_lines():
    with pytest.raises(AudioError, match="no end_head"):
        parse_sphere_header(sphere_bytes(SAMPLES).replace(b"end_head", b"        "))
    with pytest.raises(AudioError, match="malformed"):
        parse_sphere_header(sphere_bytes(SAMPLES).replace(b"sample_rate -i", b"sample_rate  i"))


def _patched(old: bytes, new: bytes) -> bytes:
    data = sphere_bytes(SAMPLES)
    assert old in data[:1024]
    return data.replace(old, new.ljust(len(old)) if len(new) <= len(old) else new, 1)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (b"sample_rate -i 12500", b"sample_rate -i 0", r"sample rate 0 Hz in the header; it must be > 0"),
        (b"sample_rate -i 12500", b"sample_rate -i 1974080", r"implausible sample rate 1,974,080 Hz"),
        (b"channel_count -i 1", b"channel_count -i 0", r"0 channels in the header"),
        (b"sample_count -i 8", b"sample_count -i 0", r"holds no samples"),
        (b"sample_count -i 8", b"sample_count -i -8", r"sample_count -8 is negative"),
        (b"sample_count -i 8", b"sample_count -i 7", r"longer than its header says.*14 bytes, file has 16"),
        (b"sample_count -i 8", b"sample_count -i 9", r"truncated SPHERE data.*18 bytes, file has 16"),
        (b"sample_byte_format -s2 01", b"sample_byte_format -s4 0123", r"describes 4-byte samples but "
         r"sample_n_bytes is 2"),
        (b"sample_byte_format -s2 01", b"sample_byte_format -s2 21", r"unsupported SPHERE sample_byte_format"),
        (b"sample_n_bytes -i 2", b"sample_n_bytes -i 3", r"unsupported SPHERE sample_n_bytes 3"),
    ],
)
def test_header_values_are_checked(tmp_path, old, new, message):
    path = _write(tmp_path / "bad.sph", _patched(old, new))
    for read in (read_audio, probe_audio):
        with pytest.raises(AudioError, match=r"bad\.sph: .*" + message):
            read(path)


def test_wav_and_flac_through_soundfile(tmp_path, shared_data):
    audio, rate = read_audio(shared_data / "speech" / "fsdd" / "3_theo_20.wav")
    assert rate == 8000 and audio.ndim == 1 and len(audio) > 1000
    assert np.all(np.abs(audio) <= 1.0) and np.abs(audio).max() > 0.05
    # 16-bit PCM scaled by 1/32768 exactly, as for SPHERE
    assert np.all((audio * 32768) == np.round(audio * 32768))
    flac = tmp_path / "x.flac"
    soundfile.write(flac, audio, rate, subtype="PCM_16")
    back, back_rate = read_audio(flac)
    assert back_rate == rate
    np.testing.assert_array_equal(back, audio)


def test_unreadable_files(tmp_path):
    with pytest.raises(AudioError, match="cannot open"):
        read_audio(tmp_path / "missing.wav")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF not really")
    with pytest.raises(AudioError, match=r"junk\.wav: cannot read audio"):
        read_audio(junk)


def test_resample_to_model_rate():
    t = np.arange(8000) / 8000
    tone = np.sin(2 * np.pi * 440 * t)
    out = resample(tone, 8000, 12500)
    assert len(out) == 12500
    spectrum = np.abs(np.fft.rfft(out[1000:-1000] * np.hanning(10500)))
    assert abs(np.argmax(spectrum) * 12500 / 10500 - 440) < 2  # the tone stays at 440 Hz
    assert resample(tone, 8000, 8000) is tone


def _wav(tmp_path, name, samples, rate=8000):
    path = tmp_path / name
    soundfile.write(path, samples, rate, subtype="PCM_16")
    return path


def test_wav_header_checks(tmp_path):
    good = _wav(tmp_path, "good.wav", np.zeros(100))
    info = probe_audio(good)
    assert (info.format, info.sample_rate, info.channels, info.frames) == ("WAV", 8000, 1, 100)
    flipped = tmp_path / "flipped.wav"
    data = bytearray(good.read_bytes())
    assert data[12:16] == b"fmt " and int.from_bytes(data[24:28], "little") == 8000
    data[24:28] = (1_974_080).to_bytes(4, "little")  # the rate field of the fmt chunk
    flipped.write_bytes(bytes(data))
    for read in (read_audio, probe_audio):
        with pytest.raises(AudioError, match=r"flipped\.wav: implausible sample rate 1,974,080 Hz"):
            read(flipped)
    empty = _wav(tmp_path, "empty.wav", np.zeros(0))
    with pytest.raises(AudioError, match=r"empty\.wav: the file holds no samples"):
        read_audio(empty)
    no_channels = tmp_path / "nochannels.wav"
    data = bytearray(good.read_bytes())
    data[22:24] = (0).to_bytes(2, "little")
    no_channels.write_bytes(bytes(data))
    with pytest.raises(AudioError, match=r"nochannels\.wav: "):
        read_audio(no_channels)
    assert probe_audio(_wav(tmp_path, "x.flac", np.zeros(10))).format == "FLAC"
