// CUDA degradation kernels: one thread per output value (pixel for gray noise and salt and
// pepper, DCT coefficient for JPEG). Arithmetic shared with the CPU lives in degrade_common.h;
// both builds compile without FMA contraction, so the two devices return the same bits.
#include <cuda_runtime.h>

#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <vector>

#include "cuda/cuda_check.h"
#include "cuda/degrade.h"
#include "degrade_common.h"
#include "degrade_resize.h"

namespace pyfill {
namespace cuda_degrade {
namespace {

using namespace pyfill::degrade;

constexpr int kThreads = 256;

inline unsigned blocks_for(int64_t n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); }

template <class T>
struct Px;
template <>
struct Px<uint8_t> {
  static constexpr float levels = 255.0f;
  __device__ static void store(float v, uint8_t* d) {
    v = v < 0.0f ? 0.0f : (v > 255.0f ? 255.0f : v);
    *d = static_cast<uint8_t>(static_cast<int>(v + 0.5f));
  }
  __device__ static int to_u8(uint8_t v) { return v; }
  __device__ static uint8_t from_u8(int v) { return static_cast<uint8_t>(v); }
};
template <>
struct Px<float> {
  static constexpr float levels = 1.0f;
  __device__ static void store(float v, float* d) { *d = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v); }
  __device__ static int to_u8(float v) {
    v *= 255.0f;
    v = v < 0.0f ? 0.0f : (v > 255.0f ? 255.0f : v);
    return static_cast<int>(v + 0.5f);
  }
  __device__ static float from_u8(int v) { return static_cast<float>(v) * (1.0f / 255.0f); }
};

__device__ __forceinline__ int reflect101(int i, int n) {
  if (n == 1) return 0;
  while (i < 0 || i >= n) {
    if (i < 0) i = -i;
    if (i >= n) i = 2 * n - 2 - i;
  }
  return i;
}

// Device scratch memory tied to one stream, released (stream-ordered) when it goes out of scope.
class Scratch {
 public:
  Scratch(size_t bytes, cudaStream_t stream) : stream_(stream) {
    PYFILL_CUDA_CHECK(cudaMallocAsync(&ptr_, bytes == 0 ? 1 : bytes, stream));
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch() { cudaFreeAsync(ptr_, stream_); }
  template <class U>
  U* as() const { return static_cast<U*>(ptr_); }

 private:
  void* ptr_ = nullptr;
  cudaStream_t stream_;
};

template <class U>
void upload(const Scratch& dst, const std::vector<U>& v, cudaStream_t stream) {
  PYFILL_CUDA_CHECK(cudaMemcpyAsync(dst.as<U>(), v.data(), v.size() * sizeof(U), cudaMemcpyHostToDevice, stream));
}

// ---- blur ----------------------------------------------------------------------------------

template <class T>
__global__ void hpass(const T* src, float* tmp, Dims d, const float* k, int klen) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t n = static_cast<int64_t>(d.b) * d.h * d.w * d.c;
  if (i >= n) return;
  const int ch = static_cast<int>(i % d.c);
  const int x = static_cast<int>((i / d.c) % d.w);
  const int64_t row = i / (static_cast<int64_t>(d.w) * d.c);
  const T* r = src + row * d.w * d.c;
  float acc = 0.0f;
  for (int t = 0; t < klen; ++t) acc += k[t] * static_cast<float>(r[reflect101(x + t - klen / 2, d.w) * d.c + ch]);
  tmp[i] = acc;
}

template <class T>
__global__ void vpass(const float* tmp, T* dst, Dims d, const float* k, int klen) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t rowlen = static_cast<int64_t>(d.w) * d.c;
  const int64_t n = static_cast<int64_t>(d.b) * d.h * rowlen;
  if (i >= n) return;
  const int64_t j = i % rowlen;
  const int y = static_cast<int>((i / rowlen) % d.h);
  const int64_t b = i / (rowlen * d.h);
  float acc = 0.0f;
  for (int t = 0; t < klen; ++t) acc += k[t] * tmp[(b * d.h + reflect101(y + t - klen / 2, d.h)) * rowlen + j];
  Px<T>::store(acc, dst + i);
}

