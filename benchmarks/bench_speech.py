"""Speech: Lyon's passive ear (ours vs the `lyon` package), BSA, the TI46 letters extrapolated; SHD encoding
(ours vs tonic's `ToFrame`); `spikedata encode gsc` on a Speech Commands-sized corpus.

    .venv/bin/python benchmarks/bench_speech.py [--seconds 8] [--repeats 3] [--only lyon|shd|gsc]
        [--shd-spikes 8000] [--shd-subset 300] [--workers 1 2] [--cli-workers 1]
        [--gsc-count 105829] [--gsc-workers 2] [--gsc-short 0.1]

Lyon is timed on real FSDD speech (concatenated, resampled to 12.5 kHz) at decimation 1 and 200 (TI46);
BSA on the reference's TI46 cochleagram (78 x 68 frames, 1000 steps). The TI46 letters subset (10,770
utterances) is extrapolated with the reference utterance's length (68 frames of 16 ms = 1.09 s): TI46 is
12.5 kHz already, so no resampling.

SHD: no SHD file exists offline, so a full-size pair is written here with h5py in the published layout (8,156 +
2,264 samples; vlen float16 times in s, vlen uint16 units; each sample 0.6-1.4 s long with uniform(0.5, 1.5) x
`--shd-spikes` spikes on random channels; the real files' spike counts are not known here, hence spikes/s too).
Side by side, medians of `--repeats` alternating runs on the first `--shd-subset` test samples, 1 ms bins, T 1400:
binning alone (ours: `bin_unit_events` per 256-sample block; tonic: `ToFrame(sensor_size=(700, 1, 1),
time_window=1000, start_time=0, end_time=1.4e6)` per sample, on the same events built as tonic's SHD dataset builds
them) and read + bin from the file (ours: the encoder's `HeidelbergRange`; tonic: its `HSD.__getitem__` -- h5py
read of one sample -- then `ToFrame`). The rasters are checked equal (ours == tonic's frames > 0, our collapsed
count == tonic's surplus counts). Then all 10,420 samples into a store (`encode_to_store`, plain .h5) at each of
`--workers`, and the whole command `spikedata encode shd` from the gzipped files.

Speech Commands: no copy exists offline, so `--gsc-count` WAV files (default: all 105,829 of v0.02, 3.4 GB) are
written in the published layout (35 word folders, validation_list.txt and testing_list.txt with the corpus's
proportions of 9,981 and 11,005 files): 16 kHz mono 16-bit, 16,000 samples each, except a fraction `--gsc-short`
cut to 8,000-15,999 samples (the real corpus has such clips; the fraction is an assumption). Each clip is one of 300
templates: a real FSDD digit resampled to 16 kHz at a random place in 1 s of noise 40 dB below it, so that the
spike counts are those of speech. Timed: the whole command `spikedata encode gsc --workers N` (process start,
scanning, the lists' sha256, reading, resampling, Lyon, BSA, writing and validating the store). With fewer files
than the corpus the time is extrapolated linearly to 105,829 (which also scales the fixed start-up cost:
conservative).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sample_data import SAMPLE_DATA
from timing import best, side_by_side

from spikedata.encoders.bsa import bsa_encode
from spikedata.encoders.lyon import lyon_passive_ear
from spikedata.io.audio import read_audio, resample

SHARED = SAMPLE_DATA
RATE = 12500
TI46_UTTERANCES = 10770


SHD_SPLITS = {"train": 8156, "test": 2264}
SHD_STEPS, SHD_DT = 1400, 1000


def write_shd(path: Path, n: int, spikes: int, seed: int) -> None:
    """A file in the published SHD layout with `n` synthetic samples (see the module docstring)."""
    import h5py

    rng = np.random.default_rng(seed)
    counts = (spikes * rng.uniform(0.5, 1.5, n)).astype(np.int64)
    lengths = rng.uniform(0.6, 1.4, n)
    times = np.empty(n, object)
    units = np.empty(n, object)
    for i in range(n):
        times[i] = np.sort(rng.uniform(0, lengths[i], counts[i])).astype(np.float16)
        units[i] = rng.integers(0, 700, counts[i]).astype(np.uint16)
    with h5py.File(path, "w") as f:
        f.create_dataset("spikes/times", data=times, dtype=h5py.vlen_dtype(np.float16))
        f.create_dataset("spikes/units", data=units, dtype=h5py.vlen_dtype(np.uint16))
        f.create_dataset("labels", data=rng.integers(0, 20, n).astype(np.uint8))
        f.create_dataset("extra/speaker", data=rng.integers(0, 12, n).astype(np.uint8))
        f.create_dataset("extra/keys", data=np.array([f"class{i}".encode() for i in range(20)]))


def tonic_events(times: np.ndarray, units: np.ndarray) -> np.ndarray:
    """One sample as tonic's SHD dataset builds it (tonic/datasets/hsd.py): (t µs, x unit, p 1) as int."""
    from numpy.lib import recfunctions

    events = np.vstack((times, units, np.ones(times.shape[0]))).T
    events[:, 0] *= 1e6
    return recfunctions.unstructured_to_structured(events, np.dtype([("t", int), ("x", int), ("p", int)]))


