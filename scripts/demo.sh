#!/usr/bin/env bash
# `make demo`: encode the embedded MNIST-5k digits, inspect the store, train the demo network with HM2-BP on CPU
# and report test accuracy on the 1,000 held-out digits. Output goes to demo_out/.
set -euo pipefail
BIN=${1:-.venv/bin}
OUT=demo_out
mkdir -p "$OUT"
"$BIN/spikedata" encode mnist-5k --out "$OUT/mnist5k.zarr" --steps 400 --seed 0 --workers 2 --overwrite
"$BIN/spikedata" inspect "$OUT/mnist5k.zarr" --split train --plot "$OUT/mnist5k_train.png"
"$BIN/hm2bp" fit "$OUT/mnist5k.zarr" --preset demo --device cpu --out "$OUT/run" --overwrite
"$BIN/hm2bp" eval "$OUT/mnist5k.zarr" --checkpoint "$OUT/run/best.pt" --plot "$OUT/confusion.png"
echo "demo outputs in $OUT/: store, inspect plot, run directory (metrics.jsonl, learning curve, checkpoints)"
