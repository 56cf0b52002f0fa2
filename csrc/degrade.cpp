// C++ degradation kernels (blur, resize, noise, JPEG) on batches of images (B, H, W, C), uint8
// or float32 in [0, 1], parallel over images and rows. Every kernel computes in float and
// saturates the result to the input's value range.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "degrade_common.h"
#include "degrade_resize.h"
#include "parallel.h"
#include "registry.h"

namespace py = pybind11;

namespace pyfill {
namespace degrade {
namespace {

struct Shape {
  int64_t b, h, w, c;
  int64_t row() const { return w * c; }
  int64_t image() const { return h * w * c; }
};

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

template <class T>
void store_row(const float* acc, T* dst, int64_t n) {
  for (int64_t j = 0; j < n; ++j) store(acc[j], dst + j);
}

inline int64_t reflect101(int64_t i, int64_t n) {
  if (n == 1) return 0;
  while (i < 0 || i >= n) {
    if (i < 0) i = -i;
    if (i >= n) i = 2 * n - 2 - i;
  }
  return i;
}

// Row y of image b, widened by r pixels on each side with reflect-101 borders, as float.
template <class T>
void padded_row(const T* src, const Shape& s, int64_t b, int64_t y, int64_t r, float* out) {
  const T* row = src + b * s.image() + y * s.row();
  const int64_t n = s.row();
  for (int64_t j = 0; j < n; ++j) out[r * s.c + j] = static_cast<float>(row[j]);
  for (int64_t x = -r; x < 0; ++x)
    for (int64_t ch = 0; ch < s.c; ++ch) out[(x + r) * s.c + ch] = static_cast<float>(row[reflect101(x, s.w) * s.c + ch]);
  for (int64_t x = s.w; x < s.w + r; ++x)
    for (int64_t ch = 0; ch < s.c; ++ch) out[(x + r) * s.c + ch] = static_cast<float>(row[reflect101(x, s.w) * s.c + ch]);
}

// Separable correlation with kernels kx (horizontal) and ky (vertical), both odd length.
template <class T>
void sep_filter(const T* src, T* dst, const Shape& s, const std::vector<float>& kx,
                const std::vector<float>& ky) {
  const int64_t rx = static_cast<int64_t>(kx.size()) / 2, ry = static_cast<int64_t>(ky.size()) / 2;
  const int64_t n = s.row();
  std::unique_ptr<float[]> tmp(new float[static_cast<size_t>(s.b * s.h * n)]);
  parallel_for(s.b * s.h, [&](int64_t begin, int64_t end) {
    std::vector<float> pad(static_cast<size_t>((s.w + 2 * rx) * s.c));
    for (int64_t i = begin; i < end; ++i) {
      padded_row(src, s, i / s.h, i % s.h, rx, pad.data());
      float* out = tmp.get() + i * n;
      std::fill(out, out + n, 0.0f);
      for (size_t k = 0; k < kx.size(); ++k) {
        const float wk = kx[k];
        const float* in = pad.data() + static_cast<int64_t>(k) * s.c;
        for (int64_t j = 0; j < n; ++j) out[j] += wk * in[j];
      }
    }
  }, 8);
  parallel_for(s.b * s.h, [&](int64_t begin, int64_t end) {
    std::vector<float> acc(static_cast<size_t>(n));
    for (int64_t i = begin; i < end; ++i) {
      const int64_t b = i / s.h, y = i % s.h;
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (size_t k = 0; k < ky.size(); ++k) {
        const float wk = ky[k];
        const float* in = tmp.get() + (b * s.h + reflect101(y + static_cast<int64_t>(k) - ry, s.h)) * n;
        for (int64_t j = 0; j < n; ++j) acc[j] += wk * in[j];
      }
      store_row(acc.data(), dst + i * n, n);
    }
  }, 8);
}

// 2-D correlation with a square odd kernel (K x K, row-major); zero taps are skipped, so sparse
// kernels such as motion-blur lines cost only their non-zero taps.
template <class T>
void filter2d(const T* src, T* dst, const Shape& s, const std::vector<float>& kernel, int64_t ksize) {
  const int64_t r = ksize / 2, n = s.row(), pn = (s.w + 2 * r) * s.c;
  struct Tap {
    int64_t dy, offset;
    float w;
  };
  std::vector<Tap> taps;
  for (int64_t ky = 0; ky < ksize; ++ky)
    for (int64_t kx = 0; kx < ksize; ++kx)
      if (kernel[static_cast<size_t>(ky * ksize + kx)] != 0.0f)
        taps.push_back({ky - r, kx * s.c, kernel[static_cast<size_t>(ky * ksize + kx)]});
  std::unique_ptr<float[]> pad(new float[static_cast<size_t>(s.b * s.h * pn)]);
  parallel_for(s.b * s.h, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) padded_row(src, s, i / s.h, i % s.h, r, pad.get() + i * pn);
  }, 8);
  parallel_for(s.b * s.h, [&](int64_t begin, int64_t end) {
    std::vector<float> acc(static_cast<size_t>(n));
    for (int64_t i = begin; i < end; ++i) {
      const int64_t b = i / s.h, y = i % s.h;
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (const Tap& t : taps) {
        const float* in = pad.get() + (b * s.h + reflect101(y + t.dy, s.h)) * pn + t.offset;
        for (int64_t j = 0; j < n; ++j) acc[j] += t.w * in[j];
      }
      store_row(acc.data(), dst + i * n, n);
    }
  }, 8);
}

// Separable resampling through OpenCV-convention tables: horizontal pass into a float buffer of
// the source rows, then vertical pass into the output.
template <class T>
void resize(const T* src, T* dst, const Shape& s, int64_t oh, int64_t ow, int interp) {
  const bool down = oh <= s.h && ow <= s.w;
  const AxisTable tx = resize_axis(static_cast<int>(s.w), static_cast<int>(ow), interp, down);
  const AxisTable ty = resize_axis(static_cast<int>(s.h), static_cast<int>(oh), interp, down);
  const int64_t c = s.c, on = ow * c;
  std::unique_ptr<float[]> tmp(new float[static_cast<size_t>(s.b * s.h * on)]);
  parallel_for(s.b * s.h, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const T* row = src + i * s.row();
      float* out = tmp.get() + i * on;
      if (c == 3) {
        for (int64_t x = 0; x < ow; ++x) {
          float v0 = 0.0f, v1 = 0.0f, v2 = 0.0f;
          for (int k = 0; k < tx.taps; ++k) {
            const size_t t = static_cast<size_t>(x * tx.taps + k);
            const T* px = row + tx.index[t] * 3;
            const float wk = tx.weight[t];
            v0 += wk * static_cast<float>(px[0]);
            v1 += wk * static_cast<float>(px[1]);
            v2 += wk * static_cast<float>(px[2]);
          }
          out[x * 3] = v0;
          out[x * 3 + 1] = v1;
          out[x * 3 + 2] = v2;
        }
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
  }, 8);
  parallel_for(s.b * oh, [&](int64_t begin, int64_t end) {
    std::vector<float> acc(static_cast<size_t>(on));
    for (int64_t i = begin; i < end; ++i) {
      const int64_t b = i / oh, y = i % oh;
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int k = 0; k < ty.taps; ++k) {
        const size_t t = static_cast<size_t>(y * ty.taps + k);
        const float wk = ty.weight[t];
        if (wk == 0.0f) continue;
        const float* in = tmp.get() + (b * s.h + ty.index[t]) * on;
        for (int64_t j = 0; j < on; ++j) acc[j] += wk * in[j];
      }
      store_row(acc.data(), dst + i * on, on);
    }
  }, 8);
}