template <class T>
__global__ void filter2d_kernel(const T* src, T* dst, Dims d, const float* k, int ksize) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t n = static_cast<int64_t>(d.b) * d.h * d.w * d.c;
  if (i >= n) return;
  const int ch = static_cast<int>(i % d.c);
  const int x = static_cast<int>((i / d.c) % d.w);
  const int y = static_cast<int>((i / (static_cast<int64_t>(d.c) * d.w)) % d.h);
  const int64_t b = i / (static_cast<int64_t>(d.c) * d.w * d.h);
  const T* img = src + b * d.h * d.w * d.c;
  const int r = ksize / 2;
  float acc = 0.0f;
  for (int ky = 0; ky < ksize; ++ky) {
    const T* row = img + static_cast<int64_t>(reflect101(y + ky - r, d.h)) * d.w * d.c;
    for (int kx = 0; kx < ksize; ++kx) {
      const float w = k[ky * ksize + kx];
      if (w != 0.0f) acc += w * static_cast<float>(row[reflect101(x + kx - r, d.w) * d.c + ch]);
    }
  }
  Px<T>::store(acc, dst + i);
}

// ---- resize --------------------------------------------------------------------------------

template <class T>
__global__ void resize_h(const T* src, float* tmp, Dims d, int ow, const int* idx, const float* wt, int taps) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t n = static_cast<int64_t>(d.b) * d.h * ow * d.c;
  if (i >= n) return;
  const int ch = static_cast<int>(i % d.c);
  const int x = static_cast<int>((i / d.c) % ow);
  const int64_t row = i / (static_cast<int64_t>(ow) * d.c);
  const T* r = src + row * d.w * d.c;
  float acc = 0.0f;
  for (int t = 0; t < taps; ++t) acc += wt[x * taps + t] * static_cast<float>(r[idx[x * taps + t] * d.c + ch]);
  tmp[i] = acc;
}

template <class T>
__global__ void resize_v(const float* tmp, T* dst, Dims d, int oh, int ow, const int* idx, const float* wt, int taps) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t rowlen = static_cast<int64_t>(ow) * d.c;
  const int64_t n = static_cast<int64_t>(d.b) * oh * rowlen;
  if (i >= n) return;
  const int64_t j = i % rowlen;
  const int y = static_cast<int>((i / rowlen) % oh);
  const int64_t b = i / (rowlen * oh);
  float acc = 0.0f;
  for (int t = 0; t < taps; ++t) {
    const float w = wt[y * taps + t];
    if (w != 0.0f) acc += w * tmp[(b * d.h + idx[y * taps + t]) * rowlen + j];
  }
  Px<T>::store(acc, dst + i);
}

// ---- noise ---------------------------------------------------------------------------------

// Noise kernels draw image b's numbers from Philox stream (seeds[b], streams[b]), as the CPU
// kernels do.
template <class T>
__global__ void gaussian_noise_kernel(const T* src, T* dst, Dims d, float sigma, float mean, bool gray,
                                      const uint64_t* seeds, const uint32_t* streams) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t per_image = gray ? static_cast<int64_t>(d.h) * d.w : static_cast<int64_t>(d.h) * d.w * d.c;
  if (i >= per_image * d.b) return;
  const int64_t b = i / per_image, sample = i % per_image;
  // Draw k holds the normals of samples 4k..4k+3: words (0, 1) give the first two, (2, 3) the
  // other two; only this sample's normal is computed.
  const Philox4 r = draw(seeds[b], streams[b], kTagGaussian, static_cast<uint64_t>(sample / 4));
  const int slot = static_cast<int>(sample & 3);
  const float z = slot < 2 ? box_muller_one(r.v[0], r.v[1], slot == 1) : box_muller_one(r.v[2], r.v[3], slot == 3);
  const float to255 = 255.0f / Px<T>::levels, from255 = Px<T>::levels / 255.0f;
  const float noise = mean + sigma * z;
  const int64_t base = b * static_cast<int64_t>(d.h) * d.w * d.c;
  if (gray) {
    for (int ch = 0; ch < d.c; ++ch) {
      const int64_t k = base + sample * d.c + ch;
      Px<T>::store((static_cast<float>(src[k]) * to255 + noise) * from255, dst + k);
    }
  } else {
    Px<T>::store((static_cast<float>(src[base + sample]) * to255 + noise) * from255, dst + base + sample);
  }
}

