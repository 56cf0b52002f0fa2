// Bindings of the CUDA degradation launchers (compiled only in CUDA builds). Arrays arrive as
// device pointers with their shape and the index of the device that holds them; the Python
// wrappers in pyfill/ops/degrade.py validate them. Every binding makes that device current for
// its launches, and the noise bindings take the CPU bindings' per-image seeds and streams.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/cuda_check.h"
#include "cuda/degrade.h"
#include "registry.h"

namespace py = pybind11;

namespace {

using pyfill::cuda_degrade::Dims;
using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;
using SeedArray = py::array_t<uint64_t, py::array::c_style | py::array::forcecast>;
using StreamArray = py::array_t<uint32_t, py::array::c_style | py::array::forcecast>;

Dims checked_dims(int64_t b, int64_t h, int64_t w, int64_t c, uintptr_t src, uintptr_t dst, int device) {
  if (b < 1 || h < 1 || w < 1 || c < 1) throw std::invalid_argument("empty image");
  if (b > INT32_MAX || h > INT32_MAX || w > INT32_MAX || c > INT32_MAX)
    throw std::invalid_argument("image dimensions too large");
  if (src == 0 || dst == 0) throw std::invalid_argument("null device pointer");
  if (device < 0) throw std::invalid_argument("device index must be >= 0");
  return Dims{static_cast<int>(b), static_cast<int>(h), static_cast<int>(w), static_cast<int>(c)};
}

// The per-image Philox keys of a noise op: one seed and one stream per image, as on the CPU.
struct Keys {
  std::vector<uint64_t> seeds;
  std::vector<uint32_t> streams;
};

Keys checked_keys(const SeedArray& seeds, const StreamArray& streams, int64_t b, const char* op) {
  if (seeds.ndim() != 1 || streams.ndim() != 1 || seeds.shape(0) != b || streams.shape(0) != b)
    throw std::invalid_argument(std::string(op) + ": seeds and streams need one entry per image");
  return Keys{std::vector<uint64_t>(seeds.data(), seeds.data() + b),
              std::vector<uint32_t>(streams.data(), streams.data() + b)};
}

std::vector<float> odd_1d(const FloatArray& k) {
  if (k.ndim() != 1 || k.shape(0) % 2 == 0) throw std::invalid_argument("kernel must be 1-D with odd length");
  return std::vector<float>(k.data(), k.data() + k.shape(0));
}

cudaStream_t as_stream(uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

const void* in_ptr(uintptr_t p) { return reinterpret_cast<const void*>(p); }
void* out_ptr(uintptr_t p) { return reinterpret_cast<void*>(p); }

}  // namespace

PYFILL_REGISTER(degrade_cuda) {
  namespace cd = pyfill::cuda_degrade;
  using pyfill::DeviceGuard;
  m.def("degrade_cuda_sep_filter", [](uintptr_t src, uintptr_t dst, int64_t b, int64_t h, int64_t w, int64_t c,
                                      bool u8, const FloatArray& kx, const FloatArray& ky, int device,
                                      uintptr_t stream) {
    const Dims d = checked_dims(b, h, w, c, src, dst, device);
    const auto vx = odd_1d(kx), vy = odd_1d(ky);
    py::gil_scoped_release release;
    DeviceGuard guard(device);
    cd::sep_filter(in_ptr(src), out_ptr(dst), d, u8, vx, vy, as_stream(stream));
  }, "Separable correlation on the GPU (see degrade_sep_filter).");

  m.def("degrade_cuda_filter2d", [](uintptr_t src, uintptr_t dst, int64_t b, int64_t h, int64_t w, int64_t c,
                                    bool u8, const FloatArray& kernel, int device, uintptr_t stream) {
    const Dims d = checked_dims(b, h, w, c, src, dst, device);
    if (kernel.ndim() != 2 || kernel.shape(0) != kernel.shape(1) || kernel.shape(0) % 2 == 0)
      throw std::invalid_argument("filter2d: kernel must be square with an odd size");
    const int k = static_cast<int>(kernel.shape(0));
    const std::vector<float> v(kernel.data(), kernel.data() + k * k);
    py::gil_scoped_release release;
    DeviceGuard guard(device);
    cd::filter2d(in_ptr(src), out_ptr(dst), d, u8, v, k, as_stream(stream));
  }, "2-D correlation on the GPU (see degrade_filter2d).");

  m.def("degrade_cuda_resize", [](uintptr_t src, uintptr_t dst, int64_t b, int64_t h, int64_t w, int64_t c,
                                  bool u8, int64_t oh, int64_t ow, int interp, int device, uintptr_t stream) {
    const Dims d = checked_dims(b, h, w, c, src, dst, device);
    if (oh < 1 || ow < 1 || oh > INT32_MAX || ow > INT32_MAX) throw std::invalid_argument("resize: bad output size");
    if (interp < 0 || interp > 3) throw std::invalid_argument("resize: unknown interpolation");
    py::gil_scoped_release release;
    DeviceGuard guard(device);
    cd::resize(in_ptr(src), out_ptr(dst), d, u8, static_cast<int>(oh), static_cast<int>(ow), interp, as_stream(stream));
  }, "Resize on the GPU (see degrade_resize).");

  m.def("degrade_cuda_gaussian_noise", [](uintptr_t src, uintptr_t dst, int64_t b, int64_t h, int64_t w, int64_t c,
                                          bool u8, float sigma, float mean, bool gray, const SeedArray& seeds,
                                          const StreamArray& streams, int device, uintptr_t stream) {
    const Dims d = checked_dims(b, h, w, c, src, dst, device);
    if (!(sigma >= 0.0f) || !std::isfinite(mean)) throw std::invalid_argument("gaussian_noise: bad sigma or mean");
    const Keys keys = checked_keys(seeds, streams, b, "gaussian_noise");
    py::gil_scoped_release release;
    DeviceGuard guard(device);
    cd::gaussian_noise(in_ptr(src), out_ptr(dst), d, u8, sigma, mean, gray, keys.seeds.data(), keys.streams.data(),
                       as_stream(stream));
  }, "Gaussian noise on the GPU with per-image Philox streams (seeds: uint64 (B,), streams: uint32 (B,)).");

  m.def("degrade_cuda_poisson_noise", [](uintptr_t src, uintptr_t dst, int64_t b, int64_t h, int64_t w, int64_t c,
                                         bool u8, float scale, bool gray, const SeedArray& seeds,
                                         const StreamArray& streams, int device, uintptr_t stream) {
    const Dims d = checked_dims(b, h, w, c, src, dst, device);
    if (!(scale >= 0.0f)) throw std::invalid_argument("poisson_noise: scale must be >= 0");
    const Keys keys = checked_keys(seeds, streams, b, "poisson_noise");
    py::gil_scoped_release release;
    DeviceGuard guard(device);
    cd::poisson_noise(in_ptr(src), out_ptr(dst), d, u8, scale, gray, keys.seeds.data(), keys.streams.data(),
                      as_stream(stream));
  }, "Poisson noise on the GPU with per-image Philox streams (seeds: uint64 (B,), streams: uint32 (B,)).");

  m.def("degrade_cuda_salt_pepper", [](uintptr_t src, uintptr_t dst, int64_t b, int64_t h, int64_t w, int64_t c,
                                       bool u8, float amount, const SeedArray& seeds, const StreamArray& streams,
                                       int device, uintptr_t stream) {
    const Dims d = checked_dims(b, h, w, c, src, dst, device);
    if (!(amount >= 0.0f && amount <= 1.0f)) throw std::invalid_argument("salt_pepper: amount must be in [0, 1]");
    const Keys keys = checked_keys(seeds, streams, b, "salt_pepper");
    py::gil_scoped_release release;
    DeviceGuard guard(device);
    cd::salt_pepper(in_ptr(src), out_ptr(dst), d, u8, amount, keys.seeds.data(), keys.streams.data(), as_stream(stream));
  }, "Salt-and-pepper noise on the GPU with per-image Philox streams (seeds: uint64 (B,), streams: uint32 (B,)).");

  m.def("degrade_cuda_jpeg", [](uintptr_t src, uintptr_t dst, int64_t b, int64_t h, int64_t w, int64_t c,
                                bool u8, int quality, bool sub420, int device, uintptr_t stream) {
    const Dims d = checked_dims(b, h, w, c, src, dst, device);
    if (c != 3) throw std::invalid_argument("jpeg: images must have 3 channels");
    if (quality < 1 || quality > 100) throw std::invalid_argument("jpeg: quality must be in 1..100");
    py::gil_scoped_release release;
    DeviceGuard guard(device);
    cd::jpeg(in_ptr(src), out_ptr(dst), d, u8, quality, sub420, as_stream(stream));
  }, "JPEG's lossy path on the GPU (see degrade_jpeg).");
}