struct Streams {
  const uint64_t* seed;    // per image
  const uint32_t* stream;  // per image
};

inline float luma(float r, float g, float b) { return 0.299f * r + 0.587f * g + 0.114f * b; }

// Gaussian noise N(mean, sigma^2) in grey levels; draw i of an image's stream gives the four
// normals of samples 4i..4i+3 (samples are values, or pixels when gray).
template <class T>
void gaussian_noise(const T* src, T* dst, const Shape& s, float sigma, float mean, bool gray,
                    Streams st) {
  const float to255 = 255.0f / kLevels<T>, from255 = kLevels<T> / 255.0f;
  parallel_for(s.b * s.h, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t b = i / s.h, y = i % s.h;
      const int64_t per_row = gray ? s.w : s.row();
      const int64_t first = y * per_row;
      int64_t block = -1;
      float z[4] = {0, 0, 0, 0};
      const T* in = src + i * s.row();
      T* out = dst + i * s.row();
      for (int64_t k = 0; k < per_row; ++k) {
        const int64_t sample = first + k;
        if (sample / 4 != block) {
          block = sample / 4;
          const Philox4 r = draw(st.seed[b], st.stream[b], kTagGaussian, static_cast<uint64_t>(block));
          box_muller(r.v[0], r.v[1], &z[0], &z[1]);
          box_muller(r.v[2], r.v[3], &z[2], &z[3]);
        }
        const float noise = mean + sigma * z[sample & 3];
        if (gray) {
          for (int64_t ch = 0; ch < s.c; ++ch)
            store((static_cast<float>(in[k * s.c + ch]) * to255 + noise) * from255, out + k * s.c + ch);
        } else {
          store((static_cast<float>(in[k]) * to255 + noise) * from255, out + k);
        }
      }
    }
  }, 8);
}

