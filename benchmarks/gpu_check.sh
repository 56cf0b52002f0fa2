#!/usr/bin/env bash
# One-shot GPU check: on a fresh machine with an NVIDIA GPU, build pyfill with CUDA kernels for
# that GPU only, add what the GPU tests need (torch with CUDA, CuPy, TensorRT, onnxruntime-gpu;
# each optional: a failed install is recorded, not fatal), run the CUDA and TensorRT tests, the
# GPU benchmarks and compute-sanitizer (memcheck, racecheck) on the CUDA kernels, and write one
# summary: gpu_check.json and gpu_check.md (device, driver, CUDA, versions, pass/fail per test,
# every benchmark figure) with the logs, under $OUT if set, else benchmarks/gpu_check_out/.
#
#   benchmarks/gpu_check.sh            # on a GPU machine; about 5 minutes on an H100
#   benchmarks/gpu_check.sh --dry-run  # every step that needs no GPU (also chosen when none is found)
#
# PYTHON picks the interpreter (default python3); when it is not a virtual environment the script
# makes one (.venv-gpu-check) and installs into that. GPU_CHECK_BUDGET_S (default 450) bounds the
# whole run: each step gets what is left, so the summary is always written.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
OUT_DIR="${OUT:-$ROOT/benchmarks/gpu_check_out}"
mkdir -p "$OUT_DIR"
WORK=$(mktemp -d)
LOG="$OUT_DIR/gpu_check.log"
: >"$LOG"
START=$(date +%s)
DEADLINE=$((START + ${GPU_CHECK_BUDGET_S:-450}))
export PYTHONUNBUFFERED=1 PYFILL_BENCH_JSON="$WORK/ratios.json"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"

note() { echo "== $*" | tee -a "$LOG"; }

# step NAME LIMIT_S CMD...: run CMD with at most LIMIT_S seconds (less if the budget is short),
# append its output to the log and one JSON line (name, status, seconds, exit code) to steps.
step() {
  local name=$1 limit=$2
  shift 2
  local left=$((DEADLINE - $(date +%s) - 20))  # keep 20 s for the summary
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -le 5 ]; then
    echo "{\"name\": \"$name\", \"status\": \"not run (time budget spent)\", \"seconds\": 0, \"rc\": null}" >>"$WORK/steps.jsonl"
    note "$name: not run, time budget spent"
    return 1
  fi
  note "$name (limit ${limit}s)"
  local t0 rc status
  t0=$(date +%s)
  timeout --kill-after=5 "$limit" "$@" >>"$LOG" 2>&1
  rc=$?
  case $rc in
    0) status=ok ;;
    124 | 137) status="timed out after ${limit}s" ;;
    *) status="failed (exit $rc)" ;;
  esac
  echo "{\"name\": \"$name\", \"status\": \"$status\", \"seconds\": $(($(date +%s) - t0)), \"rc\": $rc}" >>"$WORK/steps.jsonl"
  note "$name: $status"
  return $rc
}

# ---- the GPU ------------------------------------------------------------------------------------
SMI=$(command -v nvidia-smi || true)
if [ -n "$SMI" ] && "$SMI" --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader >"$WORK/gpus.csv" 2>>"$LOG" && [ -s "$WORK/gpus.csv" ]; then
  "$SMI" >"$WORK/nvidia-smi.txt" 2>&1 || true
  note "GPU: $(head -1 "$WORK/gpus.csv")"
else
  : >"$WORK/gpus.csv"
  [ "$DRY" = 0 ] && note "no usable NVIDIA GPU found: running the rehearsal (--dry-run) instead"
  DRY=1
fi
CUDA_MAJOR=$(grep -o 'CUDA Version: [0-9]*' "$WORK/nvidia-smi.txt" 2>/dev/null | grep -o '[0-9]*$' || true)
CUDA_MAJOR=${CUDA_MAJOR:-13}
[ -d /usr/local/cuda/bin ] && export PATH="$PATH:/usr/local/cuda/bin"

# ---- Python -----------------------------------------------------------------------------------
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.prefix == sys.base_prefix)'; then
  step "virtual environment" 60 "$PY" -m venv "$ROOT/.venv-gpu-check"
  PY="$ROOT/.venv-gpu-check/bin/python"
fi
PIP=("$PY" -m pip --disable-pip-version-check)
HELP=("$PY" "$ROOT/benchmarks/gpu_check.py")
INDEX=0
"${HELP[@]}" index-reachable >>"$LOG" 2>&1 && INDEX=1

step "pip >= 23.1" 120 "${PIP[@]}" install -q "pip>=23.1"  # config settings (-C) need it

step "build tools" 120 "${HELP[@]}" ensure scikit_build_core=scikit-build-core pybind11=pybind11
# A machine without a package index can be handed wheels in .wheelhouse/ (made elsewhere with
# pip download --python-version 3.12 --only-binary=:all: -d .wheelhouse jsonschema av).
if [ -d "$ROOT/.wheelhouse" ]; then
  step "wheels from .wheelhouse" 120 "${PIP[@]}" install -q --no-index --find-links "$ROOT/.wheelhouse" \
    $(ls "$ROOT/.wheelhouse" | sed -n 's/^\([A-Za-z0-9_]*\)-.*\.whl$/\1/p' | tr '_' '-')
fi
step "runtime dependencies" 180 "${HELP[@]}" ensure-project
step "test dependencies" 180 "${HELP[@]}" ensure pytest pytest_benchmark=pytest-benchmark scipy \
  cv2=opencv-python-headless safetensors onnx

