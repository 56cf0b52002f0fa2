// Stroke-grid colour features (SPEC S2) on the GPU.
//
// Connected components: union-find over the whole image with atomicMin links (Playne-Hawick):
// every occupied pixel starts as its own root, unions point the larger root at the smaller, so
// each component ends rooted at its first pixel in raster order, whose row is the component's
// min row. The root's label slot then stores the component's min column as -2 - x0 (an
// atomicMax), so no per-component arrays are needed. Per-cell boxes use integer atomics (order-
// independent); per-cell colour sums use one block per cell with a fixed-order reduction, so
// results are deterministic. Every stage is queued on the caller's stream.
#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>

#include "cuda/cuda_check.h"
#include "cuda/stroke_grid.h"
#include "stroke_grid_common.h"

namespace pyfill {
namespace stroke {
namespace {

constexpr int kThreads = 256;
constexpr int32_t kEmpty = -1;  // label of an unoccupied pixel

unsigned blocks_for(int64_t n) {
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>((n + kThreads - 1) / kThreads, 1 << 20)));
}

#define PYFILL_GRID_STRIDE(g, n)                                                          \
  for (int64_t g = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; g < (n); \
       g += static_cast<int64_t>(gridDim.x) * blockDim.x)

template <class T>
__device__ bool is_occupied(const T* img, const uint8_t* occ, int64_t g) {
  if (occ) return occ[g] != 0;
  const T* px = img + 3 * g;
  return px[0] > T(0) || px[1] > T(0) || px[2] > T(0);
}

// Reads bypass L1 so that links made by other blocks are seen.
__device__ int32_t find_root(const int32_t* L, int32_t a) {
  int32_t p = __ldcg(L + a);
  while (p != a) {
    a = p;
    p = __ldcg(L + a);
  }
  return a;
}

__device__ void unite(int32_t* L, int32_t a, int32_t b) {
  bool done = false;
  while (!done) {
    a = find_root(L, a);
    b = find_root(L, b);
    if (a < b) {
      const int32_t old = atomicMin(L + b, a);
      done = old == b;
      b = old;
    } else if (b < a) {
      const int32_t old = atomicMin(L + a, b);
      done = old == a;
      a = old;
    } else {
      done = true;
    }
  }
}

template <class T>
__global__ void init_labels(const T* img, const uint8_t* occ, int32_t* labels, int64_t total,
                            int64_t HW) {
  PYFILL_GRID_STRIDE(g, total) {
    labels[g] = is_occupied(img, occ, g) ? static_cast<int32_t>(g % HW) : kEmpty;
  }
}

// Links each occupied pixel to its occupied neighbours among N, NW, NE and W. NW and NE are
// skipped when N is occupied (N links them), NW also when W is occupied (W links it).
__global__ void merge_labels(int32_t* labels, int64_t total, int64_t H, int64_t W) {
  const int64_t HW = H * W;
  PYFILL_GRID_STRIDE(g, total) {
    int32_t* L = labels + (g / HW) * HW;
    const int32_t p = static_cast<int32_t>(g % HW);
    if (L[p] == kEmpty) continue;
    const int32_t x = static_cast<int32_t>(p % W), y = static_cast<int32_t>(p / W);
    const bool has_w = x > 0 && L[p - 1] != kEmpty;
    if (has_w) unite(L, p, p - 1);
    if (y == 0) continue;
    const int32_t n = p - static_cast<int32_t>(W);
    if (L[n] != kEmpty) {
      unite(L, p, n);
      continue;
    }
    if (!has_w && x > 0 && L[n - 1] != kEmpty) unite(L, p, n - 1);
    if (x + 1 < W && L[n + 1] != kEmpty) unite(L, p, n + 1);
  }
}

__global__ void compress_labels(int32_t* labels, int64_t total, int64_t HW) {
  PYFILL_GRID_STRIDE(g, total) {
    int32_t* L = labels + (g / HW) * HW;
    const int32_t p = static_cast<int32_t>(g % HW);
    if (L[p] != kEmpty) L[p] = find_root(L, p);
  }
}

// After this kernel a root's slot holds -2 - (its own column); other pixels hold their root.
__global__ void encode_roots(int32_t* labels, int64_t total, int64_t HW, int64_t W) {
  PYFILL_GRID_STRIDE(g, total) {
    const int32_t p = static_cast<int32_t>(g % HW);
    if (labels[g] == p) labels[g] = -2 - static_cast<int32_t>(p % W);
  }
}

__device__ int32_t root_of(const int32_t* L, int32_t p) {
  const int32_t v = L[p];
  return v >= 0 ? v : p;
}

// Min column per component: only pixels with an empty left neighbour can hold it.
__global__ void component_min_x(int32_t* labels, int64_t total, int64_t HW, int64_t W) {
  PYFILL_GRID_STRIDE(g, total) {
    int32_t* L = labels + (g / HW) * HW;
    const int32_t p = static_cast<int32_t>(g % HW);
    if (L[p] == kEmpty) continue;
    const int32_t x = static_cast<int32_t>(p % W);
    if (x > 0 && L[p - 1] != kEmpty) continue;
    const int32_t r = root_of(L, p);
    if (r != p) atomicMax(L + r, -2 - x);
  }
}

// Union box per cell of the components whose top-left corner lies in it. Planes of `boxes`
// (n = B * S1 * S2 each): x0, y0 (start large), x1, y1 (start 0; exclusive ends).
__global__ void cell_boxes(const int32_t* labels, int32_t* boxes, int64_t total, int64_t B,
                           int64_t H, int64_t W, int64_t S1, int64_t S2) {
  const int64_t HW = H * W, n = B * S1 * S2;
  PYFILL_GRID_STRIDE(g, total) {
    const int64_t b = g / HW;
    const int32_t* L = labels + b * HW;
    const int32_t p = static_cast<int32_t>(g % HW);
    if (L[p] == kEmpty) continue;
    const int32_t x = static_cast<int32_t>(p % W), y = static_cast<int32_t>(p / W);
    const int32_t r = root_of(L, p);
    const int32_t x0 = -2 - L[r];
    const int32_t y0 = static_cast<int32_t>(r / W);
    const int64_t c = b * S1 * S2 + cell_of(y0, H, S1) * S2 + cell_of(x0, W, S2);
    if (r == p) {
      atomicMin(boxes + c, x0);
      atomicMin(boxes + n + c, y0);
    }
    if (x + 1 == W || L[p + 1] == kEmpty) atomicMax(boxes + 2 * n + c, x + 1);
    if (y + 1 == H || L[p + W] == kEmpty) atomicMax(boxes + 3 * n + c, y + 1);
  }
}

template <class T>
struct SumOf {
  using type = double;
};
template <>
struct SumOf<uint8_t> {
  using type = uint64_t;
};

// One block per (image, cell): occupied count and colour sums in a fixed order, then the 8
// output channels. labels == nullptr means the training synthesis (every pixel counts, the rect
// is the whole cell).
template <class T>
__global__ void cell_features(const T* img, const int32_t* labels, const int32_t* boxes,
                              float* out, int64_t B, int64_t H, int64_t W, int64_t S1, int64_t S2) {
  using Sum = typename SumOf<T>::type;
  __shared__ Sum s_sum[3][kThreads];
  __shared__ long long s_count[kThreads];
  const int64_t cells = S1 * S2, n = B * cells;
  for (int64_t bc = blockIdx.x; bc < n; bc += gridDim.x) {
    const int64_t b = bc / cells, c = bc % cells, i = c / S2, j = c % S2;
    const int64_t cy0 = cell_start(i, H, S1), ch = cell_start(i + 1, H, S1) - cy0;
    const int64_t cx0 = cell_start(j, W, S2), cw = cell_start(j + 1, W, S2) - cx0;
    const T* base = img + b * H * W * 3;
    const int32_t* L = labels ? labels + b * H * W : nullptr;
    Sum sum[3] = {0, 0, 0};
    long long count = 0;
    for (int64_t k = threadIdx.x; k < cw * ch; k += blockDim.x) {
      const int64_t p = (cy0 + k / cw) * W + cx0 + k % cw;
      if (L && L[p] == kEmpty) continue;
      const T* px = base + 3 * p;
      sum[0] += px[0];
      sum[1] += px[1];
      sum[2] += px[2];
      ++count;
    }
    for (int k = 0; k < 3; ++k) s_sum[k][threadIdx.x] = sum[k];
    s_count[threadIdx.x] = count;
    __syncthreads();
    for (int half = kThreads / 2; half > 0; half /= 2) {
      if (threadIdx.x < half) {
        for (int k = 0; k < 3; ++k) s_sum[k][threadIdx.x] += s_sum[k][threadIdx.x + half];
        s_count[threadIdx.x] += s_count[threadIdx.x + half];
      }
      __syncthreads();
    }
    if (threadIdx.x == 0) {
      const Sum total[3] = {s_sum[0][0], s_sum[1][0], s_sum[2][0]};
      float* o = out + bc * kChannels;
      if (L) {
        const int32_t x1 = boxes[2 * n + bc];
        write_cell(o, s_count[0], total, x1 > 0, boxes[bc], boxes[n + bc], x1, boxes[3 * n + bc],
                   cx0, cy0, cw, ch, W, H);
      } else {
        write_cell(o, s_count[0], total, true, cx0, cy0, cx0 + cw, cy0 + ch, cx0, cy0, cw, ch, W,
                   H);
      }
    }
    __syncthreads();  // the shared arrays are reused by the next cell of this block
  }
}

__global__ void drop_cells(float* out, int32_t* perm, int64_t B, int64_t cells, uint32_t dropped,
                           uint64_t seed) {
  PYFILL_GRID_STRIDE(b, B) {
    int32_t* pb = perm + b * cells;
    choose_dropped(pb, static_cast<uint32_t>(cells), dropped, seed, static_cast<uint64_t>(b));
    for (uint32_t t = 0; t < dropped; ++t) {
      float* o = out + (b * cells + pb[t]) * kChannels;
      for (int k = 0; k < kChannels; ++k) o[k] = 0.0f;
    }
  }
}

void check_sizes(int64_t B, int64_t H, int64_t W, int64_t S1, int64_t S2) {
  if (B < 0 || H < 1 || W < 1 || H * W >= (int64_t{1} << 31)) {
    throw std::invalid_argument("stroke grid: image sizes must be positive and below 2^31 pixels");
  }
  if (S1 < 1 || S2 < 1 || S1 > H || S2 > W) {
    throw std::invalid_argument("grid must be between 1 and the image size along each axis");
  }
}

template <class T>
void launch_stroke_grid(const T* img, const uint8_t* occ, float* out, int32_t* labels,
                        int32_t* boxes, int64_t B, int64_t H, int64_t W, int64_t S1, int64_t S2,
                        cudaStream_t stream) {
  const int64_t HW = H * W, total = B * HW, n = B * S1 * S2;
  const unsigned blocks = blocks_for(total);
  PYFILL_CUDA_CHECK(cudaMemsetAsync(boxes, 0x7f, 2 * n * sizeof(int32_t), stream));
  PYFILL_CUDA_CHECK(cudaMemsetAsync(boxes + 2 * n, 0, 2 * n * sizeof(int32_t), stream));
  init_labels<<<blocks, kThreads, 0, stream>>>(img, occ, labels, total, HW);
  merge_labels<<<blocks, kThreads, 0, stream>>>(labels, total, H, W);
  compress_labels<<<blocks, kThreads, 0, stream>>>(labels, total, HW);
  encode_roots<<<blocks, kThreads, 0, stream>>>(labels, total, HW, W);
  component_min_x<<<blocks, kThreads, 0, stream>>>(labels, total, HW, W);
  cell_boxes<<<blocks, kThreads, 0, stream>>>(labels, boxes, total, B, H, W, S1, S2);
  const unsigned cell_blocks = static_cast<unsigned>(std::min<int64_t>(n, 1 << 20));
  cell_features<T><<<cell_blocks, kThreads, 0, stream>>>(img, labels, boxes, out, B, H, W, S1, S2);
  PYFILL_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void launch_from_image(const T* img, float* out, int32_t* perm, int64_t B, int64_t H, int64_t W,
                       int64_t S1, int64_t S2, uint32_t dropped, uint64_t seed,
                       cudaStream_t stream) {
  const int64_t n = B * S1 * S2;
  const unsigned cell_blocks = static_cast<unsigned>(std::min<int64_t>(n, 1 << 20));
  cell_features<T><<<cell_blocks, kThreads, 0, stream>>>(img, nullptr, nullptr, out, B, H, W, S1, S2);
  drop_cells<<<blocks_for(B), kThreads, 0, stream>>>(out, perm, B, S1 * S2, dropped, seed);
  PYFILL_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void stroke_grid_cuda(const void* strokes, bool is_float, const uint8_t* occupancy, float* out,
                      int32_t* labels, int32_t* boxes, int64_t B, int64_t H, int64_t W, int64_t S1,
                      int64_t S2, int device, uintptr_t stream) {
  check_sizes(B, H, W, S1, S2);
  if (B == 0) return;
  DeviceGuard guard(device);
  const auto s = reinterpret_cast<cudaStream_t>(stream);
  if (is_float) {
    launch_stroke_grid(static_cast<const float*>(strokes), occupancy, out, labels, boxes, B, H, W,
                       S1, S2, s);
  } else {
    launch_stroke_grid(static_cast<const uint8_t*>(strokes), occupancy, out, labels, boxes, B, H,
                       W, S1, S2, s);
  }
}

void stroke_grid_from_image_cuda(const void* images, bool is_float, float* out, int32_t* perm,
                                 int64_t B, int64_t H, int64_t W, int64_t S1, int64_t S2,
                                 uint32_t dropped, uint64_t seed, int device, uintptr_t stream) {
  check_sizes(B, H, W, S1, S2);
  if (dropped > S1 * S2) throw std::invalid_argument("dropped cells must be in [0, S1 * S2]");
  if (B == 0) return;
  DeviceGuard guard(device);
  const auto s = reinterpret_cast<cudaStream_t>(stream);
  if (is_float) {
    launch_from_image(static_cast<const float*>(images), out, perm, B, H, W, S1, S2, dropped, seed, s);
  } else {
    launch_from_image(static_cast<const uint8_t*>(images), out, perm, B, H, W, S1, S2, dropped, seed,
                      s);
  }
}

}  // namespace stroke
}  // namespace pyfill