// Poisson (shot) noise: each value v (grey levels) becomes v + scale * (Poisson(v) - v); gray
// draws one count per pixel from its luma and adds the same noise to every channel. Draw index =
// value (or pixel) index.
template <class T>
void poisson_noise(const T* src, T* dst, const Shape& s, float scale, bool gray, Streams st) {
  const float lv = kLevels<T>, to255 = 255.0f / lv, from255 = lv / 255.0f;
  parallel_for(s.b * s.h, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t b = i / s.h, y = i % s.h;
      const T* in = src + i * s.row();
      T* out = dst + i * s.row();
      for (int64_t x = 0; x < s.w; ++x) {
        const T* px = in + x * s.c;
        if (gray && s.c == 3) {
          const float lam = luma(px[0], px[1], px[2]) * to255;
          const Philox4 r = draw(st.seed[b], st.stream[b], kTagPoisson, static_cast<uint64_t>(y * s.w + x));
          const float noise = scale * (poisson_sample(lam, r) - lam) * from255;
          for (int64_t ch = 0; ch < s.c; ++ch) store(static_cast<float>(px[ch]) + noise, out + x * s.c + ch);
          continue;
        }
        for (int64_t ch = 0; ch < s.c; ++ch) {
          const float lam = static_cast<float>(px[ch]) * to255;
          const Philox4 r = draw(st.seed[b], st.stream[b], kTagPoisson,
                                 static_cast<uint64_t>((y * s.w + x) * s.c + ch));
          store(static_cast<float>(px[ch]) + scale * (poisson_sample(lam, r) - lam) * from255,
                out + x * s.c + ch);
        }
      }
    }
  }, 8);
}

// Salt and pepper: each pixel (all channels) becomes black or white with probability `amount`
// (half each); draw index = pixel index.
template <class T>
void salt_pepper(const T* src, T* dst, const Shape& s, float amount, Streams st) {
  const uint64_t threshold = static_cast<uint64_t>(static_cast<double>(amount) * 4294967296.0);
  const T white = static_cast<T>(kLevels<T>);
  parallel_for(s.b * s.h, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t b = i / s.h, y = i % s.h;
      const T* in = src + i * s.row();
      T* out = dst + i * s.row();
      std::copy(in, in + s.row(), out);
      for (int64_t x = 0; x < s.w; ++x) {
        const Philox4 r = draw(st.seed[b], st.stream[b], kTagSaltPepper, static_cast<uint64_t>(y * s.w + x));
        if (r.v[0] >= threshold) continue;
        const T v = (r.v[1] & 1u) ? white : T(0);
        for (int64_t ch = 0; ch < s.c; ++ch) out[x * s.c + ch] = v;
      }
    }
  }, 8);
}

inline uint8_t to_u8(uint8_t v) { return v; }
inline uint8_t to_u8(float v) { return saturate_u8(v * 255.0f); }
inline void from_u8(int v, uint8_t* dst) { *dst = static_cast<uint8_t>(v); }
inline void from_u8(int v, float* dst) { *dst = static_cast<float>(v) * (1.0f / 255.0f); }

