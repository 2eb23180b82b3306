"""Audio readers: WAV / FLAC through soundfile, NIST SPHERE (TI46's format) through our own header parser.

Every reader returns float64 samples scaled like soundfile's float output (16-bit PCM / 32768, so in [-1, 1))
and the sample rate in Hz. Formats are detected from the file's first bytes, not its suffix: TI46 files carry
SPHERE headers whatever their suffix (`.wav` on the 1991 CDs, `.sph` in LDC's download).

Every header is checked before any sample is decoded (:func:`probe_audio` does only that, cheaply): a sample rate
within :data:`SAMPLE_RATES` Hz, at least one channel, at least one sample, and -- for SPHERE -- a `sample_count`
that agrees exactly with the bytes after the header (samples are never silently dropped or padded). Every failure
is an :class:`AudioError` naming the file.

NIST SPHERE: an ASCII header that starts with `NIST_1A\\n` and its size in bytes (`   1024\\n`), then
`name -type value` lines up to `end_head`. We read `sample_count`, `sample_rate`, `channel_count`,
`sample_n_bytes` (2 or 4), `sample_byte_format` (`01` / `0123` little-endian, `10` / `3210` big-endian) and
`sample_coding` (`pcm`; shorten-compressed files are rejected with a message saying so). A header without
`sample_byte_format` is read little-endian, as libsndfile reads it on every little-endian machine (it assumes the
host's byte order); sph2pipe refuses such files. The assumption is reported in :attr:`AudioInfo.notes` (the speech
encoders count it in the store's `encode_stats` as `byte_order_assumed`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spikedata.errors import SpikedataError

__all__ = [
    "AudioError", "AudioInfo", "SAMPLE_RATES", "SphereHeader", "parse_sphere_header", "probe_audio", "read_audio",
    "read_audio_with_info", "read_sphere", "resample",
]  # fmt: skip

_SPHERE_MAGIC = b"NIST_1A"
#: Plausible sample rates in Hz, inclusive: from 1 kHz (below every telephone-band recording) to 768 kHz (the
#: highest rate of high-resolution audio). A rate outside it is a corrupt or byte-swapped header, e.g. 1,974,080 Hz.
SAMPLE_RATES = (1_000, 768_000)
#: `sample_byte_format` values -> numpy byte order.
_BYTE_ORDERS = {"01": "<", "0123": "<", "10": ">", "3210": ">"}
#: What :func:`probe_audio` reads of a SPHERE file before it knows the header's size.
_SPHERE_PROBE = 1024


class AudioError(SpikedataError, ValueError):
    """An audio file that cannot be read; the message names the file and the problem."""


@dataclass(frozen=True)
class AudioInfo:
    """What a header says: `format` ("SPHERE", "WAV", "FLAC", ...), rate in Hz, channels, frames (samples per
    channel), and `notes` on assumptions made while reading it (e.g. a missing byte order)."""

    format: str
    sample_rate: int
    channels: int
    frames: int
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class SphereHeader:
    """The fields of a NIST SPHERE header that decoding needs (all others are kept in `fields`)."""

    header_bytes: int
    sample_count: int
    sample_rate: int
    channel_count: int
    sample_n_bytes: int
    byte_format: str  # "01" / "0123" little-endian, "10" / "3210" big-endian, "" when absent
    coding: str
    fields: dict[str, str | int | float]


def parse_sphere_header(data: bytes, where: str = "<bytes>") -> SphereHeader:
    """Parse a NIST SPHERE header from the first bytes of a file (at least the header's length).

    Checks the syntax and the presence of the integer fields; :func:`probe_audio` checks their values.
    """
    if not data.startswith(_SPHERE_MAGIC):
        raise AudioError(f"{where}: not a NIST SPHERE file (no NIST_1A magic)")
    lines = data[:64].split(b"\n")
    try:
        header_bytes = int(lines[1].strip())
    except (IndexError, ValueError):
        raise AudioError(f"{where}: SPHERE header size line is missing or not a number") from None
    if header_bytes < 16 or header_bytes > 1 << 20:
        raise AudioError(f"{where}: implausible SPHERE header size {header_bytes}")
    if len(data) < header_bytes:
        raise AudioError(f"{where}: truncated SPHERE header ({len(data)} of {header_bytes} bytes)")
    text = data[:header_bytes].decode("latin-1")
    fields: dict[str, str | int | float] = {}
    ended = False
    for line in text.split("\n")[2:]:
        line = line.strip()
        if not line:
            continue
        if line == "end_head":
            ended = True
            break
        parts = line.split(None, 2)
        if len(parts) < 3 or not parts[1].startswith("-"):
            raise AudioError(f"{where}: malformed SPHERE header line {line!r}")
        name, kind, value = parts
        try:
            if kind == "-i":
                fields[name] = int(value)
            elif kind == "-r":
                fields[name] = float(value)
            else:  # -sN: string of N characters
                fields[name] = value
        except ValueError:
            raise AudioError(f"{where}: SPHERE field {name} has bad value {value!r}") from None
    if not ended:
        raise AudioError(f"{where}: SPHERE header has no end_head within its {header_bytes} bytes")

    def need_int(name: str, default: int | None = None) -> int:
        value = fields.get(name, default)
        if isinstance(value, float) and value.is_integer():  # e.g. "sample_rate -r 16000.0"
            value = int(value)
        if not isinstance(value, int):
            raise AudioError(f"{where}: SPHERE header lacks integer field {name!r}")
        return value

    return SphereHeader(
        header_bytes=header_bytes,
        sample_count=need_int("sample_count"),
        sample_rate=need_int("sample_rate"),
        channel_count=need_int("channel_count", 1),
        sample_n_bytes=need_int("sample_n_bytes", 2),
        byte_format=str(fields.get("sample_byte_format", "")),
        coding=str(fields.get("sample_coding", "pcm")).lower(),
        fields=fields,
    )


def _check_stream(where: str, rate: int, channels: int, frames: int) -> None:
    """The checks every format shares: plausible rate, >= 1 channel, >= 1 sample."""
    lo, hi = SAMPLE_RATES
    if rate <= 0:
        raise AudioError(f"{where}: sample rate {rate} Hz in the header; it must be > 0")
    if not lo <= rate <= hi:
        raise AudioError(
            f"{where}: implausible sample rate {rate:,} Hz in the header (plausible: {lo:,}-{hi:,} Hz); "
            "the header is corrupt or byte-swapped"
        )
    if channels < 1:
        raise AudioError(f"{where}: {channels} channels in the header; at least 1 is needed")
    if frames < 1:
        raise AudioError(f"{where}: the file holds no samples")


def _check_sphere(head: SphereHeader, data_bytes: int, where: str) -> tuple[str, tuple[str, ...]]:
    """Validate a parsed SPHERE header against the `data_bytes` after it; returns (numpy byte order, notes)."""
    if "shorten" in head.coding or "wavpack" in head.coding:
        raise AudioError(
            f"{where}: SPHERE file is compressed ({head.coding!r}); decompress it first, e.g. with NIST's "
            "`w_decode -o pcm` or `sph2pipe -f wav`"
        )
    if head.coding != "pcm":
        raise AudioError(f"{where}: unsupported SPHERE sample_coding {head.coding!r} (only pcm is supported)")
    if head.sample_n_bytes not in (2, 4):
        raise AudioError(f"{where}: unsupported SPHERE sample_n_bytes {head.sample_n_bytes} (2 or 4 supported)")
    if head.sample_count < 0:
        raise AudioError(f"{where}: SPHERE sample_count {head.sample_count} is negative")
    _check_stream(where, head.sample_rate, head.channel_count, head.sample_count)
    notes: tuple[str, ...] = ()
    if not head.byte_format:
        order = "<"
        notes = ("sample_byte_format missing: read little-endian, as libsndfile does on little-endian machines "
                 "(sph2pipe refuses such files)",)
    elif head.byte_format not in _BYTE_ORDERS:
        raise AudioError(f"{where}: unsupported SPHERE sample_byte_format {head.byte_format!r}")
    elif len(head.byte_format) != head.sample_n_bytes:
        raise AudioError(
            f"{where}: SPHERE sample_byte_format {head.byte_format!r} describes {len(head.byte_format)}-byte "
            f"samples but sample_n_bytes is {head.sample_n_bytes}"
        )
    else:
        order = _BYTE_ORDERS[head.byte_format]
    frame = head.channel_count * head.sample_n_bytes
    expected = head.sample_count * frame
    if data_bytes != expected:
        what = "truncated SPHERE data" if data_bytes < expected else "SPHERE data longer than its header says"
        raise AudioError(
            f"{where}: {what}: header says {head.sample_count} samples x {head.channel_count} channels x "
            f"{head.sample_n_bytes} bytes = {expected} bytes, file has {data_bytes} after the {head.header_bytes}-"
            f"byte header ({data_bytes / frame:g} samples); nothing is dropped or padded"
        )
    return order, notes


def _sphere_info(head: SphereHeader, notes: tuple[str, ...]) -> AudioInfo:
    return AudioInfo("SPHERE", head.sample_rate, head.channel_count, head.sample_count, notes)


def _probe_sphere(path: str | os.PathLike, where: str) -> AudioInfo:
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        data = fh.read(_SPHERE_PROBE)
        lines = data[:64].split(b"\n")
        try:
            header_bytes = int(lines[1].strip())
        except (IndexError, ValueError):
            header_bytes = 0  # parse_sphere_header reports it
        if _SPHERE_PROBE < header_bytes <= 1 << 20:
            data += fh.read(header_bytes - _SPHERE_PROBE)
    head = parse_sphere_header(data, where)
    _, notes = _check_sphere(head, size - head.header_bytes, where)
    return _sphere_info(head, notes)


def _read_sphere(path: str | os.PathLike, where: str) -> tuple[np.ndarray, AudioInfo]:
    data = Path(path).read_bytes()
    head = parse_sphere_header(data, where)
    order, notes = _check_sphere(head, len(data) - head.header_bytes, where)
    dtype = np.dtype(f"{order}i{head.sample_n_bytes}")
    body = np.frombuffer(data, dtype=dtype, offset=head.header_bytes)
    values = body.astype(np.float64) / float(1 << (8 * head.sample_n_bytes - 1))
    if head.channel_count > 1:
        values = values.reshape(head.sample_count, head.channel_count)
    return values, _sphere_info(head, notes)


def read_sphere(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Samples float64 [n] (mono) or [n, channels] and the sample rate (Hz) of a NIST SPHERE file."""
    values, info = _read_sphere(path, str(path))
    return values, info.sample_rate


def _is_sphere(path: str | os.PathLike, where: str) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(len(_SPHERE_MAGIC)) == _SPHERE_MAGIC
    except OSError as exc:
        raise AudioError(f"{where}: cannot open ({exc.strerror})") from None


def _soundfile_errors() -> tuple[type[BaseException], ...]:
    import soundfile

    return (RuntimeError, soundfile.LibsndfileError, soundfile.SoundFileError)


def probe_audio(path: str | os.PathLike) -> AudioInfo:
    """Check a file's header without decoding its samples (cheap: a fuzzer's plausibility check).

    Raises :class:`AudioError` naming the file for anything :func:`read_audio` would refuse.
    """
    where = str(path)
    if _is_sphere(path, where):
        return _probe_sphere(path, where)
    import soundfile

    try:
        raw = soundfile.info(str(path))
    except _soundfile_errors() as exc:
        raise AudioError(f"{where}: cannot read audio ({exc})") from None
    _check_stream(where, int(raw.samplerate), int(raw.channels), int(raw.frames))
    return AudioInfo(str(raw.format), int(raw.samplerate), int(raw.channels), int(raw.frames))


def read_audio_with_info(path: str | os.PathLike, mono: bool = True) -> tuple[np.ndarray, AudioInfo]:
    """Samples float64 ([n] when `mono`, channels averaged, else [n, channels]) and the checked header."""
    where = str(path)
    if _is_sphere(path, where):
        samples, info = _read_sphere(path, where)
    else:
        import soundfile

        try:
            with soundfile.SoundFile(str(path)) as f:
                info = AudioInfo(str(f.format), int(f.samplerate), int(f.channels), int(f.frames))
                _check_stream(where, info.sample_rate, info.channels, info.frames)
                samples = f.read(dtype="float64", always_2d=False)
        except _soundfile_errors() as exc:
            raise AudioError(f"{where}: cannot read audio ({exc})") from None
        if len(samples) != info.frames:
            raise AudioError(f"{where}: header says {info.frames} samples, {len(samples)} could be decoded")
    if mono and samples.ndim == 2:
        samples = samples.mean(axis=1)
    return np.ascontiguousarray(samples), info


def read_audio(path: str | os.PathLike, mono: bool = True) -> tuple[np.ndarray, int]:
    """Samples float64 and sample rate (Hz) of a WAV, FLAC (soundfile) or NIST SPHERE file.

    Returns [n] when `mono` (channels averaged) else [n, channels]. Errors name the file.
    """
    samples, info = read_audio_with_info(path, mono)
    return samples, info.sample_rate


def resample(audio: np.ndarray, sample_rate: int, target_rate: int, res_type: str = "soxr_hq") -> np.ndarray:
    """`audio` [n] resampled from `sample_rate` to `target_rate` Hz with librosa (unchanged when equal)."""
    if int(sample_rate) == int(target_rate):
        return audio
    import librosa

    return librosa.resample(audio, orig_sr=int(sample_rate), target_sr=int(target_rate), res_type=res_type)
