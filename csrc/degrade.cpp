// C++ degradation kernels (blur, resize, noise, JPEG) on batches of images (B, H, W, C), uint8
// or float32 in [0, 1]. Each kernel works on one image with reused per-thread buffers; batches
// run images in parallel, and apply_pipeline runs each image's whole record (its chain of steps)
// in one task. Every kernel computes in float and saturates the result to the input's range.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#endif

#include "degrade_common.h"
#include "degrade_resize.h"
#include "parallel.h"
#include "registry.h"
#include "simd.h"

namespace py = pybind11;

namespace pyfill {
namespace degrade {
namespace {

// Value scale of a pixel type: the noise ops work in grey levels of 0..255.
template <class T>
constexpr float kLevels = 1.0f;
template <>
constexpr float kLevels<uint8_t> = 255.0f;

inline uint8_t saturate_u8(float v) {
  v = v < 0.0f ? 0.0f : (v > 255.0f ? 255.0f : v);
  return static_cast<uint8_t>(static_cast<int>(v + 0.5f));
}
inline void store(float v, uint8_t* dst) { *dst = saturate_u8(v); }
inline void store(float v, float* dst) { *dst = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v); }

inline int64_t reflect101(int64_t i, int64_t n) {
  if (n == 1) return 0;
  while (i < 0 || i >= n) {
    if (i < 0) i = -i;
    if (i >= n) i = 2 * n - 2 - i;
  }
  return i;
}

// One image (H, W, C) of a batch.
struct Dim {
  int64_t h, w, c;
  int64_t row() const { return w * c; }
  int64_t size() const { return h * w * c; }
};

// Per-thread working memory, grown on demand and reused from image to image, so that a batch
// allocates (and page-faults) its buffers once per thread rather than once per image and step.
struct Scratch {
  std::vector<float> pad, ring, acc, tmp;
  std::vector<uint8_t> planes;
  std::vector<int> ycc;
  std::vector<uint32_t> words;
  std::vector<uint8_t> images_u8[2];  // intermediate images of a record
  std::vector<float> images_f32[2];
};

inline std::vector<uint8_t>& image_buffer(Scratch& sc, int64_t k, const uint8_t*) { return sc.images_u8[k & 1]; }
inline std::vector<float>& image_buffer(Scratch& sc, int64_t k, const float*) { return sc.images_f32[k & 1]; }

template <class V>
V* grow(std::vector<V>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
  return v.data();
}

// Hot inner loops are multi-versioned (simd.h): AVX-512, AVX2 or baseline, picked at load time.
#define PYFILL_CLONES PYFILL_MULTIVERSION

typedef float V8f __attribute__((vector_size(32)));
typedef int V8i __attribute__((vector_size(32)));

// out[j] = sum over t < taps of w[t] * rows[t][j], for j < n: the sum starts at 0 and adds the
// taps in order (as the CUDA kernels do), eight outputs at a time kept in registers.
PYFILL_CLONES void weighted_rows(float* __restrict out, const float* const* rows, const float* w, int64_t taps,
                                 int64_t n) {
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    V8f acc = {};
    for (int64_t t = 0; t < taps; ++t) {
      V8f v;
      std::memcpy(&v, rows[t] + j, sizeof(v));
      acc += w[t] * v;
    }
    std::memcpy(out + j, &acc, sizeof(acc));
  }
  for (; j < n; ++j) {
    float acc = 0.0f;
    for (int64_t t = 0; t < taps; ++t) acc += w[t] * rows[t][j];
    out[j] = acc;
  }
}

PYFILL_CLONES void store_row_u8(const float* __restrict acc, uint8_t* __restrict dst, int64_t n) {
  for (int64_t j = 0; j < n; ++j) dst[j] = saturate_u8(acc[j]);
}
PYFILL_CLONES void store_row_f32(const float* __restrict acc, float* __restrict dst, int64_t n) {
  for (int64_t j = 0; j < n; ++j) store(acc[j], dst + j);
}
inline void store_row(const float* acc, uint8_t* dst, int64_t n) { store_row_u8(acc, dst, n); }
inline void store_row(const float* acc, float* dst, int64_t n) { store_row_f32(acc, dst, n); }

// Row y of an image, widened by r pixels on each side with reflect-101 borders, as float.
template <class T>
void padded_row(const T* img, const Dim& d, int64_t y, int64_t r, float* out) {
  const T* row = img + y * d.row();
  const int64_t n = d.row();
  for (int64_t j = 0; j < n; ++j) out[r * d.c + j] = static_cast<float>(row[j]);
  for (int64_t x = -r; x < 0; ++x)
    for (int64_t ch = 0; ch < d.c; ++ch) out[(x + r) * d.c + ch] = static_cast<float>(row[reflect101(x, d.w) * d.c + ch]);
  for (int64_t x = d.w; x < d.w + r; ++x)
    for (int64_t ch = 0; ch < d.c; ++ch) out[(x + r) * d.c + ch] = static_cast<float>(row[reflect101(x, d.w) * d.c + ch]);
}

// Rows of an intermediate product kept in a ring of `slots` rows: source row r lives in slot
// r % slots. A vertical filter of radius R over reflect-101 borders only reads rows of the
// window [y - R, y + R] (clamped to the image), which never has more than 2R + 1 rows.
struct RowRing {
  float* data;
  int64_t slots, stride;
  float* row(int64_t r) const { return data + (r % slots) * stride; }
};

// Separable correlation of one image with odd kernels kx (horizontal) and ky (vertical): the
// horizontal pass fills a ring of ny rows just ahead of the vertical pass. Accumulation starts
// at 0 and adds the taps in order, as the CUDA kernels do.
template <class T>
void sep_filter(const T* src, T* dst, const Dim& d, const std::vector<float>& kx, const std::vector<float>& ky,
                Scratch& sc) {
  const int64_t rx = static_cast<int64_t>(kx.size()) / 2, ry = static_cast<int64_t>(ky.size()) / 2;
  const int64_t n = d.row(), ny = static_cast<int64_t>(ky.size());
  float* pad = grow(sc.pad, (d.w + 2 * rx) * d.c);
  float* acc = grow(sc.acc, n);
  const RowRing ring{grow(sc.ring, ny * n), ny, n};
  std::vector<const float*> hrows(kx.size()), vrows(ky.size());
  for (size_t k = 0; k < kx.size(); ++k) hrows[k] = pad + static_cast<int64_t>(k) * d.c;
  int64_t next = 0;
  for (int64_t y = 0; y < d.h; ++y) {
    for (const int64_t last = std::min(d.h - 1, y + ry); next <= last; ++next) {
      padded_row(src, d, next, rx, pad);
      weighted_rows(ring.row(next), hrows.data(), kx.data(), static_cast<int64_t>(kx.size()), n);
    }
    for (int64_t k = 0; k < ny; ++k) vrows[static_cast<size_t>(k)] = ring.row(reflect101(y + k - ry, d.h));
    weighted_rows(acc, vrows.data(), ky.data(), ny, n);
    store_row(acc, dst + y * n, n);
  }
}

// 2-D correlation of one image with a square odd kernel (K x K, row-major); zero taps are
// skipped, so sparse kernels such as motion-blur lines cost only their non-zero taps. Padded
// source rows are kept in a ring of K rows.
template <class T>
void filter2d(const T* src, T* dst, const Dim& d, const std::vector<float>& kernel, int64_t ksize, Scratch& sc) {
  const int64_t r = ksize / 2, n = d.row(), pn = (d.w + 2 * r) * d.c;
  struct Tap {
    int64_t dy, offset;
  };
  std::vector<Tap> taps;
  std::vector<float> weights;
  for (int64_t ky = 0; ky < ksize; ++ky)
    for (int64_t kx = 0; kx < ksize; ++kx)
      if (kernel[static_cast<size_t>(ky * ksize + kx)] != 0.0f) {
        taps.push_back({ky - r, kx * d.c});
        weights.push_back(kernel[static_cast<size_t>(ky * ksize + kx)]);
      }
  float* acc = grow(sc.acc, n);
  const RowRing ring{grow(sc.ring, ksize * pn), ksize, pn};
  std::vector<const float*> rows(taps.size());
  int64_t next = 0;
  for (int64_t y = 0; y < d.h; ++y) {
    for (const int64_t last = std::min(d.h - 1, y + r); next <= last; ++next) padded_row(src, d, next, r, ring.row(next));
    for (size_t t = 0; t < taps.size(); ++t) rows[t] = ring.row(reflect101(y + taps[t].dy, d.h)) + taps[t].offset;
    weighted_rows(acc, rows.data(), weights.data(), static_cast<int64_t>(taps.size()), n);
    store_row(acc, dst + y * n, n);
  }
}

// Horizontal resampling of one row of 3-channel pixels through an axis table.
template <class T>
PYFILL_CLONES void resample_row3(const T* __restrict row, float* __restrict out, int64_t ow, int taps,
                                 const int* __restrict index, const float* __restrict weight) {
  for (int64_t x = 0; x < ow; ++x) {
    float v0 = 0.0f, v1 = 0.0f, v2 = 0.0f;
    for (int k = 0; k < taps; ++k) {
      const int64_t t = x * taps + k;
      const T* px = row + static_cast<int64_t>(index[t]) * 3;
      const float wk = weight[t];
      v0 += wk * static_cast<float>(px[0]);
      v1 += wk * static_cast<float>(px[1]);
      v2 += wk * static_cast<float>(px[2]);
    }
    out[x * 3] = v0;
    out[x * 3 + 1] = v1;
    out[x * 3 + 2] = v2;
  }
}

// Separable resampling of one image (d) to oh x ow through OpenCV-convention tables: horizontal
// pass of the source rows the output needs into a float buffer, then the vertical pass.
template <class T>
void resize(const T* src, T* dst, const Dim& d, int64_t oh, int64_t ow, int interp, Scratch& sc) {
  const bool down = oh <= d.h && ow <= d.w;
  const AxisTable tx = resize_axis(static_cast<int>(d.w), static_cast<int>(ow), interp, down);
  const AxisTable ty = resize_axis(static_cast<int>(d.h), static_cast<int>(oh), interp, down);
  const int64_t c = d.c, on = ow * c;
  if (interp == kNearest) {  // one tap of weight 1: the two passes reduce to 0 + v, stored
    for (int64_t y = 0; y < oh; ++y) {
      const T* row = src + ty.index[static_cast<size_t>(y)] * d.row();
      T* out = dst + y * on;
      for (int64_t x = 0; x < ow; ++x)
        for (int64_t ch = 0; ch < c; ++ch) store(0.0f + static_cast<float>(row[tx.index[static_cast<size_t>(x)] * c + ch]), out + x * c + ch);
    }
    return;
  }
  float* tmp = grow(sc.tmp, d.h * on);
  float* acc = grow(sc.acc, on);
  // Only source rows with a non-zero vertical weight are resampled.
  std::vector<uint8_t> used(static_cast<size_t>(d.h), 0);
  for (size_t t = 0; t < ty.index.size(); ++t)
    if (ty.weight[t] != 0.0f) used[static_cast<size_t>(ty.index[t])] = 1;
  for (int64_t y = 0; y < d.h; ++y) {
    if (!used[static_cast<size_t>(y)]) continue;
    const T* row = src + y * d.row();
    float* out = tmp + y * on;
    if (c == 3) {
      resample_row3(row, out, ow, tx.taps, tx.index.data(), tx.weight.data());
      continue;
    }
    for (int64_t x = 0; x < ow; ++x) {
      for (int64_t ch = 0; ch < c; ++ch) {
        float v = 0.0f;
        for (int k = 0; k < tx.taps; ++k) {
          const size_t t = static_cast<size_t>(x * tx.taps + k);
          v += tx.weight[t] * static_cast<float>(row[tx.index[t] * c + ch]);
        }
        out[x * c + ch] = v;
      }
    }
  }
  std::vector<const float*> rows(static_cast<size_t>(ty.taps));
  std::vector<float> weights(static_cast<size_t>(ty.taps));
  for (int64_t y = 0; y < oh; ++y) {
    int64_t n = 0;
    for (int k = 0; k < ty.taps; ++k) {
      const size_t t = static_cast<size_t>(y * ty.taps + k);
      if (ty.weight[t] == 0.0f) continue;
      rows[static_cast<size_t>(n)] = tmp + ty.index[t] * on;
      weights[static_cast<size_t>(n++)] = ty.weight[t];
    }
    weighted_rows(acc, rows.data(), weights.data(), n, on);
    store_row(acc, dst + y * on, on);
  }
}

// The random stream of one image: (seed, stream) of the Philox generator.
struct Stream {
  uint64_t seed;
  uint32_t stream;
};

inline float luma(float r, float g, float b) { return 0.299f * r + 0.587f * g + 0.114f * b; }

#if defined(__GNUC__) && defined(__x86_64__)
#define PYFILL_PHILOX_AVX2 1
// Philox4x32-10 on eight consecutive counters at once with AVX2 (the same integer arithmetic as
// philox4x32_10(), so the same words): words[j * stride + k] = word j of draw first + k, k < 8.
__attribute__((target("avx2"))) void philox8_avx2(Stream st, uint32_t tag, uint64_t first, uint32_t* words,
                                                  int64_t stride) {
  const __m256i m0 = _mm256_set1_epi32(static_cast<int>(0xD2511F53u));
  const __m256i m1 = _mm256_set1_epi32(static_cast<int>(0xCD9E8D57u));
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  // Counters (index lo, index hi, stream, tag); the caller keeps the eight low words from wrapping.
  __m256i c0 = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(first))), lanes);
  __m256i c1 = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(first >> 32)));
  __m256i c2 = _mm256_set1_epi32(static_cast<int>(st.stream));
  __m256i c3 = _mm256_set1_epi32(static_cast<int>(tag));
  uint32_t k0 = static_cast<uint32_t>(st.seed), k1 = static_cast<uint32_t>(st.seed >> 32);
  for (int round = 0; round < 10; ++round) {
    const __m256i p0e = _mm256_mul_epu32(c0, m0), p0o = _mm256_mul_epu32(_mm256_srli_epi64(c0, 32), m0);
    const __m256i p1e = _mm256_mul_epu32(c2, m1), p1o = _mm256_mul_epu32(_mm256_srli_epi64(c2, 32), m1);
    const __m256i lo0 = _mm256_blend_epi32(p0e, _mm256_slli_epi64(p0o, 32), 0xAA);
    const __m256i hi0 = _mm256_blend_epi32(_mm256_srli_epi64(p0e, 32), p0o, 0xAA);
    const __m256i lo1 = _mm256_blend_epi32(p1e, _mm256_slli_epi64(p1o, 32), 0xAA);
    const __m256i hi1 = _mm256_blend_epi32(_mm256_srli_epi64(p1e, 32), p1o, 0xAA);
    const __m256i n0 = _mm256_xor_si256(_mm256_xor_si256(hi1, c1), _mm256_set1_epi32(static_cast<int>(k0)));
    const __m256i n2 = _mm256_xor_si256(_mm256_xor_si256(hi0, c3), _mm256_set1_epi32(static_cast<int>(k1)));
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(words), c0);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(words + stride), c1);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(words + 2 * stride), c2);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(words + 3 * stride), c3);
}
#endif

