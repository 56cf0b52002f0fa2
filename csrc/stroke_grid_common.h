// Stroke-grid colour features (SPEC S2): the arithmetic shared by the C++ and the CUDA kernels,
// so that both compute the same cell edges, the same float32 values and the same dropped cells.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define PYFILL_HD __host__ __device__ inline
#else
#define PYFILL_HD inline
#endif

namespace pyfill {
namespace stroke {

// Output channels per cell, in this order: mask, x, y, w, h, r, g, b.
constexpr int kChannels = 8;

// First pixel of cell i along an axis of n pixels split into s cells: floor(i * n / s).
PYFILL_HD int64_t cell_start(int64_t i, int64_t n, int64_t s) { return i * n / s; }

// The cell holding pixel p (0 <= p < n): the largest i with floor(i * n / s) <= p.
PYFILL_HD int64_t cell_of(int64_t p, int64_t n, int64_t s) { return ((p + 1) * s - 1) / n; }

// Mean colour of a cell, scaled to [0, 1]: uint8 sums are exact integers, float sums are doubles.
PYFILL_HD float mean_colour(uint64_t sum, int64_t count) {
  return static_cast<float>(static_cast<double>(sum) / (static_cast<double>(count) * 255.0));
}
PYFILL_HD float mean_colour(double sum, int64_t count) {
  return static_cast<float>(sum / static_cast<double>(count));
}

PYFILL_HD float ratio(int64_t num, int64_t den) {
  return static_cast<float>(static_cast<double>(num) / static_cast<double>(den));
}

// Writes the 8 channels of one cell. box = (x0, y0, x1, y1) of the strokes whose top-left corner
// lies in the cell, x1/y1 exclusive; has_box false when no stroke belongs to the cell.
template <class Sum>
PYFILL_HD void write_cell(float* o, int64_t count, const Sum* sums, bool has_box, int64_t bx0,
                          int64_t by0, int64_t bx1, int64_t by1, int64_t cx0, int64_t cy0,
                          int64_t cw, int64_t ch, int64_t W, int64_t H) {
  o[0] = count > 0 ? 1.0f : 0.0f;
  if (has_box) {
    o[1] = ratio(bx0 - cx0, cw);
    o[2] = ratio(by0 - cy0, ch);
    o[3] = ratio(bx1 - bx0, W);
    o[4] = ratio(by1 - by0, H);
  } else {
    o[1] = o[2] = o[3] = o[4] = 0.0f;
  }
  for (int k = 0; k < 3; ++k) o[5 + k] = count > 0 ? mean_colour(sums[k], count) : 0.0f;
}

// Counter-based random numbers for the training synthesis (splitmix64 finaliser), so that the
// CPU and the GPU draw the same cells for the same (seed, image, counter).
PYFILL_HD uint64_t splitmix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

PYFILL_HD uint64_t drop_random(uint64_t seed, uint64_t image, uint64_t counter) {
  return splitmix64(splitmix64(splitmix64(seed) + image) + counter);
}

// A number in [0, m) from the high 32 bits of r (m < 2^32).
PYFILL_HD uint32_t bounded(uint64_t r, uint32_t m) {
  return static_cast<uint32_t>(((r >> 32) * static_cast<uint64_t>(m)) >> 32);
}

// Partial Fisher-Yates shuffle of the n cell indices: perm[0..k) are the cells to zero.
PYFILL_HD void choose_dropped(int32_t* perm, uint32_t n, uint32_t k, uint64_t seed, uint64_t image) {
  for (uint32_t i = 0; i < n; ++i) perm[i] = static_cast<int32_t>(i);
  for (uint32_t t = 0; t < k; ++t) {
    const uint32_t j = t + bounded(drop_random(seed, image, t), n - t);
    const int32_t tmp = perm[t];
    perm[t] = perm[j];
    perm[j] = tmp;
  }
}

}  // namespace stroke
}  // namespace pyfill