// JPEG's lossy path. Pass 1, per image and MCU row: RGB -> YCbCr (8-bit), chroma 2x2 averaging
// for 4:2:0, 8x8 DCT round trip of every block into reconstructed planes. Pass 2, per row:
// chroma upsampling (libjpeg's triangular filter) and YCbCr -> RGB. Edges are replicated to whole
// MCUs as libjpeg does.
template <class T>
void jpeg(const T* src, T* dst, const Shape& s, int quality, bool sub420) {
  const int64_t mcu = sub420 ? 16 : 8;
  const int64_t pw = (s.w + mcu - 1) / mcu * mcu, ph = (s.h + mcu - 1) / mcu * mcu;
  const int64_t cw = sub420 ? pw / 2 : pw, chh = sub420 ? ph / 2 : ph;
  const int64_t real_cw = sub420 ? (s.w + 1) / 2 : s.w, real_ch = sub420 ? (s.h + 1) / 2 : s.h;
  float basis[64], basis_t[64], qy[64], qc[64];
  for (int u = 0; u < 8; ++u)
    for (int x = 0; x < 8; ++x) basis_t[x * 8 + u] = basis[u * 8 + x] = dct_basis(u, x);
  for (int i = 0; i < 64; ++i) {
    qy[i] = static_cast<float>(jpeg_quant(0, i, quality));
    qc[i] = static_cast<float>(jpeg_quant(1, i, quality));
  }
  const int64_t ysize = pw * ph, csize = cw * chh, per_image = ysize + 2 * csize;
  std::vector<uint8_t> planes(static_cast<size_t>(s.b * per_image));
  const int64_t mcu_rows = ph / mcu;
  parallel_for(s.b * mcu_rows, [&](int64_t begin, int64_t end) {
    std::vector<int> ycc(static_cast<size_t>(mcu * pw * 3));
    float blk[64];
    for (int64_t job = begin; job < end; ++job) {
      const int64_t b = job / mcu_rows, y0 = (job % mcu_rows) * mcu;
      const T* img = src + b * s.image();
      for (int64_t y = 0; y < mcu; ++y) {
        const T* row = img + std::min(y0 + y, s.h - 1) * s.row();
        for (int64_t x = 0; x < pw; ++x) {
          const T* px = row + std::min(x, s.w - 1) * 3;
          int* o = ycc.data() + (y * pw + x) * 3;
          rgb_to_ycc(to_u8(px[0]), to_u8(px[1]), to_u8(px[2]), o, o + 1, o + 2);
        }
      }
      uint8_t* yplane = planes.data() + b * per_image;
      for (int64_t bx = 0; bx < pw; bx += 8)
        for (int64_t by = 0; by < mcu; by += 8) {
          for (int i = 0; i < 64; ++i)
            blk[i] = static_cast<float>(ycc[((by + i / 8) * pw + bx + i % 8) * 3]) - 128.0f;
          jpeg_block_roundtrip(blk, basis, basis_t, qy);
          for (int i = 0; i < 64; ++i)
            yplane[(y0 + by + i / 8) * pw + bx + i % 8] = static_cast<uint8_t>(clamp255(round_half_up(blk[i] + 128.0f)));
        }
      const int64_t cy0 = sub420 ? y0 / 2 : y0, crows = sub420 ? mcu / 2 : mcu;
      for (int comp = 1; comp <= 2; ++comp) {
        uint8_t* cplane = yplane + ysize + (comp - 1) * csize;
        for (int64_t bx = 0; bx < cw; bx += 8)
          for (int64_t by = 0; by < crows; by += 8) {
            for (int i = 0; i < 64; ++i) {
              const int64_t cx = bx + i % 8, cy = by + i / 8;
              int v;
              if (sub420) {
                const int64_t fx = 2 * cx, fy = 2 * cy;
                v = (ycc[(fy * pw + fx) * 3 + comp] + ycc[(fy * pw + fx + 1) * 3 + comp] +
                     ycc[((fy + 1) * pw + fx) * 3 + comp] + ycc[((fy + 1) * pw + fx + 1) * 3 + comp] +
                     ((cx & 1) ? 2 : 1)) >> 2;
              } else {
                v = ycc[(cy * pw + cx) * 3 + comp];
              }
              blk[i] = static_cast<float>(v) - 128.0f;
            }
            jpeg_block_roundtrip(blk, basis, basis_t, qc);
            for (int i = 0; i < 64; ++i)
              cplane[(cy0 + by + i / 8) * cw + bx + i % 8] = static_cast<uint8_t>(clamp255(round_half_up(blk[i] + 128.0f)));
          }
      }
    }
  }, 1);
  parallel_for(s.b * s.h, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t b = i / s.h, y = i % s.h;
      const uint8_t* yplane = planes.data() + b * per_image;
      const uint8_t* cb = yplane + ysize;
      const uint8_t* cr = cb + csize;
      T* out = dst + i * s.row();
      for (int64_t x = 0; x < s.w; ++x) {
        int vb, vr;
        if (sub420) {
          vb = fancy_upsample(cb, static_cast<int>(cw), static_cast<int>(real_cw), static_cast<int>(real_ch),
                              static_cast<int>(x), static_cast<int>(y));
          vr = fancy_upsample(cr, static_cast<int>(cw), static_cast<int>(real_cw), static_cast<int>(real_ch),
                              static_cast<int>(x), static_cast<int>(y));
        } else {
          vb = cb[y * cw + x];
          vr = cr[y * cw + x];
        }
        int r, g, bl;
        ycc_to_rgb(yplane[y * pw + x], vb, vr, &r, &g, &bl);
        from_u8(r, out + x * 3);
        from_u8(g, out + x * 3 + 1);
        from_u8(bl, out + x * 3 + 2);
      }
    }
  }, 8);
}

