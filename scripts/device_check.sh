#!/usr/bin/env bash
# One check of the CUDA trainer on a GPU machine without network, writing one report file
# (REPORT_DIR/device_report.txt):
#   1. setup: the wheels carried in .whl/ (scripts/device_wheels.sh: what the check needs beyond torch and triton)
#      and this tree itself, installed into temporary folders (nothing of the machine's Python is changed);
#   2. the environment (GPU, driver, Python, torch, triton);
#   3. the backend comparisons, the batch-of-one and label tests and the tests marked `cuda`, on CUDA tensors
#      (spikes bit-equal to numba, gradients to 1e-6, a training step with no host synchronisation), and the check
#      that a step on shape-only tensors launches what the real step launches;
#   4. benchmarks/bench_gpu.py (samples/s, peak memory, kernel launches per step; numba on CPU beside);
#   5. a short `hm2bp fit` on CUDA with the triton kernels, and `hm2bp eval` of its checkpoint.
# Every step has its own time limit; the limits add up to under 7 minutes.
#
#   bash scripts/device_check.sh [REPORT_DIR]             (default: $OUT when set, else device_out/)
#   bash scripts/device_check.sh --dry-run [REPORT_DIR]   (CPU, Triton's interpreter, tiny sizes; run by the tests)
#
# The dry run runs every step of the same script on CPU with tiny networks, so that the script cannot rot; it
# skips only what needs a GPU or the GPU machine's Python (and says so): the carried wheels, the tests marked
# `cuda`, the GPU timings, training on CUDA.
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=0
if [ "${1:-}" = "--dry-run" ]; then
  DRY=1
  shift