template <class T>
__global__ void poisson_noise_kernel(const T* src, T* dst, Dims d, float scale, bool gray, const uint64_t* seeds,
                                     const uint32_t* streams) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t pixels = static_cast<int64_t>(d.h) * d.w;
  if (i >= pixels * d.b) return;
  const int64_t b = i / pixels, p = i % pixels;
  const float to255 = 255.0f / Px<T>::levels, from255 = Px<T>::levels / 255.0f;
  const T* px = src + i * d.c;
  T* out = dst + i * d.c;
  if (gray && d.c == 3) {
    const float lam = (0.299f * px[0] + 0.587f * px[1] + 0.114f * px[2]) * to255;
    const Philox4 r = draw(seeds[b], streams[b], kTagPoisson, static_cast<uint64_t>(p));
    const float noise = scale * (poisson_sample(lam, r) - lam) * from255;
    for (int ch = 0; ch < d.c; ++ch) Px<T>::store(static_cast<float>(px[ch]) + noise, out + ch);
    return;
  }
  for (int ch = 0; ch < d.c; ++ch) {
    const float lam = static_cast<float>(px[ch]) * to255;
    const Philox4 r = draw(seeds[b], streams[b], kTagPoisson, static_cast<uint64_t>(p * d.c + ch));
    Px<T>::store(static_cast<float>(px[ch]) + scale * (poisson_sample(lam, r) - lam) * from255, out + ch);
  }
}

template <class T>
__global__ void salt_pepper_kernel(const T* src, T* dst, Dims d, uint64_t threshold, const uint64_t* seeds,
                                   const uint32_t* streams) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t pixels = static_cast<int64_t>(d.h) * d.w;
  if (i >= pixels * d.b) return;
  const int64_t b = i / pixels, p = i % pixels;
  const Philox4 r = draw(seeds[b], streams[b], kTagSaltPepper, static_cast<uint64_t>(p));
  const bool hit = r.v[0] < threshold;
  const T white = static_cast<T>(Px<T>::levels);
  for (int ch = 0; ch < d.c; ++ch) dst[i * d.c + ch] = hit ? ((r.v[1] & 1u) ? white : T(0)) : src[i * d.c + ch];
}

// ---- JPEG ----------------------------------------------------------------------------------

// The DCT basis and the quantisation tables of every quality (1..100), written once per device.
__constant__ float c_basis[64];
__constant__ uint8_t c_quant[100][2][64];

constexpr int kJpegBlocksPerCta = 4;  // 8x8 blocks per thread block, 64 threads each

void upload_jpeg_tables() {
  static std::mutex mutex;
  static std::vector<bool> done;
  int device = 0;
  PYFILL_CUDA_CHECK(cudaGetDevice(&device));
  std::lock_guard<std::mutex> lock(mutex);
  if (static_cast<int>(done.size()) <= device) done.resize(static_cast<size_t>(device) + 1, false);
  if (done[static_cast<size_t>(device)]) return;
  float basis[64];
  for (int u = 0; u < 8; ++u)
    for (int x = 0; x < 8; ++x) basis[u * 8 + x] = dct_basis(u, x);
  static uint8_t quant[100][2][64];
  for (int q = 1; q <= 100; ++q)
    for (int t = 0; t < 2; ++t)
      for (int i = 0; i < 64; ++i) quant[q - 1][t][i] = static_cast<uint8_t>(jpeg_quant(t, i, q));
  PYFILL_CUDA_CHECK(cudaMemcpyToSymbol(c_basis, basis, sizeof(basis)));
  PYFILL_CUDA_CHECK(cudaMemcpyToSymbol(c_quant, quant, sizeof(quant)));
  done[static_cast<size_t>(device)] = true;
}

struct JpegGeom {
  int pw, ph, cw, ch, real_cw, real_ch;
  int64_t ysize, csize, per_image;
  bool sub420;
};