// The four words of draws [first, first + n) of a stream as four planes of n words:
// words[j * n + k] = word j of draw first + k. Eight draws at a time with AVX2 where the CPU
// has it.
void draw_words(Stream st, uint32_t tag, int64_t first, int64_t n, uint32_t* words) {
  int64_t k = 0;
#ifdef PYFILL_PHILOX_AVX2
  static const bool avx2 = __builtin_cpu_supports("avx2");
  if (avx2)
    for (; k + 8 <= n; k += 8) {
      const uint64_t index = static_cast<uint64_t>(first + k);
      if ((index & 0xFFFFFFFFu) > 0xFFFFFFF8u) break;  // the low counter word would wrap
      philox8_avx2(st, tag, index, words + k, n);
    }
#endif
  for (; k < n; ++k) {
    const Philox4 r = draw(st.seed, st.stream, tag, static_cast<uint64_t>(first + k));
    for (int j = 0; j < 4; ++j) words[j * n + k] = r.v[j];
  }
}

// z[4k..4k+3] for k < n: the Box-Muller normals of draw k's word pairs (0, 1) and (2, 3), from
// the four word planes of draw_words().
PYFILL_CLONES void normals(const uint32_t* __restrict words, int64_t n, float* __restrict z) {
  const uint32_t *w0 = words, *w1 = words + n, *w2 = words + 2 * n, *w3 = words + 3 * n;
  for (int64_t k = 0; k < n; ++k) {
    box_muller(w0[k], w1[k], z + 4 * k, z + 4 * k + 1);
    box_muller(w2[k], w3[k], z + 4 * k + 2, z + 4 * k + 3);
  }
}

