"""Writers of published file formats for the tests: AEDAT 2.0 and 3.1 event files, NIST SPHERE audio and the
Heidelberg spiking datasets' HDF5 layout. Each writes what the format's specification (and the files in circulation)
say, so that the readers are tested on files they did not write themselves."""

from __future__ import annotations

import gzip
import struct

import h5py
import numpy as np


def aedat2_bytes(records: list[tuple[int, int]], chip: str | None) -> bytes:
    """A jAER AEDAT 2.0 file: the version line, a comment, the chip line (when `chip`), then big-endian (address,
    timestamp µs) records."""
    head = b"#!AER-DAT2.0\r\n# This is a raw AE data file\r\n"
    if chip:
        head += f"# AEChip: ch.unizh.ini.jaer.chip.retina.{chip}\r\n".encode()
    return head + b"".join(struct.pack(">II", a, t) for a, t in records)


def aedat31_packet(etype: int, source: int, size: int, ts_offset: int, overflow: int, payload: bytes,
                   number: int) -> bytes:
    """One AEDAT 3.1 packet: the 28-byte header (type, source, event size, timestamp offset, overflow, counts),
    then `payload`."""
    return struct.pack("<hhiiiiii", etype, source, size, ts_offset, overflow, number, number, number) + payload


def polarity_packet(events, overflow=0, source=1) -> bytes:
    """events: (x, y, p, t32, valid) tuples -> polarity packet (8-byte events: data, timestamp)."""
    payload = b"".join(
        struct.pack("<Ii", (x << 17) | (y << 2) | (p << 1) | valid, t) for x, y, p, t, valid in events
    )
    return aedat31_packet(1, source, 8, 4, overflow, payload, len(events))


def aedat31_bytes(packets: list[bytes], source_name: str = "DVS128") -> bytes:
    """An AEDAT 3.1 file (cAER): the text header naming the source chip, then `packets`."""
    header = f"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: {source_name}\r\n#Start-Time: 2024-01-01\r\n"
    return header.encode() + b"#!END-HEADER\r\n" + b"".join(packets)


def imu6_packet(n: int) -> bytes:
    """An AEDAT 3.1 IMU6 packet of `n` samples."""
    # IMU6 event: uint32 info, int32 timestamp, 7 floats = 36 bytes, timestamp at offset 4
    payload = b"".join(struct.pack("<Ii7f", 1, 100 + i, *([0.5] * 7)) for i in range(n))
    return aedat31_packet(3, 1, 36, 4, 0, payload, n)


def aedat31_sample() -> tuple[bytes, list[tuple[int, int, int, int]]]:
    """An AEDAT 3.1 file with two polarity packets (one invalid event, a timestamp overflow), an IMU6 and a special
    packet; and the (x, y, p, t µs) polarity events a reader must return."""
    rng = np.random.default_rng(7)
    first = [
        (int(rng.integers(128)), int(rng.integers(128)), int(rng.integers(2)), 1000 + 10 * i, 1) for i in range(50)
    ]
    first[3] = (*first[3][:4], 0)  # one invalid event
    second = [(int(rng.integers(128)), int(rng.integers(128)), int(rng.integers(2)), 5 + i, 1) for i in range(20)]
    special = aedat31_packet(0, 1, 8, 4, 0, struct.pack("<Ii", 1, 999) * 2, 2)
    data = aedat31_bytes([polarity_packet(first), imu6_packet(4), special, polarity_packet(second, overflow=1)])
    expect = [(x, y, p, t) for x, y, p, t, v in first if v] + [(x, y, p, t + (1 << 31)) for x, y, p, t, _ in second]
    return data, expect


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


SHD_KEYS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
            "null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun"]


def make_samples(n, seed=0, longest=1.3, n_classes=20):
    """`n` samples like SHD's: sorted float16 times in [0, longest] s, units 0-699, some spikes of one channel in
    the same millisecond (so that binning collapses them); labels and speakers."""
    rng = np.random.default_rng(seed)
    times, units = [], []
    for i in range(n):
        k = int(rng.integers(0, 400)) if i else 0  # sample 0 has no spike at all
        t = np.sort(rng.uniform(0, longest, k)).astype(np.float16)
        u = rng.integers(0, 700, k).astype(np.uint16)
        if k > 10:  # repeat a few spikes 0.2 ms later on the same channel
            j = rng.choice(k - 1, 5, replace=False)
            t = np.concatenate([t, (t[j].astype(np.float64) + 2e-4).astype(np.float16)])
            u = np.concatenate([u, u[j]])
            order = np.argsort(t, kind="stable")
            t, u = t[order], u[order]
        times.append(t)
        units.append(u)
    labels = rng.integers(0, n_classes, n).astype(np.uint8)
    speakers = rng.integers(0, 12, n).astype(np.uint8)
    return times, units, labels, speakers


