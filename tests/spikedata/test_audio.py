"""Audio readers: NIST SPHERE (headers written here, both byte orders, damaged files), WAV/FLAC via soundfile."""

import numpy as np
import pytest
import soundfile

from spikedata.io.audio import AudioError, parse_sphere_header, read_audio, resample


def sphere_bytes(samples, rate=12500, byte_format="01", coding="pcm", n_bytes=2, extra="", header_size=1024):
    """A NIST_1A file as TI46 ships them: 1024-byte ASCII header, then the PCM samples."""
    lines = [
        "NIST_1A",
        f"   {header_size}",
        f"sample_count -i {len(samples)}",
        f"sample_rate -i {rate}",
        "channel_count -i 1",
        f"sample_n_bytes -i {n_bytes}",
        "sample_sig_bits -i 16",
        f"sample_coding -s{len(coding)} {coding}",
    ]
    if byte_format is not None:
        lines.append(f"sample_byte_format -s{len(byte_format)} {byte_format}")
    lines += [extra, "end_head", ""] if extra else ["end_head", ""]
    head = "\n".join(lines).encode("ascii")
    head += b" " * (header_size - len(head))
    order = "<" if (byte_format or "01").startswith("0") else ">"
    return head + np.asarray(samples).astype(f"{order}i{n_bytes}").tobytes()


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


def test_missing_byte_order_and_bad_lines(tmp_path):
    path = tmp_path / "x.wav"
    path.write_bytes(sphere_bytes(SAMPLES, byte_format=None))
    with pytest.raises(AudioError, match="byte order is unknown"):
        read_audio(path)
    with pytest.raises(AudioError, match="no end_head"):
        parse_sphere_header(sphere_bytes(SAMPLES).replace(b"end_head", b"        "))
    with pytest.raises(AudioError, match="malformed"):
        parse_sphere_header(sphere_bytes(SAMPLES).replace(b"sample_rate -i", b"sample_rate  i"))


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