template <class T>
__device__ void ycc_at(const T* img, Dims d, int x, int y, int* out) {
  x = x < d.w ? x : d.w - 1;
  y = y < d.h ? y : d.h - 1;
  const T* px = img + (static_cast<int64_t>(y) * d.w + x) * 3;
  rgb_to_ycc(Px<T>::to_u8(px[0]), Px<T>::to_u8(px[1]), Px<T>::to_u8(px[2]), out, out + 1, out + 2);
}

// 64 threads per 8x8 block of one component (0: Y, 1: Cb, 2: Cr) of one image, one per sample
// and then per coefficient: the four matrix products of JPEG's lossy core (see
// degrade_common.h) run in shared memory, each sum in the CPU kernel's order.
template <class T>
__global__ void jpeg_blocks(const T* src, uint8_t* planes, Dims d, JpegGeom g, int quality) {
  __shared__ float basis[64];
  __shared__ float quant[2][64];
  __shared__ float a[kJpegBlocksPerCta][64], t[kJpegBlocksPerCta][64];
  const int lane = threadIdx.x & 63, group = threadIdx.x >> 6;
  if (threadIdx.x < 64) {
    basis[lane] = c_basis[lane];
    quant[0][lane] = static_cast<float>(c_quant[quality - 1][0][lane]);
    quant[1][lane] = static_cast<float>(c_quant[quality - 1][1][lane]);
  }
  const int ybx = g.pw / 8, yby = g.ph / 8, cbx = g.cw / 8, cby = g.ch / 8;
  const int64_t per_image = static_cast<int64_t>(ybx) * yby + 2 * static_cast<int64_t>(cbx) * cby;
  const int64_t i = blockIdx.x * static_cast<int64_t>(kJpegBlocksPerCta) + group;
  const bool active = i < per_image * d.b;
  int64_t b = 0, k = 0;
  int comp = 0, bw = ybx, pw = g.pw;
  if (active) {
    b = i / per_image;
    k = i % per_image;
    if (k >= static_cast<int64_t>(ybx) * yby) {
      k -= static_cast<int64_t>(ybx) * yby;
      comp = 1 + static_cast<int>(k / (static_cast<int64_t>(cbx) * cby));
      k %= static_cast<int64_t>(cbx) * cby;
      bw = cbx;
      pw = g.cw;
    }
  }
  const int bx = static_cast<int>(k % bw) * 8, by = static_cast<int>(k / bw) * 8;
  const int row = lane >> 3, col = lane & 7;
  float* blk = a[group];
  float* tmp = t[group];
  if (active) {
    const T* img = src + b * static_cast<int64_t>(d.h) * d.w * 3;
    const int x = bx + col, y = by + row;
    int ycc[3];
    int v;
    if (comp == 0 || !g.sub420) {
      ycc_at(img, d, x, y, ycc);
      v = ycc[comp];
    } else {
      int sum = (x & 1) ? 2 : 1;
      for (int dy = 0; dy < 2; ++dy)
        for (int dx = 0; dx < 2; ++dx) {
          ycc_at(img, d, 2 * x + dx, 2 * y + dy, ycc);
          sum += ycc[comp];
        }
      v = sum >> 2;
    }
    blk[lane] = static_cast<float>(v) - 128.0f;
  }
  __syncthreads();
  float acc = 0.0f;  // t = B X: t[u][x] = sum over y of B[u][y] X[y][x]
  for (int y = 0; y < 8; ++y) acc += basis[row * 8 + y] * blk[y * 8 + col];
  tmp[lane] = acc;
  __syncthreads();
  acc = 0.0f;  // C = quantise(t B^T): C[u][v] = sum over k of t[u][k] B[v][k]
  for (int j = 0; j < 8; ++j) acc += tmp[row * 8 + j] * basis[col * 8 + j];
  blk[lane] = quantise(acc, quant[comp == 0 ? 0 : 1][lane]);
  __syncthreads();
  acc = 0.0f;  // t = B^T C: t[y][v] = sum over u of B[u][y] C[u][v]
  for (int u = 0; u < 8; ++u) acc += basis[u * 8 + row] * blk[u * 8 + col];
  tmp[lane] = acc;
  __syncthreads();
  acc = 0.0f;  // X = t B: X[y][x] = sum over v of t[y][v] B[v][x]
  for (int v = 0; v < 8; ++v) acc += tmp[row * 8 + v] * basis[v * 8 + col];
  if (active) {
    uint8_t* plane = planes + b * g.per_image + (comp == 0 ? 0 : g.ysize + (comp - 1) * g.csize);
    plane[static_cast<int64_t>(by + row) * pw + bx + col] = static_cast<uint8_t>(clamp255(round_half_up(acc + 128.0f)));
  }
}

