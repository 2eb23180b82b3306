#!/usr/bin/env bash
# Fetch here, where the package registry is reachable, the wheels a GPU machine without network needs to run
# scripts/device_check.sh (the pure-Python store stack and google-crc32c for its Python), into .whl/, and copy the
# real MNIST test digits into .device_data/mnist/ when the sample data is beside the clone. Both folders are
# ignored by git; name them in the device run's `carry`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY_VERSION=${PY_VERSION:-3.12}
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PY_VERSION" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl "zarr==3.1.*" "numcodecs==0.16.*" "donfig==0.8.*" "google-crc32c==1.*" "typing-inspection" \
  "aedat==2.*" "soundfile" "fsspec"
SAMPLE=${SPIKEDATA_SAMPLE_DATA:-../shared/data}
if [ -d "$SAMPLE/mnist" ]; then
  mkdir -p .device_data/mnist
  cp "$SAMPLE"/mnist/t10k-*.gz .device_data/mnist/
  cp "$SAMPLE/README.md" .device_data/
fi
ls -la .whl .device_data 2>/dev/null