// out[i] = poisson_normal(lam[i], word 1, word 2 of draw i) for i < n (word planes as above).
PYFILL_CLONES void poisson_normals(const float* __restrict lam, const uint32_t* __restrict words, int64_t n,
                                   float* __restrict out) {
  for (int64_t i = 0; i < n; ++i) out[i] = poisson_normal(lam[i], words[n + i], words[2 * n + i]);
}

// Gaussian noise N(mean, sigma^2) in grey levels on one image; draw i of the image's stream
// gives the four normals of samples 4i..4i+3 (samples are values, or pixels when gray). Each
// row's draws are made first, then their normals in a vectorised loop, then the sum.
template <class T>
void gaussian_noise(const T* src, T* dst, const Dim& d, float sigma, float mean, bool gray, Stream st, Scratch& sc) {
  const float to255 = 255.0f / kLevels<T>, from255 = kLevels<T> / 255.0f;
  const int64_t per_row = gray ? d.w : d.row();
  const int64_t max_blocks = per_row / 4 + 2;
  uint32_t* words = grow(sc.words, 4 * max_blocks);
  float* z = grow(sc.acc, 4 * max_blocks);
  for (int64_t y = 0; y < d.h; ++y) {
    const int64_t first = y * per_row, b0 = first / 4, nb = (first + per_row - 1) / 4 - b0 + 1;
    draw_words(st, kTagGaussian, b0, nb, words);
    normals(words, nb, z);
    const float* zr = z + (first - 4 * b0);
    const T* in = src + y * d.row();
    T* out = dst + y * d.row();
    for (int64_t k = 0; k < per_row; ++k) {
      const float noise = mean + sigma * zr[k];
      if (gray) {
        for (int64_t ch = 0; ch < d.c; ++ch)
          store((static_cast<float>(in[k * d.c + ch]) * to255 + noise) * from255, out + k * d.c + ch);
      } else {
        store((static_cast<float>(in[k]) * to255 + noise) * from255, out + k);
      }
    }
  }
}