template <class T>
__global__ void jpeg_to_rgb(const uint8_t* planes, T* dst, Dims d, JpegGeom g) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t pixels = static_cast<int64_t>(d.h) * d.w;
  if (i >= pixels * d.b) return;
  const int64_t b = i / pixels;
  const int x = static_cast<int>((i % pixels) % d.w), y = static_cast<int>((i % pixels) / d.w);
  const uint8_t* yp = planes + b * g.per_image;
  const uint8_t* cb = yp + g.ysize;
  const uint8_t* cr = cb + g.csize;
  int vb, vr;
  if (g.sub420) {
    vb = fancy_upsample(cb, g.cw, g.real_cw, g.real_ch, x, y);
    vr = fancy_upsample(cr, g.cw, g.real_cw, g.real_ch, x, y);
  } else {
    vb = cb[static_cast<int64_t>(y) * g.cw + x];
    vr = cr[static_cast<int64_t>(y) * g.cw + x];
  }
  int r, gg, bl;
  ycc_to_rgb(yp[static_cast<int64_t>(y) * g.pw + x], vb, vr, &r, &gg, &bl);
  T* out = dst + i * 3;
  out[0] = Px<T>::from_u8(r);
  out[1] = Px<T>::from_u8(gg);
  out[2] = Px<T>::from_u8(bl);
}

int64_t count(Dims d) { return static_cast<int64_t>(d.b) * d.h * d.w * d.c; }

}  // namespace

void sep_filter(const void* src, void* dst, Dims d, bool u8, const std::vector<float>& kx,
                const std::vector<float>& ky, cudaStream_t stream) {
  const int64_t n = count(d);
  if (n == 0) return;
  Scratch tmp(n * sizeof(float), stream), dkx(kx.size() * sizeof(float), stream), dky(ky.size() * sizeof(float), stream);
  upload(dkx, kx, stream);
  upload(dky, ky, stream);
  if (u8) {
    hpass<<<blocks_for(n), kThreads, 0, stream>>>(static_cast<const uint8_t*>(src), tmp.as<float>(), d, dkx.as<float>(), static_cast<int>(kx.size()));
    vpass<<<blocks_for(n), kThreads, 0, stream>>>(tmp.as<float>(), static_cast<uint8_t*>(dst), d, dky.as<float>(), static_cast<int>(ky.size()));
  } else {
    hpass<<<blocks_for(n), kThreads, 0, stream>>>(static_cast<const float*>(src), tmp.as<float>(), d, dkx.as<float>(), static_cast<int>(kx.size()));
    vpass<<<blocks_for(n), kThreads, 0, stream>>>(tmp.as<float>(), static_cast<float*>(dst), d, dky.as<float>(), static_cast<int>(ky.size()));
  }
  PYFILL_CUDA_CHECK(cudaGetLastError());
}

void filter2d(const void* src, void* dst, Dims d, bool u8, const std::vector<float>& kernel, int ksize,
              cudaStream_t stream) {
  const int64_t n = count(d);
  if (n == 0) return;
  Scratch dk(kernel.size() * sizeof(float), stream);
  upload(dk, kernel, stream);
  if (u8)
    filter2d_kernel<<<blocks_for(n), kThreads, 0, stream>>>(static_cast<const uint8_t*>(src), static_cast<uint8_t*>(dst), d, dk.as<float>(), ksize);
  else
    filter2d_kernel<<<blocks_for(n), kThreads, 0, stream>>>(static_cast<const float*>(src), static_cast<float*>(dst), d, dk.as<float>(), ksize);
  PYFILL_CUDA_CHECK(cudaGetLastError());
}

