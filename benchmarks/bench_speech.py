"""Speech front end: Lyon's passive ear (ours vs the `lyon` package), BSA, and the TI46 letters extrapolated.

    .venv/bin/python benchmarks/bench_speech.py [--seconds 8] [--repeats 3]

Lyon is timed on real FSDD speech (concatenated, resampled to 12.5 kHz) at decimation 1 and 200 (TI46);
BSA on the reference's TI46 cochleagram (78 x 68 frames, 1000 steps). The TI46 letters subset (10,770
utterances) is extrapolated with the reference utterance's length (68 frames of 16 ms = 1.09 s): TI46 is
12.5 kHz already, so no resampling.
"""

from __future__ import annotations

import argparse

import numpy as np
from sample_data import SAMPLE_DATA
from timing import best

from spikedata.encoders.bsa import bsa_encode
from spikedata.encoders.lyon import lyon_passive_ear
from spikedata.io.audio import read_audio, resample

SHARED = SAMPLE_DATA
RATE = 12500
TI46_UTTERANCES = 10770


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=8.0, help="seconds of 12.5 kHz speech for the Lyon timing")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

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