def write_heidelberg(path, times, units, labels, speakers=None, keys=SHD_KEYS, gz=False):
    """A file in the published layout: spikes/times (vlen float16, s), spikes/units (vlen uint16), labels,
    extra/speaker, extra/keys (bytes), extra/meta_info; gzipped as distributed when `gz`."""
    plain = path.with_suffix("") if gz else path
    with h5py.File(plain, "w") as f:
        t = f.create_dataset("spikes/times", (len(times),), dtype=h5py.vlen_dtype(np.dtype(times[0].dtype)))
        u = f.create_dataset("spikes/units", (len(units),), dtype=h5py.vlen_dtype(np.dtype(units[0].dtype)))
        for i, (ti, ui) in enumerate(zip(times, units, strict=True)):
            t[i] = ti
            u[i] = ui
        f.create_dataset("labels", data=labels)
        extra = f.create_group("extra")
        if speakers is not None:
            extra.create_dataset("speaker", data=speakers)
        if keys is not None:
            extra.create_dataset("keys", data=np.array([k.encode("utf-8") for k in keys]))
        meta = extra.create_group("meta_info")
        meta.create_dataset("gender", data=np.array([b"female", b"male"]))
        meta.create_dataset("age", data=np.array([27, 31], np.uint8))
        meta.create_dataset("body_height", data=np.array([170, 182], np.uint8))
    if gz:
        path.write_bytes(gzip.compress(plain.read_bytes(), compresslevel=1))
        plain.unlink()
    return path


# ------------------------------------------------------------------------------------------------ events per file


def write_mat_events(path, t, x, y, p, version: str = "5", dtype=np.float64):
    """A MAT-file with the column vectors ts, x, y, pol (ASL-DVS's layout). `version` "5": level 5 as MATLAB's
    default `save` (and scipy.io.savemat) writes it; "7.3": HDF5 behind MATLAB's 512-byte text header, each
    variable a root dataset stored transposed ([1, n]) with its MATLAB_class attribute."""
    columns = {"ts": t, "x": x, "y": y, "pol": p}
    if version == "5":
        import scipy.io

        scipy.io.savemat(path, {k: np.asarray(v, dtype=dtype).reshape(-1, 1) for k, v in columns.items()})
        return path
    with h5py.File(path, "w", userblock_size=512) as f:
        for name, values in columns.items():
            ds = f.create_dataset(name, data=np.asarray(values, dtype=dtype).reshape(1, -1))
            ds.attrs["MATLAB_class"] = np.bytes_("double" if np.dtype(dtype).kind == "f" else np.dtype(dtype).name)
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Tue Mar  5 10:00:00 2019 HDF5 schema 1.00 ."
    with open(path, "r+b") as fh:
        fh.write(header.ljust(512, b" "))
    return path


def write_npy_events(path, t, x, y, p, dtype=(("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "?"))):
    """A .npy file holding one structured array with the fields t, x, y, p (DVS-Lip's layout), of the given
    field types and order."""
    data = np.zeros(len(t), dtype=list(dtype))
    data["t"], data["x"], data["y"], data["p"] = t, x, y, p
    np.save(path, data)
    return path


def write_ntidigits(path, splits):
    """The N-TIDIGITS HDF5 layout: `<split>_labels` (the keys, bytes) and one dataset per key in the groups
    `<split>_addresses` (channels) and `<split>_timestamps` (float seconds); `splits` maps split -> [(key, times,
    addresses)] in file order."""
    with h5py.File(path, "w") as f:
        for split, rows in splits.items():
            f.create_dataset(f"{split}_labels", data=np.array([key.encode() for key, _, _ in rows]))
            addresses, stamps = f.create_group(f"{split}_addresses"), f.create_group(f"{split}_timestamps")
            for key, times, channels in rows:
                stamps.create_dataset(key, data=np.asarray(times, dtype=np.float32))
                addresses.create_dataset(key, data=np.asarray(channels, dtype=np.uint8))
    return path