def shd_benchmark(args) -> None:
    import h5py
    import tonic

    from spikedata.datasets.shared.heidelberg_encoding import HeidelbergRange, heidelberg_jobs
    from spikedata.encoders.event_binning import bin_unit_events
    from spikedata.pipeline import encode_to_store
    from spikedata.store import open_store

    tmp = Path(tempfile.mkdtemp(prefix="bench_shd_"))
    try:
        started = time.perf_counter()
        files = {split: tmp / f"shd_{split}.h5" for split in SHD_SPLITS}
        for k, (split, n) in enumerate(SHD_SPLITS.items()):
            write_shd(files[split], n, args.shd_spikes, seed=k)
        size = sum(p.stat().st_size for p in files.values())
        print(f"\nSHD: wrote {sum(SHD_SPLITS.values()):,} synthetic samples ({size / 2**20:.0f} MiB) in "
              f"{time.perf_counter() - started:.1f} s")

        n = args.shd_subset
        test = files["test"]
        with h5py.File(test, "r") as f:
            times, units = f["spikes/times"][:n], f["spikes/units"][:n]
        indptr = np.concatenate([[0], np.cumsum([len(t) for t in times])])
        t_s, u = np.concatenate(times).astype(np.float64), np.concatenate(units).astype(np.int64)
        events = [tonic_events(a, b) for a, b in zip(times, units, strict=True)]
        to_frame = tonic.transforms.ToFrame(sensor_size=(700, 1, 1), time_window=SHD_DT, start_time=0,
                                            end_time=SHD_STEPS * SHD_DT)
        reader = HeidelbergRange(str(test), str(test), SHD_DT, SHD_STEPS, 20, True)

        blocks = [(a, min(a + 256, n)) for a in range(0, n, 256)]

        def ours_bin():
            return [bin_unit_events(indptr[a:b + 1] - indptr[a], t_s[indptr[a]:indptr[b]], u[indptr[a]:indptr[b]],
                                    700, SHD_DT, SHD_STEPS) for a, b in blocks]

        def tonic_bin():
            return [to_frame(ev) for ev in events]

        def ours_read():
            return [reader(a, min(a + 256, n)) for a in range(0, n, 256)]

        def tonic_read():  # tonic.datasets.hsd.HSD.__getitem__: open, read one sample, build events; then ToFrame
            out = []
            for i in range(n):
                with h5py.File(test, "r") as f:
                    ev = tonic_events(f["spikes/times"][i], f["spikes/units"][i])
                out.append(to_frame(ev))
            return out

        ours_bin(), ours_read()  # numba compile / cache load outside the timing
        block = bin_unit_events(indptr, t_s, u, 700, SHD_DT, SHD_STEPS)
        frames = tonic_bin()
        for i in range(n):
            dense = np.zeros((SHD_STEPS, 700), bool)
            lo, hi = block.indptr[i], block.indptr[i + 1]
            dense[block.times[lo:hi], block.units[lo:hi]] = True
            assert np.array_equal(dense, frames[i][:, 0, :] > 0), f"raster of sample {i} differs from tonic's"
        surplus = sum(int(fr.sum()) - int(np.count_nonzero(fr)) for fr in frames)
        assert surplus == block.n_collapsed, (surplus, block.n_collapsed)
        spikes = int(indptr[-1])
        print(f"rasters equal to tonic's on {n} samples ({spikes:,} spikes, {block.n_collapsed:,} collapsed, "
              f"{block.n_dropped_time} dropped)")
        m = side_by_side({"ours bin": ours_bin, "tonic bin": tonic_bin, "ours read": ours_read,
                          "tonic read": tonic_read}, args.repeats)
        print(f"{'median of ' + str(args.repeats):<22} {'ours':>12} {'tonic ToFrame':>14} {'speed-up':>9}")
        for what, a, b in (("bin (in memory)", m["ours bin"], m["tonic bin"]),
                           ("read + bin (HDF5)", m["ours read"], m["tonic read"])):
            print(f"{what:<22} {n / a:>9,.0f} /s {n / b:>11,.0f} /s {b / a:>8.1f}x   "
                  f"(ours {spikes / a / 1e6:.1f} M spikes/s)")

        total = sum(SHD_SPLITS.values())
        for workers in args.workers:
            out = tmp / f"w{workers}.zarr"
            started = time.perf_counter()
            attrs, jobs = heidelberg_jobs("shd", files, files, SHD_DT, SHD_STEPS)
            encode_to_store(out, attrs, jobs, workers=workers, progress=False)
            seconds = time.perf_counter() - started
            stored = open_store(out)
            read = sum(stored[s].attrs["encode_stats"]["events_read"] for s in stored.splits)
            print(f"all {total:,} samples into a store, {workers} worker(s): {seconds:.1f} s "
                  f"({total / seconds:,.0f} samples/s, {read / seconds / 1e6:.1f} M spikes/s)")
            shutil.rmtree(out)
        gz = tmp / "gz"
        gz.mkdir()
        for path in files.values():
            with open(gz / f"{path.name}.gz", "wb") as packed:
                subprocess.run(["gzip", "-1", "-c", str(path)], stdout=packed, check=True)
        workers = args.cli_workers
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "spikedata", "encode", "shd", "--source", str(gz), "--out",
                        str(tmp / "cli.zarr"), "--quiet", "--workers", str(workers)], check=True,
                       stderr=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
        print(f"`spikedata encode shd` from the .h5.gz files, {workers} worker(s), process start, gunzip, "
              f"sha256 + md5 of the sources included: {seconds:.1f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


GSC_TOTAL = 105_829
GSC_LISTS = {"validation_list.txt": 9_981, "testing_list.txt": 11_005}


def gsc_templates(n: int, short: float, seed: int = 0) -> list[bytes]:
    """`n` WAV files (bytes): 1 s of 16 kHz noise with a real FSDD digit in it (noise alone without the sample
    data); a fraction `short` of them cut to 8,000-15,999 samples."""
    import io

    import soundfile

    rng = np.random.default_rng(seed)
    digits = sorted((SHARED / "speech" / "fsdd").glob("*.wav"))
    out = []
    for _ in range(n):
        clip = 0.003 * rng.standard_normal(16_000)
        if digits:
            audio, rate = read_audio(digits[int(rng.integers(len(digits)))])
            word = resample(audio, rate, 16_000)[:16_000]
            start = int(rng.integers(0, 16_000 - len(word) + 1))
            clip[start : start + len(word)] += word
        if rng.random() < short:
            clip = clip[: int(rng.integers(8_000, 16_000))]
        buffer = io.BytesIO()
        soundfile.write(buffer, np.clip(clip, -1, 1 - 2**-15), 16_000, subtype="PCM_16", format="WAV")
        out.append(buffer.getvalue())
    return out


def write_gsc(root: Path, count: int, short: float, seed: int = 0) -> None:
    """A Speech Commands v0.02 tree of `count` files in the published layout (see the module docstring)."""
    from spikedata.manifest import load_manifest

    rng = np.random.default_rng(seed)
    words = list(load_manifest("gsc").classes)
    templates = gsc_templates(300, short, seed)
    for word in words:
        (root / word).mkdir(parents=True)
    names = [f"{words[k % len(words)]}/{k:08x}_nohash_{k % 5}.wav" for k in range(count)]
    for name in names:
        (root / name).write_bytes(templates[int(rng.integers(len(templates)))])
    order = rng.permutation(count)
    start = 0
    for list_name, n in GSC_LISTS.items():
        k = round(n * count / GSC_TOTAL)
        (root / list_name).write_text("".join(names[i] + "\n" for i in order[start : start + k]))
        start += k
    (root / "_background_noise_").mkdir()
    (root / "_background_noise_" / "white_noise.wav").write_bytes(templates[0])


def gsc_benchmark(args) -> None:
    from spikedata.store import open_store

    tmp = Path(tempfile.mkdtemp(prefix="bench_gsc_"))
    try:
        started = time.perf_counter()
        write_gsc(tmp / "corpus", args.gsc_count, args.gsc_short)
        print(f"\nSpeech Commands: wrote {args.gsc_count:,} synthetic WAV files in "
              f"{time.perf_counter() - started:.0f} s")
        command = [sys.executable, "-m", "spikedata", "encode", "gsc", "--source", str(tmp / "corpus"), "--out",
                   str(tmp / "gsc.zarr"), "--quiet", "--workers", str(args.gsc_workers)]
        import os
        import resource

        load_before = os.getloadavg()[0]
        cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(command, check=True, stderr=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
        cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
        store = open_store(tmp / "gsc.zarr")
        stats = [store[s].attrs["encode_stats"] for s in store.splits]
        spikes = sum(st["spikes"] for st in stats)
        audio = sum(st["audio_s"] for st in stats)
        truncated = sum(st["truncated"] for st in stats)
        print(f"`spikedata encode gsc --workers {args.gsc_workers}`: {args.gsc_count:,} utterances ({audio:,.0f} s of "
              f"audio, {spikes / args.gsc_count:,.0f} spikes each, {truncated} truncated) in {seconds:.1f} s = "
              f"{args.gsc_count / seconds:,.0f} utterances/s")
        print(f"CPU time of the command and its workers: {cpu:.1f} s ({cpu / args.gsc_count * 1e3:.2f} ms per "
              f"utterance); load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after (other work on "
              "the machine takes its share of the cores)")
        scale = GSC_TOTAL / args.gsc_count
        what = f"extrapolated linearly to all {GSC_TOTAL:,}" if scale != 1 else f"all {GSC_TOTAL:,} utterances"
        print(f"{what}: {seconds * scale / 60:.1f} min wall as measured; {cpu * scale / 60:.1f} CPU-min, i.e. "
              f"{cpu * scale / 60 / 2:.1f} min on 2 otherwise idle cores (target < 10 min)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=8.0, help="seconds of 12.5 kHz speech for the Lyon timing")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", choices=("lyon", "shd", "gsc"), help="run only one part")
    ap.add_argument("--shd-spikes", type=int, default=8000, help="mean spikes per synthetic SHD sample")
    ap.add_argument("--shd-subset", type=int, default=300, help="SHD samples timed side by side with tonic")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="workers for the full SHD store")
    ap.add_argument("--cli-workers", type=int, default=1, help="workers of the timed `spikedata encode shd`")
    ap.add_argument("--gsc-count", type=int, default=GSC_TOTAL, help="WAV files of the synthetic Speech Commands")
    ap.add_argument("--gsc-workers", type=int, default=2, help="workers of the timed `spikedata encode gsc`")
    ap.add_argument("--gsc-short", type=float, default=0.1, help="fraction of clips shorter than 1 s")
    args = ap.parse_args()
    if args.only in (None, "lyon"):
        lyon_benchmark(args)
    if args.only in (None, "shd"):
        shd_benchmark(args)
    if args.only in (None, "gsc"):
        gsc_benchmark(args)


def lyon_benchmark(args) -> None:
    files = sorted((SHARED / "speech" / "fsdd").glob("*_theo_*.wav"))
    parts, total = [], 0
    for f in files:
        a, r = read_audio(f)
        parts.append(resample(a, r, RATE))
        total += len(parts[-1])
        if total >= args.seconds * RATE:
            break
    audio = np.concatenate(parts)[: int(args.seconds * RATE)]
    secs = len(audio) / RATE
    lyon_passive_ear(audio[:4000], RATE, 200)  # compile
    lyon_passive_ear(audio[:4000], RATE, 1)
    try:
        from lyon.calc import LyonCalc

        calc = LyonCalc()
    except ImportError:
        calc = None
    print(f"Lyon passive ear, {secs:.1f} s of 12.5 kHz speech, best of {args.repeats} (ms per second of audio)")
    print(f"{'decimation':>10} {'ours':>10} {'lyon pkg':>10} {'speed-up':>9}")
    per_s = {}
    for dec in (1, 200):
        ours = best(lambda d=dec: lyon_passive_ear(audio, RATE, d), args.repeats) / secs
        ref = best(lambda d=dec: calc.lyon_passive_ear(audio, RATE, d), 1 if dec == 1 else args.repeats) / secs \
            if calc else float("nan")
        per_s[dec] = ours
        print(f"{dec:>10} {ours * 1e3:>10.2f} {ref * 1e3:>10.2f} {ref / ours:>8.1f}x")

    rows = [np.array(line.split(), dtype=np.float32)
            for line in (SHARED / "reference" / "ti46_alpha_f1_u10_c0.lyon78.dat").read_text().splitlines()]
    coch = np.stack(rows)
    bsa_encode(coch, 1000)
    n = 200
    t = best(lambda: [bsa_encode(coch, 1000) for _ in range(n)], args.repeats) / n
    print(f"BSA (78 x 68 frames -> 1000 steps): {1 / t:,.0f} utterances/s ({t * 1e3:.2f} ms each)")

    utt_s = 68 * 200 / RATE
    per_utt = per_s[200] * utt_s + t
    print(f"TI46 letters, {TI46_UTTERANCES} utterances of ~{utt_s:.2f} s: Lyon + BSA {per_utt * 1e3:.1f} ms each, "
          f"{TI46_UTTERANCES * per_utt:.0f} s on one core (file reading and the store not included)")


if __name__ == "__main__":
    main()