# Build for this GPU only (PYFILL_CUDA=auto asks nvidia-smi), without build isolation so that the
# build directory is reused by a second run; on the rehearsal, auto finds no GPU: a CPU-only core.
# Editable, so that the tests run from this tree import the build.
step "build pyfill" 300 env PYFILL_CUDA=auto "${PIP[@]}" install --no-deps --no-build-isolation \
  -C build-dir=build/gpu-check -C build.verbose=true -e "$ROOT"
(cd /tmp && "$PY" -c "import json, pyfill._C as C; print(json.dumps(C.build_config()))") >"$WORK/build_config.json" 2>>"$LOG"

# ---- optional GPU packages --------------------------------------------------------------------
# Each is used where it already imports with a GPU, installed otherwise; on the rehearsal pip only
# resolves them (--dry-run), which proves they would install from the index.
optional() {
  local name=$1 probe=$2
  shift 2
  if "$PY" -c "$probe" >/dev/null 2>&1; then
    echo "{\"name\": \"$name\", \"status\": \"present\", \"seconds\": 0, \"rc\": 0}" >>"$WORK/steps.jsonl"
    note "$name: present"
  elif [ "$INDEX" = 0 ]; then
    echo "{\"name\": \"$name\", \"status\": \"not installed: no package index reachable\", \"seconds\": 0, \"rc\": null}" >>"$WORK/steps.jsonl"
    note "$name: absent, and no package index is reachable"
  elif [ "$DRY" = 1 ]; then
    step "$name (resolve only)" 120 "${PIP[@]}" install --dry-run --no-deps -q "$@"
  else
    step "$name" 240 "${PIP[@]}" install -q "$@"
  fi
}
optional "torch with CUDA" "import torch; assert torch.cuda.is_available() or $DRY" "torch==2.14.1"
optional "cupy" "import cupy; cupy.cuda.runtime.getDeviceCount()" "cupy-cuda${CUDA_MAJOR}x"
optional "tensorrt" "import tensorrt, onnxconverter_common; from cuda.bindings import runtime" \
  "tensorrt-cu${CUDA_MAJOR}" "cuda-python>=${CUDA_MAJOR},<$((CUDA_MAJOR + 1))" "onnxconverter-common>=1.14"

# ---- tests ------------------------------------------------------------------------------------
CUDA_TESTS=(tests/test_foundation.py tests/test_degrade_ops.py tests/test_degrade_pipeline.py
  tests/test_stroke_grid.py tests/test_engine.py tests/test_cuda_graphs.py tests/test_video_cuda.py tests/test_harness.py)
step "CUDA and TensorRT tests" 240 "$PY" -m pytest -p no:cacheprovider -q -rs \
  --junitxml="$OUT_DIR/tests.xml" "${CUDA_TESTS[@]}" tests/test_tensorrt.py tests/test_cuda_build.py \
  -k "cuda or graph or test_tensorrt"

# ---- benchmarks -------------------------------------------------------------------------------
step "GPU benchmarks" 200 "$PY" -m pytest -p no:cacheprovider -q -rs --benchmark-only \
  --benchmark-json="$OUT_DIR/bench.json" benchmarks/test_bench_gpu.py \
  benchmarks/test_bench_stroke_grid.py benchmarks/test_bench_engine.py benchmarks/test_bench_generate.py \
  benchmarks/test_bench_video_gpu.py -k "test_bench_gpu or test_bench_stroke_grid or cuda or video_gpu"

# ---- compute-sanitizer --------------------------------------------------------------------------
SANITIZER=$(command -v compute-sanitizer || true)
: >"$OUT_DIR/sanitizer.log"
if [ "$DRY" = 1 ] || [ -z "$SANITIZER" ]; then
  step "sanitizer program (host run)" 60 "${HELP[@]}" kernels --host
  [ -z "$SANITIZER" ] && note "compute-sanitizer not found: memcheck and racecheck not run"
else
  # memcheck (out-of-bounds and misaligned accesses, with device-allocation leaks), racecheck
  # (shared-memory hazards), initcheck (reads of uninitialised device memory), synccheck
  # (invalid __syncthreads use); each exits 9 on any report.
  for tool in memcheck racecheck initcheck synccheck; do
    extra=""
    [ "$tool" = memcheck ] && extra="--leak-check full"
    echo "== $tool" >>"$OUT_DIR/sanitizer.log"
    step "compute-sanitizer $tool" 120 bash -c "'$SANITIZER' --tool $tool $extra --error-exitcode 9 \
      '$PY' '$ROOT/benchmarks/gpu_check.py' kernels >>'$OUT_DIR/sanitizer.log' 2>&1"
  done
fi

# ---- onnxruntime-gpu: last, since it replaces the CPU onnxruntime the tests above used ----------
if "$PY" -c "import onnxruntime as o; assert 'CUDAExecutionProvider' in o.get_available_providers()" 2>/dev/null; then
  ORT_GPU=1
else
  optional "onnxruntime-gpu" "import sys; sys.exit(1)" onnxruntime-gpu
  ORT_GPU=$(("$DRY" == 0 && "$INDEX" == 1))
fi
if [ "$DRY" = 0 ] && [ "$ORT_GPU" = 1 ]; then
  step "onnxruntime CUDA provider" 60 "${HELP[@]}" onnxruntime-cuda "$WORK/ort_cuda.json"
fi

# ---- summary ----------------------------------------------------------------------------------
"${HELP[@]}" summary --work "$WORK" --out "$OUT_DIR" --dry-run "$DRY" --seconds $(($(date +%s) - START)) \
  >>"$LOG" 2>&1 || note "summary failed (see $LOG)"
note "summary: $OUT_DIR/gpu_check.md ($(($(date +%s) - START)) s)"
rm -rf "$WORK"
