// Build facts, CPU facts, thread control and device probes of pyfill._C.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <thread>

#include "cuda_api.h"
#include "parallel.h"
#include "registry.h"

namespace py = pybind11;

namespace pyfill {

namespace {
std::atomic<int> g_num_threads{0};  // 0 = hardware concurrency

int hardware_threads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

std::string compiled_simd() {
#if defined(__AVX512F__)
  return "avx512f";
#elif defined(__AVX2__)
  return "avx2";
#elif defined(__AVX__)
  return "avx";
#elif defined(__SSE4_2__)
  return "sse4.2";
#elif defined(__SSE2__) || defined(_M_X64)
  return "sse2";
#elif defined(__ARM_NEON)
  return "neon";
#else
  return "none";
#endif
}

// The widest vector extension this CPU offers (the compiler may use less: see compiled_simd).
std::string cpu_simd() {
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return "avx512f";
  if (__builtin_cpu_supports("avx2")) return "avx2";
  if (__builtin_cpu_supports("avx")) return "avx";
  if (__builtin_cpu_supports("sse4.2")) return "sse4.2";
  return "sse2";
#elif defined(__ARM_NEON)
  return "neon";
#else
  return "unknown";
#endif
}

std::string compiler() {
#if defined(__clang__)
  return std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  return "gcc " + std::to_string(__GNUC__) + "." + std::to_string(__GNUC_MINOR__) + "." +
         std::to_string(__GNUC_PATCHLEVEL__);
#else
  return "unknown";
#endif
}
}  // namespace

int num_threads() {
  const int n = g_num_threads.load(std::memory_order_relaxed);
  return n > 0 ? n : hardware_threads();
}

void set_num_threads(int n) { g_num_threads.store(std::max(0, n), std::memory_order_relaxed); }

#ifndef PYFILL_WITH_CUDA
bool cuda_compiled() { return false; }
std::string cuda_compiled_version() { return ""; }
std::string cuda_compiled_archs() { return ""; }
std::vector<CudaDevice> cuda_devices(std::string* reason) {
  if (reason) *reason = "pyfill was built without CUDA kernels";
  return {};
}
#endif

}  // namespace pyfill

PYFILL_REGISTER(core) {
  using namespace pyfill;
  m.def("build_config", [] {
    py::dict d;
#ifdef PYFILL_VERSION_INFO
    d["version"] = std::string(PYFILL_VERSION_INFO);
#endif
    d["compiler"] = compiler();
    d["simd_compiled"] = compiled_simd();
    d["threading"] = "std::thread";
    d["cuda"] = cuda_compiled();
    d["cuda_version"] = cuda_compiled_version();
    d["cuda_archs"] = cuda_compiled_archs();
    return d;
  }, "Facts fixed when this extension was compiled.");
  m.def("cpu_simd", &cpu_simd, "Widest SIMD extension the running CPU supports.");
  m.def("hardware_threads", &hardware_threads, "Hardware threads of this machine.");
  m.def("get_num_threads", &num_threads, "Worker threads the CPU kernels use per call.");
  m.def("set_num_threads", &set_num_threads, py::arg("n"),
        "Set the worker threads of the CPU kernels; 0 restores the hardware default.");
  m.def("cuda_devices", [] {
    std::string reason;
    py::list out;
    const auto devices = cuda_devices(&reason);
    for (const auto& dev : devices) {
      py::dict d;
      d["index"] = dev.index;
      d["name"] = dev.name;
      d["compute_capability"] = py::make_tuple(dev.major, dev.minor);
      d["total_memory"] = dev.total_memory;
      d["multiprocessors"] = dev.multiprocessors;
      out.append(d);
    }
    return py::make_tuple(out, reason);
  }, "(devices, reason): CUDA devices visible now, probed at call time; reason says why none.");
}
