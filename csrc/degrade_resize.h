// Resampling tables with OpenCV's pixel conventions (modules/imgproc/src/resize.cpp). A resize is
// separable: every output column (row) is a weighted sum of `taps` source columns (rows). Host
// code shared by the C++ and CUDA kernels.
#pragma once

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

namespace pyfill {
namespace degrade {

enum Interp : int { kNearest = 0, kBilinear = 1, kBicubic = 2, kArea = 3 };

struct AxisTable {
  int taps = 0;             // weights per output index
  std::vector<int> index;   // [dst * taps]: source index of each tap (in range)
  std::vector<float> weight;  // [dst * taps]
};

namespace detail {

inline void cubic_coeffs(float x, float* c) {
  constexpr float A = -0.75f;
  c[0] = ((A * (x + 1) - 5 * A) * (x + 1) + 8 * A) * (x + 1) - 4 * A;
  c[1] = ((A + 2) * x - (A + 3)) * x * x + 1;
  c[2] = ((A + 2) * (1 - x) - (A + 3)) * (1 - x) * (1 - x) + 1;
  c[3] = 1.f - c[0] - c[1] - c[2];
}

// OpenCV's computeResizeAreaTab: the source cells an output cell covers, by covered fraction.
inline AxisTable area_table(int src, int dst, double scale) {
  std::vector<std::vector<std::pair<int, float>>> cells(static_cast<size_t>(dst));
  size_t taps = 1;
  for (int d = 0; d < dst; ++d) {
    const double f1 = d * scale, f2 = f1 + scale;
    const double cell = std::min(scale, src - f1);
    int s1 = static_cast<int>(std::ceil(f1));
    int s2 = static_cast<int>(std::floor(f2));
    s2 = std::min(s2, src - 1);
    s1 = std::min(s1, s2);
    auto& c = cells[static_cast<size_t>(d)];
    if (s1 - f1 > 1e-3) c.emplace_back(s1 - 1, static_cast<float>((s1 - f1) / cell));
    for (int s = s1; s < s2; ++s) c.emplace_back(s, static_cast<float>(1.0 / cell));
    if (f2 - s2 > 1e-3)
      c.emplace_back(s2, static_cast<float>(std::min(std::min(f2 - s2, 1.0), cell) / cell));
    taps = std::max(taps, c.size());
  }
  AxisTable t;
  t.taps = static_cast<int>(taps);
  t.index.assign(static_cast<size_t>(dst) * taps, 0);
  t.weight.assign(static_cast<size_t>(dst) * taps, 0.0f);
  for (int d = 0; d < dst; ++d) {
    const auto& c = cells[static_cast<size_t>(d)];
    for (size_t k = 0; k < c.size(); ++k) {
      t.index[d * taps + k] = c[k].first;
      t.weight[d * taps + k] = c[k].second;
    }
  }
  return t;
}

}  // namespace detail

// The table of one axis. `area_downscale` is OpenCV's rule: INTER_AREA uses cell averaging only
// when both axes shrink (or keep) their size; otherwise its own linear-like upscaling weights.
inline AxisTable resize_axis(int src, int dst, int interp, bool area_downscale) {
  if (src <= 0 || dst <= 0) throw std::invalid_argument("resize: sizes must be positive");
  const double inv_scale = static_cast<double>(dst) / src;
  const double scale = 1.0 / inv_scale;
  AxisTable t;
  if (interp == kNearest) {
    t.taps = 1;
    t.index.resize(static_cast<size_t>(dst));
    t.weight.assign(static_cast<size_t>(dst), 1.0f);
    for (int d = 0; d < dst; ++d)
      t.index[d] = std::min(static_cast<int>(std::floor(d * scale)), src - 1);
    return t;
  }
  if (interp == kArea && area_downscale) return detail::area_table(src, dst, scale);
  if (interp != kBilinear && interp != kBicubic && interp != kArea)
    throw std::invalid_argument("resize: unknown interpolation");
  const bool cubic = interp == kBicubic;
  t.taps = cubic ? 4 : 2;
  t.index.resize(static_cast<size_t>(dst) * t.taps);
  t.weight.resize(static_cast<size_t>(dst) * t.taps);
  for (int d = 0; d < dst; ++d) {
    float fx;
    int sx;
    if (interp == kArea) {
      sx = static_cast<int>(std::floor(d * scale));
      fx = static_cast<float>((d + 1) - (sx + 1) * inv_scale);
      fx = fx <= 0 ? 0.f : fx - std::floor(fx);
    } else {
      fx = static_cast<float>((d + 0.5) * scale - 0.5);
      sx = static_cast<int>(std::floor(fx));
      fx -= static_cast<float>(sx);
    }
    if (cubic) {
      float c[4];
      detail::cubic_coeffs(fx, c);
      for (int k = 0; k < 4; ++k) {
        t.index[d * 4 + k] = std::min(std::max(sx - 1 + k, 0), src - 1);
        t.weight[d * 4 + k] = c[k];
      }
      continue;
    }
    if (sx < 0) fx = 0, sx = 0;
    if (sx >= src - 1) fx = 0, sx = src - 1;
    t.index[d * 2] = sx;
    t.index[d * 2 + 1] = std::min(sx + 1, src - 1);
    t.weight[d * 2] = 1.0f - fx;
    t.weight[d * 2 + 1] = fx;
  }
  return t;
}

}  // namespace degrade
}  // namespace pyfill