// Poisson (shot) noise on one image: each value v (grey levels) becomes
// v + scale * (Poisson(v) - v); gray draws one count per pixel from its luma and adds the same
// noise to every channel. Draw index = value (or pixel) index. Per row: the draws, the normal
// approximations of every sample in a vectorised loop, then inversion where lam < 16.
template <class T>
void poisson_noise(const T* src, T* dst, const Dim& d, float scale, bool gray, Stream st, Scratch& sc) {
  const float lv = kLevels<T>, to255 = 255.0f / lv, from255 = lv / 255.0f;
  const bool per_pixel = gray && d.c == 3;
  const int64_t per_row = per_pixel ? d.w : d.row();
  uint32_t* words = grow(sc.words, 4 * per_row);
  float* lam = grow(sc.acc, 2 * per_row);
  float* count = lam + per_row;
  for (int64_t y = 0; y < d.h; ++y) {
    const T* in = src + y * d.row();
    T* out = dst + y * d.row();
    if (per_pixel) {
      for (int64_t x = 0; x < d.w; ++x) lam[x] = luma(in[x * 3], in[x * 3 + 1], in[x * 3 + 2]) * to255;
    } else {
      for (int64_t k = 0; k < per_row; ++k) lam[k] = static_cast<float>(in[k]) * to255;
    }
    draw_words(st, kTagPoisson, y * per_row, per_row, words);
    poisson_normals(lam, words, per_row, count);
    for (int64_t k = 0; k < per_row; ++k) {
      if (lam[k] <= 0.0f) count[k] = 0.0f;
      else if (lam[k] < 16.0f) count[k] = poisson_inversion(lam[k], words[k]);
    }
    if (per_pixel) {
      for (int64_t x = 0; x < d.w; ++x) {
        const float noise = scale * (count[x] - lam[x]) * from255;
        for (int64_t ch = 0; ch < 3; ++ch) store(static_cast<float>(in[x * 3 + ch]) + noise, out + x * 3 + ch);
      }
    } else {
      for (int64_t k = 0; k < per_row; ++k) store(static_cast<float>(in[k]) + scale * (count[k] - lam[k]) * from255, out + k);
    }
  }
}

// Salt and pepper on one image: each pixel (all channels) becomes black or white with
// probability `amount` (half each); draw index = pixel index.
template <class T>
void salt_pepper(const T* src, T* dst, const Dim& d, float amount, Stream st, Scratch& sc) {
  const uint64_t threshold = static_cast<uint64_t>(static_cast<double>(amount) * 4294967296.0);
  const T white = static_cast<T>(kLevels<T>);
  uint32_t* words = grow(sc.words, 4 * d.w);
  if (src != dst) std::copy(src, src + d.size(), dst);
  for (int64_t y = 0; y < d.h; ++y) {
    draw_words(st, kTagSaltPepper, y * d.w, d.w, words);
    T* out = dst + y * d.row();
    for (int64_t x = 0; x < d.w; ++x) {
      if (words[x] >= threshold) continue;
      const T v = (words[d.w + x] & 1u) ? white : T(0);
      for (int64_t ch = 0; ch < d.c; ++ch) out[x * d.c + ch] = v;
    }
  }
}

inline uint8_t to_u8(uint8_t v) { return v; }
inline uint8_t to_u8(float v) { return saturate_u8(v * 255.0f); }
inline void from_u8(int v, uint8_t* dst) { *dst = static_cast<uint8_t>(v); }
inline void from_u8(int v, float* dst) { *dst = static_cast<float>(v) * (1.0f / 255.0f); }

// jpeg_block_roundtrip() written with 8-lane vectors (two SSE or one AVX register per block
// row): the same products summed in the same order, so the same results, without relying on
// the auto-vectoriser.
PYFILL_CLONES void block_roundtrip(float* blk, const float* basis, const float* basis_t, const float* q) {
  V8f x[8], t[8], c[8], b[8], bt[8], qv[8];
  std::memcpy(x, blk, sizeof(x));
  std::memcpy(b, basis, sizeof(b));
  std::memcpy(bt, basis_t, sizeof(bt));
  std::memcpy(qv, q, sizeof(qv));
  for (int u = 0; u < 8; ++u) {  // t = B X
    V8f acc = {};
    for (int y = 0; y < 8; ++y) acc += basis[u * 8 + y] * x[y];
    t[u] = acc;
  }
  for (int u = 0; u < 8; ++u) {  // c = t B^T, quantised and dequantised
    V8f acc = {};
    for (int k = 0; k < 8; ++k) acc += t[u][k] * bt[k];
    const V8f mag = acc < 0.0f ? -acc : acc;
    const V8f a = __builtin_convertvector(__builtin_convertvector(mag / qv[u] + 0.5f, V8i), V8f) * qv[u];
    c[u] = acc < 0.0f ? -a : a;
  }
  for (int y = 0; y < 8; ++y) {  // t = B^T c
    V8f acc = {};
    for (int u = 0; u < 8; ++u) acc += basis_t[y * 8 + u] * c[u];
    t[y] = acc;
  }
  for (int y = 0; y < 8; ++y) {  // X = t B
    V8f acc = {};
    for (int v = 0; v < 8; ++v) acc += t[y][v] * b[v];
    x[y] = acc;
  }
  std::memcpy(blk, x, sizeof(x));
}

// Eight rows of 8x8 blocks of a level-shifted plane through JPEG's lossy core: `in` holds
// samples (row stride `stride`, `nbx` blocks across), `out` receives the reconstructed 8-bit
// samples at the same positions (row stride `out_stride`).
PYFILL_CLONES void jpeg_block_row(const int* __restrict in, int64_t stride, int64_t nbx, uint8_t* __restrict out,
                                  int64_t out_stride, const float* basis, const float* basis_t, const float* q) {
  float blk[64];
  for (int64_t bx = 0; bx < nbx; ++bx) {
    for (int r = 0; r < 8; ++r)
      for (int c = 0; c < 8; ++c) blk[r * 8 + c] = static_cast<float>(in[r * stride + bx * 8 + c]) - 128.0f;
    block_roundtrip(blk, basis, basis_t, q);
    for (int r = 0; r < 8; ++r)
      for (int c = 0; c < 8; ++c)
        out[r * out_stride + bx * 8 + c] = static_cast<uint8_t>(clamp255(round_half_up(blk[r * 8 + c] + 128.0f)));
  }
}

// RGB -> 8-bit YCbCr of n pixels into three planar rows.
template <class T>
PYFILL_CLONES void ycc_row(const T* __restrict px, int64_t n, int* __restrict y, int* __restrict cb, int* __restrict cr) {
  for (int64_t x = 0; x < n; ++x) rgb_to_ycc(to_u8(px[x * 3]), to_u8(px[x * 3 + 1]), to_u8(px[x * 3 + 2]), y + x, cb + x, cr + x);
}

// 2x2 chroma averaging of two full-resolution rows (n output samples), libjpeg's alternating
// rounding bias.
PYFILL_CLONES void subsample_row(const int* __restrict a, const int* __restrict b, int64_t n, int* __restrict out) {
  for (int64_t cx = 0; cx < n; ++cx) out[cx] = (a[2 * cx] + a[2 * cx + 1] + b[2 * cx] + b[2 * cx + 1] + 1 + (cx & 1)) >> 2;
}

