// Image layout conversion for the Engine's per-call path: uint8 HWC <-> float32 CHW in one pass
// each way, with the model's value range folded into one multiply-add. The row loops are
// multi-versioned (simd.h).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>

#include "parallel.h"
#include "registry.h"
#include "simd.h"

namespace py = pybind11;

namespace pyfill {
namespace {

// One row: src (W, C) uint8 -> dst planes (C, row stride plane) float32, v * scale + offset.
PYFILL_MULTIVERSION
void row_u8_to_f32(const uint8_t* src, float* dst, int64_t w, int64_t c, int64_t plane, float scale,
                   float offset) {
  for (int64_t ch = 0; ch < c; ++ch) {
    float* out = dst + ch * plane;
    const uint8_t* in = src + ch;
    for (int64_t x = 0; x < w; ++x) out[x] = static_cast<float>(in[x * c]) * scale + offset;
  }
}

// One row: planes (C, plane) float32 -> dst (W, C) uint8, round half to even, clamp, NaN -> 0.
PYFILL_MULTIVERSION
void row_f32_to_u8(const float* src, uint8_t* dst, int64_t w, int64_t c, int64_t plane, float scale,
                   float offset) {
  for (int64_t ch = 0; ch < c; ++ch) {
    const float* in = src + ch * plane;
    uint8_t* out = dst + ch;
    for (int64_t x = 0; x < w; ++x) {
      float v = in[x] * scale + offset;
      v = v > 0.0f ? (v < 255.0f ? v : 255.0f) : 0.0f;  // NaN compares false: 0
      out[x * c] = static_cast<uint8_t>(std::nearbyint(v));
    }
  }
}

py::array_t<float> image_u8_to_chw(py::array_t<uint8_t, py::array::c_style> img, float scale, float offset) {
  if (img.ndim() != 3) throw std::invalid_argument("image_u8_to_chw: expected an (H, W, C) uint8 array");
  const int64_t h = img.shape(0), w = img.shape(1), c = img.shape(2);
  py::array_t<float> out({c, h, w});
  const uint8_t* src = img.data();
  float* dst = out.mutable_data();
  {
    py::gil_scoped_release release;
    parallel_for(h, [&](int64_t y0, int64_t y1) {
      for (int64_t y = y0; y < y1; ++y) row_u8_to_f32(src + y * w * c, dst + y * w, w, c, h * w, scale, offset);
    }, 64);
  }
  return out;
}

py::array_t<uint8_t> chw_to_image_u8(py::array_t<float, py::array::c_style> x, float scale, float offset) {
  if (x.ndim() != 3) throw std::invalid_argument("chw_to_image_u8: expected a (C, H, W) float32 array");
  const int64_t c = x.shape(0), h = x.shape(1), w = x.shape(2);
  py::array_t<uint8_t> out({h, w, c});
  const float* src = x.data();
  uint8_t* dst = out.mutable_data();
  {
    py::gil_scoped_release release;
    parallel_for(h, [&](int64_t y0, int64_t y1) {
      for (int64_t y = y0; y < y1; ++y) row_f32_to_u8(src + y * w, dst + y * w * c, w, c, h * w, scale, offset);
    }, 64);
  }
  return out;
}

}  // namespace
}  // namespace pyfill

PYFILL_REGISTER(convert) {
  m.def("dispatch_isa", &pyfill::dispatch_isa,
        "The instruction set the multi-versioned hot loops run on this CPU: avx512f, avx2, baseline or none.");
  m.def("image_u8_to_chw", &pyfill::image_u8_to_chw, py::arg("img"), py::arg("scale"), py::arg("offset"),
        "uint8 (H, W, C) C-contiguous -> float32 (C, H, W) with v * scale + offset, in one pass; parallel over rows.");
  m.def("chw_to_image_u8", &pyfill::chw_to_image_u8, py::arg("x"), py::arg("scale"), py::arg("offset"),
        "float32 (C, H, W) C-contiguous -> uint8 (H, W, C): v * scale + offset rounded half to even, clamped to "
        "[0, 255], NaN -> 0; parallel over rows.");
}
