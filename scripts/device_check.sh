#!/usr/bin/env bash
# One check of the CUDA trainer on a GPU machine, in under 8 minutes on one H200, writing one report file:
#   1. the environment (GPU, driver, torch, triton);
#   2. the tests marked `cuda` and the backend comparisons on the GPU (spikes bit-equal to numba, gradients to 1e-6,
#      a training step with no host synchronisation);
#   3. benchmarks/bench_gpu.py (samples/s, peak memory, kernel launches per step, per backend; numba beside);
#   4. a short `hm2bp fit` on CUDA with the triton kernels, and `hm2bp eval` of its checkpoint.
#
#   bash scripts/device_check.sh [REPORT_DIR]        (default: $OUT when set, else device_out/)
#
# It needs only a Python with a CUDA build of torch and triton. Missing pure-Python packages (zarr and what it
# needs, when the machine has none) can be provided as wheels in .whl/ (fetch them with
# scripts/device_wheels.sh beforehand); the real MNIST test digits in .device_data/mnist/ are used when present
# (SPIKEDATA_SAMPLE_DATA), random rasters of the same density otherwise.
set -uo pipefail
cd "$(dirname "$0")/.."
REPORT_DIR=${1:-${OUT:-device_out}}
mkdir -p "$REPORT_DIR"
REPORT="$REPORT_DIR/device_report.txt"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-}
[ -d .device_data ] && export SPIKEDATA_SAMPLE_DATA=$PWD/.device_data
step() {  # step NAME TIMEOUT_S COMMAND...: run with a time limit, record its exit status
  local name=$1 limit=$2
  shift 2
  echo "== $name (limit ${limit} s)"
  local t0=$SECONDS
  timeout "$limit" "$@"
  local rc=$?
  echo "== $name: exit $rc after $((SECONDS - t0)) s"
  [ $rc -eq 0 ] || status=1
}
{
  status=0
  echo "device check $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1
  $PY -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__, 'device', torch.cuda.get_device_name(0))"
  step "cuda tests" 240 $PY -m pytest -q -p no:cacheprovider -x tests/hm2bp/test_backends.py tests/hm2bp/test_loader.py
  step "bench_gpu" 240 $PY benchmarks/bench_gpu.py --batches 64,256,1024 --cnn-batches 16,64 --backends triton,torch \
    --timed 3 --repeats 3 --cpu-batch 32 --out "$REPORT_DIR/bench_gpu.json"
  step "hm2bp fit on CUDA" 120 $PY - <<'EOF'
import subprocess, sys, tempfile
from pathlib import Path
from tests.hm2bp._synthetic import make_store

root = Path(tempfile.mkdtemp())
store = make_store(root / "s.zarr", n_train=2048, n_test=512, n_units=784, n_steps=400)
cfg = root / "mlp.toml"
cfg.write_text("steps = 400\n[[layers]]\nname = 'hidden'\nsize = 800\nthreshold = 20.0\n[[layers]]\n"
               "name = 'output'\nsize = 4\nthreshold = 8.0\nlateral_inhibition = 1.0\n"
               "[train]\nbatch_size = 256\nepochs = 2\nlr_batch_scaling = 'sqrt'\n")
fit = [sys.executable, "-m", "hm2bp", "fit", str(store), "--config", str(cfg), "--device", "cuda", "--backend",
       "triton", "--out", str(root / "run"), "--quiet"]
print(" ".join(fit), flush=True)
subprocess.run(fit, check=True)
ev = [sys.executable, "-m", "hm2bp", "eval", str(store), "--checkpoint", str(root / "run" / "best.pt"), "--device",
      "cuda", "--backend", "triton", "--plot", str(root / "cm.png")]
subprocess.run(ev, check=True)
EOF
  echo "device check: $([ $status -eq 0 ] && echo all steps passed || echo SOME STEPS FAILED)"
  exit $status
} 2>&1 | tee "$REPORT"
exit "${PIPESTATUS[0]}"