// libjpeg's h2v2 "fancy" (triangular) upsampling of one output row from the nearer and the
// farther chroma rows (n samples each): 2n output samples. Same values as fancy_upsample().
PYFILL_CLONES void fancy_row(const uint8_t* __restrict near_row, const uint8_t* __restrict far_row, int64_t n,
                             int* __restrict v, int* __restrict out) {
  for (int64_t cx = 0; cx < n; ++cx) v[cx + 1] = 3 * near_row[cx] + far_row[cx];
  v[0] = v[1];
  v[n + 1] = v[n];
  for (int64_t cx = 0; cx < n; ++cx) {
    out[2 * cx] = (3 * v[cx + 1] + v[cx] + 8) >> 4;
    out[2 * cx + 1] = (3 * v[cx + 1] + v[cx + 2] + 7) >> 4;
  }
}

template <class T>
PYFILL_CLONES void rgb_row(const uint8_t* __restrict y, const int* __restrict cb, const int* __restrict cr, int64_t n,
                           T* __restrict out) {
  for (int64_t x = 0; x < n; ++x) {
    int r, g, b;
    ycc_to_rgb(y[x], cb[x], cr[x], &r, &g, &b);
    from_u8(r, out + x * 3);
    from_u8(g, out + x * 3 + 1);
    from_u8(b, out + x * 3 + 2);
  }
}

// JPEG's lossy path on one 3-channel image. Pass 1, per MCU row: RGB -> YCbCr (8-bit) into
// planar rows (edges replicated to whole MCUs as libjpeg does), chroma 2x2 averaging for 4:2:0,
// 8x8 DCT round trip of every block into reconstructed planes. Pass 2, per row: chroma
// upsampling (libjpeg's triangular filter) and YCbCr -> RGB.
template <class T>
void jpeg(const T* src, T* dst, const Dim& d, int quality, bool sub420, Scratch& sc) {
  const int64_t mcu = sub420 ? 16 : 8;
  const int64_t pw = (d.w + mcu - 1) / mcu * mcu, ph = (d.h + mcu - 1) / mcu * mcu;
  const int64_t cw = sub420 ? pw / 2 : pw, chh = sub420 ? ph / 2 : ph;
  const int64_t real_cw = sub420 ? (d.w + 1) / 2 : d.w, real_ch = sub420 ? (d.h + 1) / 2 : d.h;
  float basis[64], basis_t[64], qy[64], qc[64];
  for (int u = 0; u < 8; ++u)
    for (int x = 0; x < 8; ++x) basis_t[x * 8 + u] = basis[u * 8 + x] = dct_basis(u, x);
  for (int i = 0; i < 64; ++i) {
    qy[i] = static_cast<float>(jpeg_quant(0, i, quality));
    qc[i] = static_cast<float>(jpeg_quant(1, i, quality));
  }
  const int64_t ysize = pw * ph, csize = cw * chh;
  uint8_t* yplane = grow(sc.planes, ysize + 2 * csize);
  // Planar 8-bit YCbCr of one MCU row (Y, Cb, Cr), then the subsampled chroma rows.
  int* ycc = grow(sc.ycc, 3 * mcu * pw + 2 * 8 * cw);
  int* sub[2] = {ycc + 3 * mcu * pw, ycc + 3 * mcu * pw + 8 * cw};
  for (int64_t y0 = 0; y0 < ph; y0 += mcu) {
    for (int64_t y = 0; y < mcu; ++y) {
      int* py = ycc + y * pw;
      int* pcb = py + mcu * pw;
      int* pcr = pcb + mcu * pw;
      ycc_row(src + std::min(y0 + y, d.h - 1) * d.row(), d.w, py, pcb, pcr);
      for (int64_t x = d.w; x < pw; ++x) py[x] = py[d.w - 1], pcb[x] = pcb[d.w - 1], pcr[x] = pcr[d.w - 1];
    }
    for (int64_t by = 0; by < mcu; by += 8)
      jpeg_block_row(ycc + by * pw, pw, pw / 8, yplane + (y0 + by) * pw, pw, basis, basis_t, qy);
    for (int comp = 0; comp < 2; ++comp) {
      const int* full = ycc + (comp + 1) * mcu * pw;
      uint8_t* cplane = yplane + ysize + comp * csize;
      if (sub420) {
        for (int64_t cy = 0; cy < 8; ++cy) subsample_row(full + 2 * cy * pw, full + (2 * cy + 1) * pw, cw, sub[comp] + cy * cw);
        jpeg_block_row(sub[comp], cw, cw / 8, cplane + (y0 / 2) * cw, cw, basis, basis_t, qc);
      } else {
        jpeg_block_row(full, pw, pw / 8, cplane + y0 * cw, cw, basis, basis_t, qc);
      }
    }
  }
  const uint8_t* cb = yplane + ysize;
  const uint8_t* cr = cb + csize;
  int* up = grow(sc.ycc, 2 * (2 * real_cw) + real_cw + 2);  // full-resolution Cb and Cr rows, then the blend row
  int* ucb = up;
  int* ucr = up + 2 * real_cw;
  int* blend = up + 4 * real_cw;
  for (int64_t y = 0; y < d.h; ++y) {
    if (sub420) {
      const int64_t cy = y >> 1;
      const int64_t far = std::min(std::max<int64_t>((y & 1) ? cy + 1 : cy - 1, 0), real_ch - 1);
      fancy_row(cb + cy * cw, cb + far * cw, real_cw, blend, ucb);
      fancy_row(cr + cy * cw, cr + far * cw, real_cw, blend, ucr);
    } else {
      for (int64_t x = 0; x < d.w; ++x) ucb[x] = cb[y * cw + x], ucr[x] = cr[y * cw + x];
    }
    rgb_row(yplane + y * pw, ucb, ucr, d.w, dst + y * d.row());
  }
}

// ---- a whole record per image --------------------------------------------------------------

enum StepCode : int64_t { kSepFilter = 0, kFilter2d = 1, kResize = 2, kGaussianNoise = 3, kPoissonNoise = 4,
                          kSaltPepper = 5, kJpeg = 6 };

// One step of a record: its code, integer and float parameters, noise seed, and kernel taps.
struct Step {
  int64_t code;
  int64_t i0, i1, i2;     // resize: height, width, interpolation; jpeg: quality, 4:2:0; gray flag
  float f0, f1;           // sigma/mean, scale, amount
  uint64_t seed;
  std::vector<float> kernel;  // gaussian: 1-D taps (both axes); filter2d: K*K taps
  int64_t ksize;
};