fi
REPORT_DIR=${1:-${OUT:-device_out}}
mkdir -p "$REPORT_DIR"
REPORT="$REPORT_DIR/device_report.txt"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
# step limits on the GPU machine in seconds: setup, environment, tests, benchmark, fit + eval (under 420 together);
# the dry run, whose steps run Triton's interpreter on a CPU maybe shared with other work, gets SCALE times as long
L_SETUP=40 L_ENV=20 L_TESTS=170 L_BENCH=100 L_FIT=70
TOTAL=$((L_SETUP + L_ENV + L_TESTS + L_BENCH + L_FIT))
SCALE=1
WORK=$(mktemp -d "${TMPDIR:-/tmp}/hm2bp-device-check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
# the installed tree first (it has hm2bp.cli, which lives in cli/ in the tree), the wheels, then the tree (tests/)
export PYTHONPATH="$WORK/project:$WORK/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
[ -d .device_data ] && export SPIKEDATA_SAMPLE_DATA=$PWD/.device_data
if [ $DRY -eq 1 ]; then
  export TRITON_INTERPRET=1 CUDA_VISIBLE_DEVICES=""
  SCALE=4
  DEVICE=cpu
  TESTS=(-m cuda)  # on CPU every one of them skips, with its reason
  BENCH=(--tiny --steps 36 --batches 2 --cnn-batches 2 --count-batch 2 --timed 1 --repeats 1 --cpu-batch 2)
  FIT="4 2 14 36 10 2 1"  # train, test samples, units, steps, hidden neurons, batch, epochs
else
  DEVICE=cuda
  TESTS=(-k "not every_kernel_variant_compiles")
  BENCH=(--batches 64,256,1024 --cnn-batches 16,64 --timed 3 --repeats 3 --cpu-batch 32)
  FIT="1024 256 784 400 800 256 2"
fi

step() {  # step NAME LIMIT COMMAND...: run with a time limit (times SCALE), record its exit status
  local name=$1 limit=$(($2 * SCALE))
  shift 2
  echo "== $name (limit ${limit} s)"
  local t0=$SECONDS
  timeout "$limit" "$@"
  local rc=$?
  echo "== $name: exit $rc after $((SECONDS - t0)) s$([ $rc -eq 124 ] && echo ' (time limit)')"
  [ $rc -eq 0 ] || status=1
}

setup() {
  if [ $DRY -eq 1 ]; then
    echo "dry run: the wheels of .whl/ are not installed (they are built for the GPU machine's Python)"
  elif ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" .whl/*.whl \
      || return 1
  else
    echo "no .whl/: using the packages of this machine's Python (scripts/device_wheels.sh prepares the wheels)"
  fi
  $PY -c "import zarr, numcodecs, donfig, google_crc32c, numba, typer, rich, pytest" || {
    echo "a package the check needs is missing: run scripts/device_wheels.sh where the registry is reachable"
    return 1
  }
  # a copy of the package sources, built and installed offline (the build happens in the copy, not in this tree)
  mkdir -p "$WORK/src"
  cp -rL pyproject.toml README.md spikedata hm2bp cli data_manifests "$WORK/src/" || return 1
  $PY -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --no-cache-dir --target \
    "$WORK/project" "$WORK/src" || return 1
  # (in a development environment with an editable install, that install is imported first: the same sources)
  [ -f "$WORK/project/hm2bp/cli/__init__.py" ] && [ -f "$WORK/project/hm2bp/presets/mnist-mlp.toml" ] || return 1
  $PY -c "import hm2bp.cli, hm2bp.kernels.triton.aot; print('hm2bp imported from', hm2bp.__file__)"
}

environment() {
  if [ $DRY -eq 1 ]; then
    echo "dry run: no GPU; CPU tensors under Triton's interpreter, tiny networks"
  else
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  fi
  $PY -c "import sys, torch, triton; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', \
torch.version.cuda, 'triton', triton.__version__, 'device', \
torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')"
}

fit_and_eval() {
  FIT="$FIT" DEVICE=$DEVICE $PY - <<'EOF'
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.hm2bp.synthetic import make_store

n_train, n_test, units, steps, hidden, batch, epochs = (int(v) for v in os.environ["FIT"].split())
device = os.environ["DEVICE"]
root = Path(tempfile.mkdtemp())
store = make_store(root / "s.zarr", n_train=n_train, n_test=n_test, n_units=units, n_steps=steps)
cfg = root / "mlp.toml"
cfg.write_text(f"steps = {steps}\n[[layers]]\nname = 'hidden'\nsize = {hidden}\nthreshold = 20.0\n[[layers]]\n"
               "name = 'output'\nsize = 4\nthreshold = 8.0\nlateral_inhibition = 1.0\n"
               f"[train]\nbatch_size = {batch}\nepochs = {epochs}\nlr_batch_scaling = 'sqrt'\n")
fit = [sys.executable, "-m", "hm2bp", "fit", str(store), "--config", str(cfg), "--device", device, "--backend",
       "triton", "--out", str(root / "run"), "--quiet"]
print(" ".join(fit), flush=True)
subprocess.run(fit, check=True)
ev = [sys.executable, "-m", "hm2bp", "eval", str(store), "--checkpoint", str(root / "run" / "best.pt"), "--device",
      device, "--backend", "triton", "--plot", str(root / "cm.png")]
print(" ".join(ev), flush=True)
subprocess.run(ev, check=True)
EOF
}

{
  status=0
  echo "device check$([ $DRY -eq 1 ] && echo ' (dry run)') $(date -u +%Y-%m-%dT%H:%M:%SZ), commit" \
    "$(git rev-parse --short HEAD 2>/dev/null || echo unknown); step limits add up to $TOTAL s" \
    "$([ $DRY -eq 1 ] && echo "on the GPU machine (dry run: $SCALE times each)")"
  if [ "$TOTAL" -ge 420 ]; then
    echo "the step limits add up to $TOTAL s, over the device check's 420 s"
    exit 2
  fi
  export -f setup environment fit_and_eval
  export DRY PY WORK DEVICE FIT
  step setup "$L_SETUP" bash -c setup
  step environment "$L_ENV" bash -c environment
  step tests "$L_TESTS" $PY -m pytest -q -p no:cacheprovider -rs "${TESTS[@]}" tests/hm2bp/test_backends.py \
    tests/hm2bp/test_triton_edges.py tests/hm2bp/test_triton_compile.py tests/hm2bp/test_loader.py
  step bench_gpu "$L_BENCH" $PY benchmarks/bench_gpu.py --backends triton "${BENCH[@]}"
  step "hm2bp fit + eval on $DEVICE" "$L_FIT" bash -c fit_and_eval
  if [ $DRY -eq 1 ]; then
    echo "dry run: skipped as needing a GPU: the tests marked cuda (listed above), bench_gpu's timings and peak" \
      "memory, training on CUDA"
  fi
  echo "device check: $([ $status -eq 0 ] && echo all steps passed || echo SOME STEPS FAILED)"
  exit $status
} 2>&1 | tee "$REPORT"
exit "${PIPESTATUS[0]}"