void resize(const void* src, void* dst, Dims d, bool u8, int out_h, int out_w, int interp, cudaStream_t stream) {
  const bool down = out_h <= d.h && out_w <= d.w;
  const AxisTable tx = resize_axis(d.w, out_w, interp, down), ty = resize_axis(d.h, out_h, interp, down);
  const int64_t nh = static_cast<int64_t>(d.b) * d.h * out_w * d.c, nv = static_cast<int64_t>(d.b) * out_h * out_w * d.c;
  if (nv == 0) return;
  Scratch tmp(nh * sizeof(float), stream);
  Scratch xi(tx.index.size() * sizeof(int), stream), xw(tx.weight.size() * sizeof(float), stream);
  Scratch yi(ty.index.size() * sizeof(int), stream), yw(ty.weight.size() * sizeof(float), stream);
  upload(xi, tx.index, stream);
  upload(xw, tx.weight, stream);
  upload(yi, ty.index, stream);
  upload(yw, ty.weight, stream);
  if (u8) {
    resize_h<<<blocks_for(nh), kThreads, 0, stream>>>(static_cast<const uint8_t*>(src), tmp.as<float>(), d, out_w, xi.as<int>(), xw.as<float>(), tx.taps);
    resize_v<<<blocks_for(nv), kThreads, 0, stream>>>(tmp.as<float>(), static_cast<uint8_t*>(dst), d, out_h, out_w, yi.as<int>(), yw.as<float>(), ty.taps);
  } else {
    resize_h<<<blocks_for(nh), kThreads, 0, stream>>>(static_cast<const float*>(src), tmp.as<float>(), d, out_w, xi.as<int>(), xw.as<float>(), tx.taps);
    resize_v<<<blocks_for(nv), kThreads, 0, stream>>>(tmp.as<float>(), static_cast<float*>(dst), d, out_h, out_w, yi.as<int>(), yw.as<float>(), ty.taps);
  }
  PYFILL_CUDA_CHECK(cudaGetLastError());
}

namespace {

// Per-image Philox keys on the device, released after the launch (stream-ordered).
struct DeviceStreams {
  DeviceStreams(int b, const uint64_t* seeds, const uint32_t* streams, cudaStream_t stream)
      : seeds_(b * sizeof(uint64_t), stream), streams_(b * sizeof(uint32_t), stream) {
    PYFILL_CUDA_CHECK(cudaMemcpyAsync(seeds_.as<uint64_t>(), seeds, b * sizeof(uint64_t), cudaMemcpyHostToDevice, stream));
    PYFILL_CUDA_CHECK(cudaMemcpyAsync(streams_.as<uint32_t>(), streams, b * sizeof(uint32_t), cudaMemcpyHostToDevice, stream));
  }
  const uint64_t* seeds() const { return seeds_.as<uint64_t>(); }
  const uint32_t* streams() const { return streams_.as<uint32_t>(); }

 private:
  Scratch seeds_, streams_;
};

}  // namespace

void gaussian_noise(const void* src, void* dst, Dims d, bool u8, float sigma, float mean, bool gray,
                    const uint64_t* seeds, const uint32_t* streams, cudaStream_t stream) {
  const int64_t n = gray ? static_cast<int64_t>(d.b) * d.h * d.w : count(d);
  if (n == 0) return;
  const DeviceStreams keys(d.b, seeds, streams, stream);
  if (u8)
    gaussian_noise_kernel<<<blocks_for(n), kThreads, 0, stream>>>(static_cast<const uint8_t*>(src), static_cast<uint8_t*>(dst), d, sigma, mean, gray, keys.seeds(), keys.streams());
  else
    gaussian_noise_kernel<<<blocks_for(n), kThreads, 0, stream>>>(static_cast<const float*>(src), static_cast<float*>(dst), d, sigma, mean, gray, keys.seeds(), keys.streams());
  PYFILL_CUDA_CHECK(cudaGetLastError());
}

