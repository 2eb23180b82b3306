#!/usr/bin/env bash
# Fetch here, where the package registry is reachable, what a GPU machine without network needs to run
# scripts/device_check.sh beyond its own Python (CPython 3.12 with a CUDA build of torch, triton, numpy, numba,
# typer, rich, matplotlib, pytest, PyYAML, packaging, typing_extensions): the store stack (zarr and the packages it
# needs that such a machine lacks) and setuptools (to install this tree offline), as wheels in .whl/; and the real
# MNIST test digits in .device_data/mnist/ when the sample data is beside the clone. Both folders are ignored by
# git; name them in the device run's `carry`. The versions are those the test suite runs with.
#
#   bash scripts/device_wheels.sh            (PY_VERSION=3.12 by default: the GPU machine's Python)
set -euo pipefail
cd "$(dirname "$0")/.."
PY_VERSION=${PY_VERSION:-3.12}
WHEELS=("zarr==3.1.6" "numcodecs==0.16.6" "donfig==0.8.1.post1" "google-crc32c==1.9.0" "setuptools==84.2.1")
rm -rf .whl
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PY_VERSION" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl "${WHEELS[@]}"
SAMPLE=${SPIKEDATA_SAMPLE_DATA:-../shared/data}
if [ -d "$SAMPLE/mnist" ]; then
  mkdir -p .device_data/mnist
  cp "$SAMPLE"/mnist/t10k-*.gz .device_data/mnist/
  cp "$SAMPLE/README.md" .device_data/
fi
ls -la .whl .device_data 2>/dev/null
