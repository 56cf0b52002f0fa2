// Arithmetic shared by the C++ and CUDA degradation kernels: the Philox4x32-10 counter-based RNG,
// the noise samplers built on it, and JPEG's colour conversion and quantisation tables. Every
// function here compiles for host and device, so both back ends draw the same random numbers.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#ifdef __CUDACC__
#define PYFILL_HD __host__ __device__ __forceinline__
#else
#define PYFILL_HD inline
#endif

namespace pyfill {
namespace degrade {

// Tags keep the streams of different noise ops apart even under the same seed.
enum NoiseTag : uint32_t { kTagGaussian = 1, kTagPoisson = 2, kTagSaltPepper = 3 };

struct Philox4 {
  uint32_t v[4];
};

PYFILL_HD uint32_t mulhilo(uint32_t a, uint32_t b, uint32_t* hi) {
  const uint64_t p = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  *hi = static_cast<uint32_t>(p >> 32);
  return static_cast<uint32_t>(p);
}

// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3").
PYFILL_HD Philox4 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0,
                                uint32_t k1) {
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, hi1;
    const uint32_t lo0 = mulhilo(0xD2511F53u, c0, &hi0);
    const uint32_t lo1 = mulhilo(0xCD9E8D57u, c2, &hi1);
    const uint32_t n0 = hi1 ^ c1 ^ k0;
    const uint32_t n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return Philox4{{c0, c1, c2, c3}};
}

// The four random words of draw `index` in the stream (seed, stream, tag).
PYFILL_HD Philox4 draw(uint64_t seed, uint32_t stream, uint32_t tag, uint64_t index) {
  return philox4x32_10(static_cast<uint32_t>(index), static_cast<uint32_t>(index >> 32), stream,
                       tag, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

// Uniform in (0, 1): 24 random bits, centred in their cell so that log() never sees 0.
PYFILL_HD float uniform_open(uint32_t x) {
  return (static_cast<float>(x >> 8) + 0.5f) * (1.0f / 16777216.0f);
}

PYFILL_HD uint32_t float_bits(float x) {
  uint32_t b;
  memcpy(&b, &x, sizeof(b));
  return b;
}

PYFILL_HD float bits_float(uint32_t b) {
  float x;
  memcpy(&x, &b, sizeof(x));
  return x;
}

// Natural logarithm of a positive normal float (Cephes' logf polynomial, about 1 ulp). Written
// without branches or libm so that the CPU loops vectorise, and shared with CUDA so that both
// devices compute the same values.
PYFILL_HD float log_positive(float x) {
  const uint32_t bits = float_bits(x);
  int e = static_cast<int>((bits >> 23) & 0xffu) - 126;  // x = m * 2^e, m in [0.5, 1)
  float m = bits_float((bits & 0x007fffffu) | 0x3f000000u);
  const int small = m < 0.70710678118654752f;  // then m * 2 in [sqrt(0.5), 1), one e less
  const float twice = m + m;                      // computed unconditionally: a select, no branch
  e -= small;
  m = (small ? twice : m) - 1.0f;
  const float z = m * m;
  float y = 7.0376836292e-2f;
  y = y * m - 1.1514610310e-1f;
  y = y * m + 1.1676998740e-1f;
  y = y * m - 1.2420140846e-1f;
  y = y * m + 1.4249322787e-1f;
  y = y * m - 1.6668057665e-1f;
  y = y * m + 2.0000714765e-1f;
  y = y * m - 2.4999993993e-1f;
  y = y * m + 3.3333331174e-1f;
  y = y * m * z;
  const float fe = static_cast<float>(e);
  y += -2.12194440e-4f * fe;
  y += -0.5f * z;
  return (m + y) + 0.693359375f * fe;
}

// sin and cos of 2 pi u for u in [0, 1] (Cephes' single-precision polynomials on the angle
// reduced to [-pi/4, pi/4] by quarter turns), branch-free like log_positive().
PYFILL_HD void sincos_turns(float u, float* s, float* c) {
  const int q = static_cast<int>(u * 4.0f + 0.5f);
  const float r = (u - static_cast<float>(q) * 0.25f) * 6.2831853071795864f;
  const float z = r * r;
  const float ps = r + r * z * ((-1.9515295891e-4f * z + 8.3321608736e-3f) * z - 1.6666654611e-1f);
  const float pc = 1.0f - 0.5f * z + z * z * ((2.443315711809948e-5f * z - 1.388731625493765e-3f) * z + 4.166664568298827e-2f);
  const float a = (q & 1) ? pc : ps, b = (q & 1) ? ps : pc;
  *s = (q & 2) ? -a : a;
  *c = ((q + 1) & 2) ? -b : b;
}

// e^x for -40 < x <= 0 (Cephes' expf polynomial on x - n ln 2, about 1 ulp), written without
// libm so that the CPU and CUDA builds compute the same value: their expf() differ in the last bit.
PYFILL_HD float exp_nonpositive(float x) {
  const int n = static_cast<int>(x * 1.44269504088896341f + 64.5f) - 64;  // round(x / ln 2)
  const float fn = static_cast<float>(n);
  float r = x - fn * 0.693359375f;
  r = r - fn * -2.12194440e-4f;
  const float z = r * r;
  float y = 1.9875691500e-4f;
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * z + r + 1.0f;
  return y * bits_float(static_cast<uint32_t>(n + 127) << 23);  // times 2^n
}

// Two standard normals from two uniforms (Box-Muller).
PYFILL_HD void box_muller(uint32_t a, uint32_t b, float* z0, float* z1) {
  const float r = sqrtf(-2.0f * log_positive(uniform_open(a)));
  float s, c;
  sincos_turns(uniform_open(b), &s, &c);
  *z0 = r * c;
  *z1 = r * s;
}

// One of box_muller()'s two normals (z1 when `second`, else z0), with the same arithmetic.
PYFILL_HD float box_muller_one(uint32_t a, uint32_t b, bool second) {
  const float r = sqrtf(-2.0f * log_positive(uniform_open(a)));
  float s, c;
  sincos_turns(uniform_open(b), &s, &c);
  return r * (second ? s : c);
}

// A Poisson(lam) sample for 0 < lam < 16 by inversion of one uniform word.
PYFILL_HD float poisson_inversion(float lam, uint32_t w) {
  const float u = uniform_open(w);
  float p = exp_nonpositive(-lam);
  float cdf = p;
  int k = 0;
  while (u > cdf && k < 64) {
    ++k;
    p *= lam / static_cast<float>(k);
    cdf += p;
  }
  return static_cast<float>(k);
}

// The normal approximation of a Poisson(lam) sample (rounded, floored at 0) from two words.
PYFILL_HD float poisson_normal(float lam, uint32_t a, uint32_t b) {
  float z0, z1;
  box_muller(a, b, &z0, &z1);
  const float k = floorf(lam + sqrtf(lam) * z0 + 0.5f);
  return k < 0.0f ? 0.0f : k;
}

// A Poisson(lam) sample from one draw: inversion for small lam, the normal approximation for
// lam >= 16, where it is accurate to well under a grey level.
PYFILL_HD float poisson_sample(float lam, const Philox4& r) {
  if (lam <= 0.0f) return 0.0f;
  if (lam < 16.0f) return poisson_inversion(lam, r.v[0]);
  return poisson_normal(lam, r.v[1], r.v[2]);
}

// ---- JPEG ----------------------------------------------------------------------------------

// The standard luminance and chrominance quantisation tables (ITU T.81 Annex K), natural order.
PYFILL_HD int jpeg_base_quant(int table, int i) {
  constexpr unsigned char kLuma[64] = {
      16, 11, 10, 16, 24,  40,  51,  61,  12, 12, 14, 19, 26,  58,  60,  55,
      14, 13, 16, 24, 40,  57,  69,  56,  14, 17, 22, 29, 51,  87,  80,  62,
      18, 22, 37, 56, 68,  109, 103, 77,  24, 35, 55, 64, 81,  104, 113, 92,
      49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99};
  constexpr unsigned char kChroma[64] = {
      17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99,
      99, 99, 47, 66, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
      99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99};
  return table == 0 ? kLuma[i] : kChroma[i];
}

// libjpeg's jpeg_quality_scaling + jpeg_add_quant_table with force_baseline.
PYFILL_HD int jpeg_quant(int table, int i, int quality) {
  const int scale = quality < 50 ? 5000 / quality : 200 - quality * 2;
  int q = (jpeg_base_quant(table, i) * scale + 50) / 100;
  if (q < 1) q = 1;
  if (q > 255) q = 255;
  return q;
}

// cos((2x + 1) u pi / 16) * c(u) / 2: the orthonormal 8-point DCT-II basis, JPEG's FDCT.
PYFILL_HD float dct_basis(int u, int x) {
  const float c = u == 0 ? 0.35355339059327373f : 0.5f;
  return c * cosf(static_cast<float>((2 * x + 1) * u) * 0.19634954084936207f);
}

PYFILL_HD int clamp255(int v) { return v < 0 ? 0 : (v > 255 ? 255 : v); }

// floor(v + 0.5) for |v| < 4096 by truncating a shifted positive value: no libm call, so loops
// vectorise on baseline x86-64 (which has no SSE4.1 roundps).
PYFILL_HD int round_half_up(float v) { return static_cast<int>(v + 4096.5f) - 4096; }

// JFIF RGB -> YCbCr as libjpeg stores it (rounded to 8 bits).
PYFILL_HD void rgb_to_ycc(int r, int g, int b, int* y, int* cb, int* cr) {
  *y = clamp255(round_half_up(0.299f * r + 0.587f * g + 0.114f * b));
  *cb = clamp255(round_half_up(-0.168735892f * r - 0.331264108f * g + 0.5f * b + 128.0f));
  *cr = clamp255(round_half_up(0.5f * r - 0.418687589f * g - 0.081312411f * b + 128.0f));
}

PYFILL_HD void ycc_to_rgb(int y, int cb, int cr, int* r, int* g, int* b) {
  const float fcb = static_cast<float>(cb - 128), fcr = static_cast<float>(cr - 128);
  *r = clamp255(round_half_up(y + 1.402f * fcr));
  *g = clamp255(round_half_up(y - 0.344136286f * fcb - 0.714136286f * fcr));
  *b = clamp255(round_half_up(y + 1.772f * fcb));
}

// Quantise-dequantise one coefficient: round half away from zero, as libjpeg does.
PYFILL_HD float quantise(float coef, float q) {
  const float a = static_cast<float>(static_cast<int>(fabsf(coef) / q + 0.5f)) * q;
  return coef < 0.0f ? -a : a;
}

// JPEG's lossy core on one 8x8 block: t = B X, C = quantise(t B^T), t = B^T C, X = t B, with
// B[u][x] = dct_basis(u, x); every sum starts at 0 and adds its eight products in index order.
// The CPU (block_roundtrip() of degrade.cpp, eight lanes at a time) and CUDA (jpeg_blocks() of
// cuda/degrade.cu, one thread per coefficient) kernels both follow this order.

// libjpeg's h2v2 "fancy" (triangular) chroma upsampling of plane c (cw x ch samples, row
// stride `stride`) at full-resolution pixel (x, y). (The CPU kernels compute whole rows with
// fancy_row() of degrade.cpp, which gives the same values.)
PYFILL_HD int fancy_upsample(const uint8_t* c, int stride, int cw, int ch, int x, int y) {
  const int cy = y >> 1;
  int far = (y & 1) ? cy + 1 : cy - 1;
  far = far < 0 ? 0 : (far >= ch ? ch - 1 : far);
  const uint8_t* near_row = c + static_cast<int64_t>(cy) * stride;
  const uint8_t* far_row = c + static_cast<int64_t>(far) * stride;
  const int cx = x >> 1;
  const int here = 3 * near_row[cx] + far_row[cx];
  if ((x & 1) == 0) {
    if (cx == 0) return (here * 4 + 8) >> 4;
    return (here * 3 + 3 * near_row[cx - 1] + far_row[cx - 1] + 8) >> 4;
  }
  if (cx == cw - 1) return (here * 4 + 7) >> 4;
  return (here * 3 + 3 * near_row[cx + 1] + far_row[cx + 1] + 7) >> 4;
}

}  // namespace degrade
}  // namespace pyfill
