"""Audio readers: WAV / FLAC through soundfile, NIST SPHERE (TI46's format) through our own header parser.

Every reader returns float64 samples scaled like soundfile's float output (16-bit PCM / 32768, so in [-1, 1))
and the sample rate in Hz. Formats are detected from the file's first bytes, not its suffix: TI46 files carry
SPHERE headers despite their `.wav` names.

NIST SPHERE: an ASCII header that starts with `NIST_1A\\n` and its size in bytes (`   1024\\n`), then
`name -type value` lines up to `end_head`. We read `sample_count`, `sample_rate`, `channel_count`,
`sample_n_bytes`, `sample_byte_format` (`01` / `0123` little-endian, `10` / `3210` big-endian) and
`sample_coding` (`pcm`; shorten-compressed files are rejected with a message saying so).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spikedata.errors import SpikedataError

__all__ = ["AudioError", "SphereHeader", "read_audio", "read_sphere", "parse_sphere_header", "resample"]

_SPHERE_MAGIC = b"NIST_1A"


class AudioError(SpikedataError, ValueError):
    """An audio file that cannot be read; the message names the file and the problem."""


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
    """Parse a NIST SPHERE header from the first bytes of a file (at least the header's length)."""
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
        if not isinstance(value, int):
            raise AudioError(f"{where}: SPHERE header lacks integer field {name!r}")
        return value

    n_bytes = need_int("sample_n_bytes", 2)
    byte_format = str(fields.get("sample_byte_format", ""))
    return SphereHeader(
        header_bytes=header_bytes,
        sample_count=need_int("sample_count"),
        sample_rate=need_int("sample_rate"),
        channel_count=need_int("channel_count", 1),
        sample_n_bytes=n_bytes,
        byte_format=byte_format,
        coding=str(fields.get("sample_coding", "pcm")).lower(),
        fields=fields,
    )


def read_sphere(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Samples float64 [n] (mono) or [n, channels] and the sample rate (Hz) of a NIST SPHERE file."""
    where = str(path)
    data = Path(path).read_bytes()
    head = parse_sphere_header(data, where)
    if "shorten" in head.coding or "wavpack" in head.coding:
        raise AudioError(
            f"{where}: SPHERE file is compressed ({head.coding!r}); decompress it first, e.g. with NIST's "
            "`w_decode -o pcm` or `sph2pipe -f wav`"
        )
    if head.coding != "pcm":
        raise AudioError(f"{where}: unsupported SPHERE sample_coding {head.coding!r} (only pcm is supported)")
    if head.sample_n_bytes not in (2, 4):
        raise AudioError(f"{where}: unsupported SPHERE sample_n_bytes {head.sample_n_bytes} (2 or 4 supported)")
    n_values = head.sample_count * head.channel_count
    n_bytes = n_values * head.sample_n_bytes
    body = data[head.header_bytes :]
    if len(body) < n_bytes:
        raise AudioError(
            f"{where}: truncated SPHERE data: header says {head.sample_count} samples x {head.channel_count} "
            f"channels x {head.sample_n_bytes} bytes = {n_bytes} bytes, file has {len(body)}"
        )
    body = body[:n_bytes]
    if not head.byte_format:
        raise AudioError(f"{where}: SPHERE header lacks sample_byte_format, so the byte order is unknown")
    if head.byte_format not in ("01", "0123", "10", "3210"):
        raise AudioError(f"{where}: unsupported SPHERE sample_byte_format {head.byte_format!r}")
    order = "<" if head.byte_format.startswith("0") else ">"
    dtype = np.dtype(f"{order}i{head.sample_n_bytes}")
    values = np.frombuffer(body, dtype=dtype).astype(np.float64) / float(1 << (8 * head.sample_n_bytes - 1))
    if head.channel_count > 1:
        values = values.reshape(head.sample_count, head.channel_count)
    return values, head.sample_rate


def read_audio(path: str | os.PathLike, mono: bool = True) -> tuple[np.ndarray, int]:
    """Samples float64 and sample rate (Hz) of a WAV, FLAC (soundfile) or NIST SPHERE file.

    Returns [n] when `mono` (channels averaged) else [n, channels]. Errors name the file.
    """
    where = str(path)
    try:
        with open(path, "rb") as fh:
            magic = fh.read(len(_SPHERE_MAGIC))
    except OSError as exc:
        raise AudioError(f"{where}: cannot open ({exc.strerror})") from None
    if magic == _SPHERE_MAGIC:
        samples, rate = read_sphere(path)
    else:
        import soundfile

        try:
            samples, rate = soundfile.read(path, dtype="float64", always_2d=False)
        except (RuntimeError, soundfile.LibsndfileError) as exc:
            raise AudioError(f"{where}: cannot read audio ({exc})") from None
    if mono and samples.ndim == 2:
        samples = samples.mean(axis=1)
    return np.ascontiguousarray(samples), int(rate)


def resample(audio: np.ndarray, sample_rate: int, target_rate: int, res_type: str = "soxr_hq") -> np.ndarray:
    """`audio` [n] resampled from `sample_rate` to `target_rate` Hz with librosa (unchanged when equal)."""
    if int(sample_rate) == int(target_rate):
        return audio
    import librosa

    return librosa.resample(audio, orig_sr=int(sample_rate), target_sr=int(target_rate), res_type=res_type)