// Applies one step to one image (d) into dst (of the step's output size).
template <class T>
void apply_step(const Step& s, const T* src, T* dst, const Dim& d, Scratch& sc) {
  const Stream st{s.seed, 0};
  switch (s.code) {
    case kSepFilter: sep_filter(src, dst, d, s.kernel, s.kernel, sc); break;
    case kFilter2d: filter2d(src, dst, d, s.kernel, s.ksize, sc); break;
    case kResize: resize(src, dst, d, s.i0, s.i1, static_cast<int>(s.i2), sc); break;
    case kGaussianNoise: gaussian_noise(src, dst, d, s.f0, s.f1, s.i0 != 0, st, sc); break;
    case kPoissonNoise: poisson_noise(src, dst, d, s.f0, s.i0 != 0, st, sc); break;
    case kSaltPepper: salt_pepper(src, dst, d, s.f0, st, sc); break;
    case kJpeg: jpeg(src, dst, d, static_cast<int>(s.i0), s.i1 != 0, sc); break;
    default: throw std::invalid_argument("apply_pipeline: unknown step code");
  }
}

// Calls fn(i, scratch) for every i < n from up to num_threads() workers that each claim the next
// unclaimed index, so that images of unequal cost (or a worker slowed by other load) balance.
template <class Fn>
void for_each_image(int64_t n, Fn&& fn) {
  std::atomic<int64_t> next{0};
  parallel_for(std::min<int64_t>(n, num_threads()), [&](int64_t, int64_t) {
    Scratch sc;
    for (int64_t i = next++; i < n; i = next++) fn(i, sc);
  }, 1);
}

// Runs each image's steps in order inside one task, images in parallel: intermediate images
// live in two per-thread buffers, the last step writes straight into the output.
template <class T>
void apply_pipeline(const T* src, T* dst, const Dim& d, int64_t b, const std::vector<Step>& steps,
                    const std::vector<int64_t>& offsets) {
  for_each_image(b, [&](int64_t i, Scratch& sc) {
    const T* cur = src + i * d.size();
    Dim cd = d;
    const int64_t first = offsets[static_cast<size_t>(i)], last = offsets[static_cast<size_t>(i) + 1];
    if (first == last) std::copy(cur, cur + d.size(), dst + i * d.size());
    for (int64_t k = first; k < last; ++k) {
      const Step& s = steps[static_cast<size_t>(k)];
      const Dim od = s.code == kResize ? Dim{s.i0, s.i1, d.c} : cd;
      T* out = k == last - 1 ? dst + i * d.size() : grow(image_buffer(sc, k - first, src), od.size());
      apply_step(s, cur, out, cd, sc);
      cur = out;
      cd = od;
    }
  });
}

// ---- bindings ------------------------------------------------------------------------------

using Image = py::array;

Dim checked_shape(const Image& img, const char* op, int64_t* batch) {
  if (img.ndim() != 4)
    throw std::invalid_argument(std::string(op) + ": expected a (B, H, W, C) array");
  if (!(img.flags() & py::array::c_style))
    throw std::invalid_argument(std::string(op) + ": array must be C-contiguous");
  *batch = img.shape(0);
  const Dim d{img.shape(1), img.shape(2), img.shape(3)};
  if (*batch < 1 || d.h < 1 || d.w < 1 || d.c < 1)
    throw std::invalid_argument(std::string(op) + ": empty image");
  return d;
}

bool is_u8(const Image& img, const char* op) {
  if (img.dtype().is(py::dtype::of<uint8_t>())) return true;
  if (img.dtype().is(py::dtype::of<float>())) return false;
  throw std::invalid_argument(std::string(op) + ": dtype must be uint8 or float32");
}

// Allocates the result, releases the GIL and runs fn(src, dst) with the typed pointers.
template <class Fn>
Image run_typed(const Image& img, const char* op, std::vector<py::ssize_t> out_shape, Fn&& fn) {
  if (is_u8(img, op)) {
    py::array_t<uint8_t> out(out_shape);
    const auto* src = static_cast<const uint8_t*>(img.data());
    auto* dst = out.mutable_data();
    py::gil_scoped_release release;
    fn(src, dst);
    return std::move(out);
  }
  py::array_t<float> out(out_shape);
  const auto* src = static_cast<const float*>(img.data());
  auto* dst = out.mutable_data();
  py::gil_scoped_release release;
  fn(src, dst);
  return std::move(out);
}

// Runs fn(src_image, dst_image, index, scratch) on every image of a batch, images in parallel.
template <class T, class Fn>
void for_images(const T* src, T* dst, int64_t b, int64_t in_size, int64_t out_size, Fn&& fn) {
  for_each_image(b, [&](int64_t i, Scratch& sc) { fn(src + i * in_size, dst + i * out_size, i, sc); });
}

std::vector<py::ssize_t> dims(int64_t b, const Dim& d) { return {b, d.h, d.w, d.c}; }

std::vector<float> odd_kernel(const py::array_t<float, py::array::c_style | py::array::forcecast>& k,
                              const char* what) {
  if (k.ndim() != 1 || k.shape(0) < 1 || k.shape(0) % 2 == 0)
    throw std::invalid_argument(std::string(what) + " must be a 1-D kernel of odd length");
  return std::vector<float>(k.data(), k.data() + k.shape(0));
}

struct Streams {
  const uint64_t* seed;    // per image
  const uint32_t* stream;  // per image
  Stream of(int64_t b) const { return Stream{seed[b], stream[b]}; }
};

Streams checked_streams(const py::array_t<uint64_t, py::array::c_style | py::array::forcecast>& seeds,
                        const py::array_t<uint32_t, py::array::c_style | py::array::forcecast>& streams,
                        int64_t b, const char* op) {
  if (seeds.ndim() != 1 || streams.ndim() != 1 || seeds.shape(0) != b || streams.shape(0) != b)
    throw std::invalid_argument(std::string(op) + ": seeds and streams need one entry per image");
  return Streams{seeds.data(), streams.data()};
}

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;
using IndexArray = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;
using SeedArray = py::array_t<uint64_t, py::array::c_style | py::array::forcecast>;
using StreamArray = py::array_t<uint32_t, py::array::c_style | py::array::forcecast>;

