#!/usr/bin/env bash
# Build pyfill's compiled core (_C, CPU code) with AddressSanitizer and UndefinedBehaviorSanitizer
# and run the ops tests (and the short fuzz run of the ops) against it. Any heap overflow,
# use-after-free or undefined behaviour in the C++ aborts the run with the sanitizer's report.
#
#   benchmarks/sanitize.sh                  # with the python on PATH (pyfill's test deps installed)
#   PYTHON=/path/to/python benchmarks/sanitize.sh [extra pytest args]
#
# The build goes to build/sanitize; the tests import a copy of the package (under
# build/sanitize/site) holding the sanitized _C, from a throwaway virtual environment that sees
# the interpreter's installed packages but not its pyfill. libasan is preloaded, as Python
# itself is not built with it (with libstdc++); leak detection is off (the interpreter keeps memory to exit).
# OpenVINO aborts when loaded under the preloaded libasan, so the one test that queries it
# (pyfill doctor's runtime report) is left out.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-python}
BUILD="$ROOT/build/sanitize"
mkdir -p "$BUILD"

"$PY" -c "import pybind11" 2>/dev/null || { echo "sanitize.sh: needs pybind11 (pip install pybind11)"; exit 2; }
CXX=${CXX:-g++}
LIBASAN=$("$CXX" -print-file-name=libasan.so)
[ -f "$LIBASAN" ] || { echo "sanitize.sh: $CXX has no libasan ($LIBASAN)"; exit 2; }
# libstdc++ is preloaded too: Python does not link it, and ASan's C++ exception interceptor
# must find it at start-up (otherwise the first exception _C throws aborts the process).
LIBSTDCXX=$("$CXX" -print-file-name=libstdc++.so.6)

echo "== build _C with -fsanitize=address,undefined ($("$CXX" --version | head -1))"
cmake -S "$ROOT" -B "$BUILD/cmake" -DCMAKE_CXX_COMPILER="$CXX" -DPYFILL_CUDA=off -DPYFILL_SANITIZE=ON \
  -DPython_EXECUTABLE="$("$PY" -c 'import sys; print(sys.executable)')" \
  -Dpybind11_DIR="$("$PY" -m pybind11 --cmakedir)" >"$BUILD/cmake.log" 2>&1 || { cat "$BUILD/cmake.log"; exit 1; }
cmake --build "$BUILD/cmake" -j "${CMAKE_BUILD_PARALLEL_LEVEL:-2}" >>"$BUILD/cmake.log" 2>&1 || { tail -50 "$BUILD/cmake.log"; exit 1; }

# A copy of the package with the sanitized module in it.
rm -rf "$BUILD/site"
mkdir -p "$BUILD/site"
cp -r "$ROOT/pyfill" "$BUILD/site/pyfill"
find "$BUILD/site/pyfill" -name "_C*.so" -delete
cp "$BUILD"/cmake/_C*.so "$BUILD/site/pyfill/"

# A virtual environment that sees the interpreter's packages (numpy, pytest...) through a path
# entry, which skips the .pth files there (an editable pyfill install redirects imports).
if [ ! -x "$BUILD/venv/bin/python" ]; then
  "$PY" -m venv --without-pip "$BUILD/venv"
fi
PURELIB=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
PLATLIB=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['platlib'])")
VENV_SITE=$("$BUILD/venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
printf '%s\n%s\n' "$PURELIB" "$PLATLIB" >"$VENV_SITE/pyfill-sanitize-deps.pth"

export PYTHONPATH="$BUILD/site"
export LD_PRELOAD="$LIBASAN $LIBSTDCXX"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export PYFILL_SANITIZED=1
cd "$BUILD"  # not the source tree, so the copy under site/ is the pyfill imported
"$BUILD/venv/bin/python" -c "import pyfill, pyfill._C as C; print('sanitized _C:', C.__file__)"
echo "== ops tests under ASan + UBSan"
"$BUILD/venv/bin/python" -m pytest -q -p no:cacheprovider -p no:randomly --rootdir "$ROOT" -c "$ROOT/pyproject.toml" \
  "$ROOT/tests/test_convert_ops.py" "$ROOT/tests/test_degrade_ops.py" "$ROOT/tests/test_stroke_grid.py" \
  "$ROOT/tests/test_fuzz.py" -k "not cuda and not doctor" "$@"
echo "== sanitizers: no reports"