// ---- bindings ------------------------------------------------------------------------------

using Image = py::array;

Shape checked_shape(const Image& img, const char* op) {
  if (img.ndim() != 4)
    throw std::invalid_argument(std::string(op) + ": expected a (B, H, W, C) array");
  if (!(img.flags() & py::array::c_style))
    throw std::invalid_argument(std::string(op) + ": array must be C-contiguous");
  const Shape s{img.shape(0), img.shape(1), img.shape(2), img.shape(3)};
  if (s.b < 1 || s.h < 1 || s.w < 1 || s.c < 1)
    throw std::invalid_argument(std::string(op) + ": empty image");
  return s;
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

std::vector<py::ssize_t> dims(const Shape& s) { return {s.b, s.h, s.w, s.c}; }

std::vector<float> odd_kernel(const py::array_t<float, py::array::c_style | py::array::forcecast>& k,
                              const char* what) {
  if (k.ndim() != 1 || k.shape(0) < 1 || k.shape(0) % 2 == 0)
    throw std::invalid_argument(std::string(what) + " must be a 1-D kernel of odd length");
  return std::vector<float>(k.data(), k.data() + k.shape(0));
}

Streams checked_streams(const py::array_t<uint64_t, py::array::c_style | py::array::forcecast>& seeds,
                        const py::array_t<uint32_t, py::array::c_style | py::array::forcecast>& streams,
                        const Shape& s, const char* op) {
  if (seeds.ndim() != 1 || streams.ndim() != 1 || seeds.shape(0) != s.b || streams.shape(0) != s.b)
    throw std::invalid_argument(std::string(op) + ": seeds and streams need one entry per image");
  return Streams{seeds.data(), streams.data()};
}

}  // namespace
}  // namespace degrade
}  // namespace pyfill