// Decodes and validates the flattened records of apply_pipeline (see its docstring), checking
// that every image's chain of sizes ends at the input size.
std::vector<Step> decode_steps(const Dim& d, int64_t b, const IndexArray& ints, const FloatArray& floats,
                               const SeedArray& seeds, const FloatArray& kernels, const IndexArray& offsets) {
  const char* op = "apply_pipeline";
  auto fail = [op](const std::string& what) { throw std::invalid_argument(std::string(op) + ": " + what); };
  if (ints.ndim() != 2 || ints.shape(1) != 6) fail("steps must be an (S, 6) int64 array");
  const int64_t n = ints.shape(0);
  if (floats.ndim() != 2 || floats.shape(0) != n || floats.shape(1) != 2) fail("params must be an (S, 2) float32 array");
  if (seeds.ndim() != 1 || seeds.shape(0) != n) fail("seeds must have one entry per step");
  if (kernels.ndim() != 1) fail("kernels must be a 1-D float32 array");
  if (offsets.ndim() != 1 || offsets.shape(0) != b + 1) fail("offsets must have B + 1 entries");
  const int64_t* off = offsets.data();
  if (off[0] != 0 || off[b] != n) fail("offsets must start at 0 and end at the number of steps");
  for (int64_t i = 0; i < b; ++i)
    if (off[i + 1] < off[i]) fail("offsets must be non-decreasing");
  std::vector<Step> steps(static_cast<size_t>(n));
  const int64_t nk = kernels.shape(0);
  for (int64_t k = 0; k < n; ++k) {
    const int64_t* r = ints.data() + k * 6;
    Step& s = steps[static_cast<size_t>(k)];
    s.code = r[0];
    s.i0 = r[1];
    s.i1 = r[2];
    s.i2 = r[3];
    s.f0 = floats.data()[k * 2];
    s.f1 = floats.data()[k * 2 + 1];
    s.seed = seeds.data()[k];
    const int64_t koff = r[4], klen = r[5];
    if (koff < 0 || klen < 0 || koff > nk || klen > nk - koff) fail("kernel slice out of range");
    s.kernel.assign(kernels.data() + koff, kernels.data() + koff + klen);
    for (float v : s.kernel)
      if (!std::isfinite(v)) fail("kernels must be finite");
    s.ksize = 0;
    switch (s.code) {
      case kSepFilter:
        if (klen < 1 || klen % 2 == 0) fail("a blur kernel needs an odd number of taps");
        break;
      case kFilter2d:
        s.ksize = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(klen))));
        if (klen < 1 || s.ksize * s.ksize != klen || s.ksize % 2 == 0) fail("a 2-D kernel must be square with an odd size");
        break;
      case kResize:
        if (s.i0 < 1 || s.i1 < 1 || s.i0 > (1 << 20) || s.i1 > (1 << 20)) fail("resize sizes must be in 1..2**20");
        if (s.i2 < kNearest || s.i2 > kArea) fail("unknown interpolation");
        break;
      case kGaussianNoise:
        if (!(s.f0 >= 0.0f) || !std::isfinite(s.f0) || !std::isfinite(s.f1)) fail("bad Gaussian noise sigma or mean");
        break;
      case kPoissonNoise:
        if (!(s.f0 >= 0.0f) || !std::isfinite(s.f0)) fail("Poisson noise scale must be finite and >= 0");
        break;
      case kSaltPepper:
        if (!(s.f0 >= 0.0f && s.f0 <= 1.0f)) fail("salt-and-pepper amount must be in [0, 1]");
        break;
      case kJpeg:
        if (d.c != 3) fail("JPEG needs 3 channels");
        if (s.i0 < 1 || s.i0 > 100) fail("JPEG quality must be in 1..100");
        break;
      default:
        fail("unknown step code " + std::to_string(s.code));
    }
  }
  for (int64_t i = 0; i < b; ++i) {
    int64_t h = d.h, w = d.w;
    for (int64_t k = off[i]; k < off[i + 1]; ++k)
      if (steps[static_cast<size_t>(k)].code == kResize) h = steps[static_cast<size_t>(k)].i0, w = steps[static_cast<size_t>(k)].i1;
    if (h != d.h || w != d.w) fail("image " + std::to_string(i) + "'s steps do not end at the input size");
  }
  return steps;
}

}  // namespace
}  // namespace degrade
}  // namespace pyfill

