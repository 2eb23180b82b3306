#!/usr/bin/env bash
# `make demo`: encode the embedded MNIST-5k digits, inspect the store, train the demo network with HM2-BP on CPU,
# choosing best.pt on a validation split held out of the 4,000 training digits, and report the test accuracy
# (1,000 held-out digits) of that epoch and of the final one. Output goes to demo_out/.
set -euo pipefail
BIN=${1:-.venv/bin}
OUT=demo_out
mkdir -p "$OUT"
"$BIN/spikedata" encode mnist-5k --out "$OUT/mnist5k.zarr" --steps 400 --seed 0 --workers 2 --overwrite
"$BIN/spikedata" inspect "$OUT/mnist5k.zarr" --plot "$OUT/mnist5k.png"
"$BIN/spikedata" inspect "$OUT/mnist5k.zarr" --split test --sample 0 --plot "$OUT/mnist5k_test_sample0.png"
"$BIN/hm2bp" fit "$OUT/mnist5k.zarr" --preset demo --device cpu --out "$OUT/run" --overwrite --val-fraction 0.1
"$BIN/hm2bp" eval "$OUT/mnist5k.zarr" --checkpoint "$OUT/run/best.pt" --plot "$OUT/confusion.png"
"$BIN/python" - "$OUT/run/metrics.jsonl" <<'PY'
import sys

from hm2bp.train.metrics import read_metrics

last = read_metrics(sys.argv[1])[-1]
print(f"\ndemo result: test accuracy {100 * last['test_at_best']:.2f} % at epoch {last['best_epoch'] + 1} "
      f"(best.pt, chosen on the validation split: {100 * last['best_accuracy']:.2f} %); "
      f"final epoch {last['epoch'] + 1}: test {100 * last['test_accuracy']:.2f} %")
PY
echo "demo outputs in $OUT/: store, inspect plots, run directory (metrics.jsonl, learning curve, checkpoints)"