void poisson_noise(const void* src, void* dst, Dims d, bool u8, float scale, bool gray, const uint64_t* seeds,
                   const uint32_t* streams, cudaStream_t stream) {
  const int64_t n = static_cast<int64_t>(d.b) * d.h * d.w;
  if (n == 0) return;
  const DeviceStreams keys(d.b, seeds, streams, stream);
  if (u8)
    poisson_noise_kernel<<<blocks_for(n), kThreads, 0, stream>>>(static_cast<const uint8_t*>(src), static_cast<uint8_t*>(dst), d, scale, gray, keys.seeds(), keys.streams());
  else
    poisson_noise_kernel<<<blocks_for(n), kThreads, 0, stream>>>(static_cast<const float*>(src), static_cast<float*>(dst), d, scale, gray, keys.seeds(), keys.streams());
  PYFILL_CUDA_CHECK(cudaGetLastError());
}

void salt_pepper(const void* src, void* dst, Dims d, bool u8, float amount, const uint64_t* seeds,
                 const uint32_t* streams, cudaStream_t stream) {
  const int64_t n = static_cast<int64_t>(d.b) * d.h * d.w;
  if (n == 0) return;
  const uint64_t threshold = static_cast<uint64_t>(static_cast<double>(amount) * 4294967296.0);
  const DeviceStreams keys(d.b, seeds, streams, stream);
  if (u8)
    salt_pepper_kernel<<<blocks_for(n), kThreads, 0, stream>>>(static_cast<const uint8_t*>(src), static_cast<uint8_t*>(dst), d, threshold, keys.seeds(), keys.streams());
  else
    salt_pepper_kernel<<<blocks_for(n), kThreads, 0, stream>>>(static_cast<const float*>(src), static_cast<float*>(dst), d, threshold, keys.seeds(), keys.streams());
  PYFILL_CUDA_CHECK(cudaGetLastError());
}

void jpeg(const void* src, void* dst, Dims d, bool u8, int quality, bool sub420, cudaStream_t stream) {
  if (count(d) == 0) return;
  JpegGeom g;
  const int mcu = sub420 ? 16 : 8;
  g.sub420 = sub420;
  g.pw = (d.w + mcu - 1) / mcu * mcu;
  g.ph = (d.h + mcu - 1) / mcu * mcu;
  g.cw = sub420 ? g.pw / 2 : g.pw;
  g.ch = sub420 ? g.ph / 2 : g.ph;
  g.real_cw = sub420 ? (d.w + 1) / 2 : d.w;
  g.real_ch = sub420 ? (d.h + 1) / 2 : d.h;
  g.ysize = static_cast<int64_t>(g.pw) * g.ph;
  g.csize = static_cast<int64_t>(g.cw) * g.ch;
  g.per_image = g.ysize + 2 * g.csize;
  upload_jpeg_tables();
  Scratch planes(static_cast<size_t>(g.per_image * d.b), stream);
  const int64_t nblocks = static_cast<int64_t>(d.b) * (g.ysize + 2 * g.csize) / 64;
  const auto ctas = static_cast<unsigned>((nblocks + kJpegBlocksPerCta - 1) / kJpegBlocksPerCta);
  const int64_t npix = static_cast<int64_t>(d.b) * d.h * d.w;
  if (u8) {
    jpeg_blocks<<<ctas, 64 * kJpegBlocksPerCta, 0, stream>>>(static_cast<const uint8_t*>(src), planes.as<uint8_t>(), d, g, quality);
    jpeg_to_rgb<<<blocks_for(npix), kThreads, 0, stream>>>(planes.as<uint8_t>(), static_cast<uint8_t*>(dst), d, g);
  } else {
    jpeg_blocks<<<ctas, 64 * kJpegBlocksPerCta, 0, stream>>>(static_cast<const float*>(src), planes.as<uint8_t>(), d, g, quality);
    jpeg_to_rgb<<<blocks_for(npix), kThreads, 0, stream>>>(planes.as<uint8_t>(), static_cast<float*>(dst), d, g);
  }
  PYFILL_CUDA_CHECK(cudaGetLastError());
}

}  // namespace cuda_degrade
}  // namespace pyfill