PYFILL_REGISTER(degrade) {
  using namespace pyfill::degrade;

  m.def("degrade_sep_filter", [](const Image& img, const FloatArray& kx, const FloatArray& ky) {
    int64_t b;
    const Dim d = checked_shape(img, "sep_filter", &b);
    const auto vx = odd_kernel(kx, "kx"), vy = odd_kernel(ky, "ky");
    return run_typed(img, "sep_filter", dims(b, d), [&](const auto* src, auto* dst) {
      for_images(src, dst, b, d.size(), d.size(), [&](const auto* s, auto* o, int64_t, Scratch& sc) {
        sep_filter(s, o, d, vx, vy, sc);
      });
    });
  }, py::arg("img"), py::arg("kx"), py::arg("ky"),
        "Separable correlation of (B, H, W, C) uint8/float32 images with odd 1-D float32 kernels, "
        "reflect-101 borders; parallel over images.");

  m.def("degrade_filter2d", [](const Image& img, const FloatArray& kernel) {
    int64_t b;
    const Dim d = checked_shape(img, "filter2d", &b);
    if (kernel.ndim() != 2 || kernel.shape(0) != kernel.shape(1) || kernel.shape(0) % 2 == 0)
      throw std::invalid_argument("filter2d: kernel must be square with an odd size");
    const int64_t k = kernel.shape(0);
    const std::vector<float> w(kernel.data(), kernel.data() + k * k);
    return run_typed(img, "filter2d", dims(b, d), [&](const auto* src, auto* dst) {
      for_images(src, dst, b, d.size(), d.size(), [&](const auto* s, auto* o, int64_t, Scratch& sc) {
        filter2d(s, o, d, w, k, sc);
      });
    });
  }, py::arg("img"), py::arg("kernel"),
        "2-D correlation of (B, H, W, C) uint8/float32 images with a square odd (K, K) float32 kernel, "
        "reflect-101 borders; parallel over images.");

  m.def("degrade_resize", [](const Image& img, int64_t oh, int64_t ow, int interp) {
    int64_t b;
    const Dim d = checked_shape(img, "resize", &b);
    if (oh < 1 || ow < 1) throw std::invalid_argument("resize: output size must be positive");
    if (interp < kNearest || interp > kArea) throw std::invalid_argument("resize: unknown interpolation");
    const Dim od{oh, ow, d.c};
    return run_typed(img, "resize", dims(b, od), [&](const auto* src, auto* dst) {
      for_images(src, dst, b, d.size(), od.size(), [&](const auto* s, auto* o, int64_t, Scratch& sc) {
        resize(s, o, d, oh, ow, interp, sc);
      });
    });
  }, py::arg("img"), py::arg("height"), py::arg("width"), py::arg("interp"),
        "Resize (B, H, W, C) uint8/float32 images to (B, height, width, C) with OpenCV's conventions "
        "(0 nearest, 1 bilinear, 2 bicubic, 3 area); parallel over images.");

  m.def("degrade_gaussian_noise", [](const Image& img, float sigma, float mean, bool gray,
                                     const SeedArray& seeds, const StreamArray& streams) {
    int64_t b;
    const Dim d = checked_shape(img, "gaussian_noise", &b);
    if (!(sigma >= 0.0f) || !std::isfinite(mean)) throw std::invalid_argument("gaussian_noise: bad sigma or mean");
    const Streams st = checked_streams(seeds, streams, b, "gaussian_noise");
    return run_typed(img, "gaussian_noise", dims(b, d), [&](const auto* src, auto* dst) {
      for_images(src, dst, b, d.size(), d.size(), [&](const auto* s, auto* o, int64_t i, Scratch& sc) {
        gaussian_noise(s, o, d, sigma, mean, gray, st.of(i), sc);
      });
    });
  }, py::arg("img"), py::arg("sigma"), py::arg("mean"), py::arg("gray"), py::arg("seeds"), py::arg("streams"),
        "Add N(mean, sigma^2) noise (grey levels of 0..255) to (B, H, W, C) images from per-image "
        "Philox streams (seeds: uint64 (B,), streams: uint32 (B,)).");

  m.def("degrade_poisson_noise", [](const Image& img, float scale, bool gray, const SeedArray& seeds,
                                    const StreamArray& streams) {
    int64_t b;
    const Dim d = checked_shape(img, "poisson_noise", &b);
    if (!(scale >= 0.0f)) throw std::invalid_argument("poisson_noise: scale must be >= 0");
    const Streams st = checked_streams(seeds, streams, b, "poisson_noise");
    return run_typed(img, "poisson_noise", dims(b, d), [&](const auto* src, auto* dst) {
      for_images(src, dst, b, d.size(), d.size(), [&](const auto* s, auto* o, int64_t i, Scratch& sc) {
        poisson_noise(s, o, d, scale, gray, st.of(i), sc);
      });
    });
  }, py::arg("img"), py::arg("scale"), py::arg("gray"), py::arg("seeds"), py::arg("streams"),
        "Add scaled Poisson noise (counts = grey levels of 0..255) to (B, H, W, C) images from "
        "per-image Philox streams (seeds: uint64 (B,), streams: uint32 (B,)).");

  m.def("degrade_salt_pepper", [](const Image& img, float amount, const SeedArray& seeds,
                                  const StreamArray& streams) {
    int64_t b;
    const Dim d = checked_shape(img, "salt_pepper", &b);
    if (!(amount >= 0.0f && amount <= 1.0f)) throw std::invalid_argument("salt_pepper: amount must be in [0, 1]");
    const Streams st = checked_streams(seeds, streams, b, "salt_pepper");
    return run_typed(img, "salt_pepper", dims(b, d), [&](const auto* src, auto* dst) {
      for_images(src, dst, b, d.size(), d.size(), [&](const auto* s, auto* o, int64_t i, Scratch& sc) {
        salt_pepper(s, o, d, amount, st.of(i), sc);
      });
    });
  }, py::arg("img"), py::arg("amount"), py::arg("seeds"), py::arg("streams"),
        "Set a fraction `amount` of the pixels of (B, H, W, C) images to black or white from "
        "per-image Philox streams (seeds: uint64 (B,), streams: uint32 (B,)).");

  m.def("degrade_jpeg", [](const Image& img, int quality, bool sub420) {
    int64_t b;
    const Dim d = checked_shape(img, "jpeg", &b);
    if (d.c != 3) throw std::invalid_argument("jpeg: images must have 3 channels");
    if (quality < 1 || quality > 100) throw std::invalid_argument("jpeg: quality must be in 1..100");
    return run_typed(img, "jpeg", dims(b, d), [&](const auto* src, auto* dst) {
      for_images(src, dst, b, d.size(), d.size(), [&](const auto* s, auto* o, int64_t, Scratch& sc) {
        jpeg(s, o, d, quality, sub420, sc);
      });
    });
  }, py::arg("img"), py::arg("quality"), py::arg("subsample_420"),
        "JPEG's lossy path (colour conversion, chroma subsampling, DCT quantisation) on (B, H, W, 3) "
        "images, without entropy coding; parallel over images.");

  m.def("degrade_apply_pipeline", [](const Image& img, const IndexArray& steps, const FloatArray& params,
                                     const SeedArray& seeds, const FloatArray& kernels, const IndexArray& offsets) {
    int64_t b;
    const Dim d = checked_shape(img, "apply_pipeline", &b);
    const std::vector<Step> decoded = decode_steps(d, b, steps, params, seeds, kernels, offsets);
    const std::vector<int64_t> off(offsets.data(), offsets.data() + b + 1);
    return run_typed(img, "apply_pipeline", dims(b, d), [&](const auto* src, auto* dst) {
      apply_pipeline(src, dst, d, b, decoded, off);
    });
  }, py::arg("img"), py::arg("steps"), py::arg("params"), py::arg("seeds"), py::arg("kernels"), py::arg("offsets"),
        "Apply per-image step lists to (B, H, W, C) uint8/float32 images, each image's chain in one "
        "task, images in parallel. Image i's steps are rows offsets[i]..offsets[i+1] (offsets: int64 "
        "(B + 1,)) of steps (int64 (S, 6): code, i0, i1, i2, kernel offset, kernel length), params "
        "(float32 (S, 2): f0, f1) and seeds (uint64 (S,)); kernels is the float32 array the kernel "
        "slices index. Codes: 0 separable blur (1-D taps on both axes), 1 2-D correlation (K*K taps), "
        "2 resize (i0 height, i1 width, i2 interpolation), 3 Gaussian noise (f0 sigma, f1 mean, i0 "
        "gray), 4 Poisson noise (f0 scale, i0 gray), 5 salt and pepper (f0 amount), 6 JPEG (i0 "
        "quality, i1 4:2:0). Noise uses stream 0 of its seed, as a lone image does. Every image's "
        "steps must end at the input size. Returns the (B, H, W, C) result.");
}