PYFILL_REGISTER(degrade) {
  using namespace pyfill::degrade;
  using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;
  using SeedArray = py::array_t<uint64_t, py::array::c_style | py::array::forcecast>;
  using StreamArray = py::array_t<uint32_t, py::array::c_style | py::array::forcecast>;

  m.def("degrade_sep_filter", [](const Image& img, const FloatArray& kx, const FloatArray& ky) {
    const Shape s = checked_shape(img, "sep_filter");
    const auto vx = odd_kernel(kx, "kx"), vy = odd_kernel(ky, "ky");
    return run_typed(img, "sep_filter", dims(s), [&](const auto* src, auto* dst) { sep_filter(src, dst, s, vx, vy); });
  }, py::arg("img"), py::arg("kx"), py::arg("ky"),
        "Separable correlation of (B, H, W, C) images with odd 1-D kernels, reflect-101 borders.");

  m.def("degrade_filter2d", [](const Image& img, const FloatArray& kernel) {
    const Shape s = checked_shape(img, "filter2d");
    if (kernel.ndim() != 2 || kernel.shape(0) != kernel.shape(1) || kernel.shape(0) % 2 == 0)
      throw std::invalid_argument("filter2d: kernel must be square with an odd size");
    const int64_t k = kernel.shape(0);
    const std::vector<float> w(kernel.data(), kernel.data() + k * k);
    return run_typed(img, "filter2d", dims(s), [&](const auto* src, auto* dst) { filter2d(src, dst, s, w, k); });
  }, py::arg("img"), py::arg("kernel"),
        "2-D correlation of (B, H, W, C) images with a square odd kernel, reflect-101 borders.");

  m.def("degrade_resize", [](const Image& img, int64_t oh, int64_t ow, int interp) {
    const Shape s = checked_shape(img, "resize");
    if (oh < 1 || ow < 1) throw std::invalid_argument("resize: output size must be positive");
    if (interp < kNearest || interp > kArea) throw std::invalid_argument("resize: unknown interpolation");
    return run_typed(img, "resize", {s.b, oh, ow, s.c},
                     [&](const auto* src, auto* dst) { resize(src, dst, s, oh, ow, interp); });
  }, py::arg("img"), py::arg("height"), py::arg("width"), py::arg("interp"),
        "Resize (B, H, W, C) images with OpenCV's conventions (0 nearest, 1 bilinear, 2 bicubic, 3 area).");

  m.def("degrade_gaussian_noise", [](const Image& img, float sigma, float mean, bool gray,
                                     const SeedArray& seeds, const StreamArray& streams) {
    const Shape s = checked_shape(img, "gaussian_noise");
    if (!(sigma >= 0.0f) || !std::isfinite(mean)) throw std::invalid_argument("gaussian_noise: bad sigma or mean");
    const Streams st = checked_streams(seeds, streams, s, "gaussian_noise");
    return run_typed(img, "gaussian_noise", dims(s),
                     [&](const auto* src, auto* dst) { gaussian_noise(src, dst, s, sigma, mean, gray, st); });
  }, py::arg("img"), py::arg("sigma"), py::arg("mean"), py::arg("gray"), py::arg("seeds"), py::arg("streams"),
        "Add N(mean, sigma^2) noise (grey levels of 0..255) from per-image Philox streams.");

  m.def("degrade_poisson_noise", [](const Image& img, float scale, bool gray, const SeedArray& seeds,
                                    const StreamArray& streams) {
    const Shape s = checked_shape(img, "poisson_noise");
    if (!(scale >= 0.0f)) throw std::invalid_argument("poisson_noise: scale must be >= 0");
    const Streams st = checked_streams(seeds, streams, s, "poisson_noise");
    return run_typed(img, "poisson_noise", dims(s),
                     [&](const auto* src, auto* dst) { poisson_noise(src, dst, s, scale, gray, st); });
  }, py::arg("img"), py::arg("scale"), py::arg("gray"), py::arg("seeds"), py::arg("streams"),
        "Add scaled Poisson noise (counts = grey levels of 0..255) from per-image Philox streams.");

  m.def("degrade_salt_pepper", [](const Image& img, float amount, const SeedArray& seeds,
                                  const StreamArray& streams) {
    const Shape s = checked_shape(img, "salt_pepper");
    if (!(amount >= 0.0f && amount <= 1.0f)) throw std::invalid_argument("salt_pepper: amount must be in [0, 1]");
    const Streams st = checked_streams(seeds, streams, s, "salt_pepper");
    return run_typed(img, "salt_pepper", dims(s),
                     [&](const auto* src, auto* dst) { salt_pepper(src, dst, s, amount, st); });
  }, py::arg("img"), py::arg("amount"), py::arg("seeds"), py::arg("streams"),
        "Set a fraction `amount` of pixels to black or white from per-image Philox streams.");

  m.def("degrade_jpeg", [](const Image& img, int quality, bool sub420) {
    const Shape s = checked_shape(img, "jpeg");
    if (s.c != 3) throw std::invalid_argument("jpeg: images must have 3 channels");
    if (quality < 1 || quality > 100) throw std::invalid_argument("jpeg: quality must be in 1..100");
    return run_typed(img, "jpeg", dims(s), [&](const auto* src, auto* dst) { jpeg(src, dst, s, quality, sub420); });
  }, py::arg("img"), py::arg("quality"), py::arg("subsample_420"),
        "JPEG's lossy path (colour conversion, chroma subsampling, DCT quantisation) without entropy coding.");
}
