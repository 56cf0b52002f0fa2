// Stroke-grid colour features (SPEC S2) on the CPU: 8-connected component labelling with
// union-find, per-component bounding boxes and per-cell colour sums in one raster pass, then
// one pass over the components. Images of a batch run in parallel.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "parallel.h"
#include "registry.h"
#include "stroke_grid_common.h"

namespace py = pybind11;

namespace pyfill {
namespace stroke {
namespace {

struct Box {
  int32_t x0, y0, x1, y1;  // x1, y1 exclusive
};

// Per-thread scratch, reused across the images a worker handles.
template <class Sum>
struct Scratch {
  std::vector<int32_t> row_a, row_b;  // provisional labels of two rows, padded by one each side
  std::vector<int32_t> parent;        // union-find forest over provisional labels
  std::vector<Box> boxes;             // bounding box per provisional label
  std::vector<int32_t> col_cell;      // cell column of each pixel column
  std::vector<int64_t> count;         // occupied pixels per cell
  std::vector<Sum> sums;              // colour sums per cell, 3 per cell
  std::vector<Box> cell_boxes;        // union box of the strokes belonging to each cell
  std::vector<int32_t> perm;          // training synthesis: cell indices, dropped ones first
};

int32_t find_root(std::vector<int32_t>& parent, int32_t a) {
  while (parent[a] != a) {
    parent[a] = parent[parent[a]];
    a = parent[a];
  }
  return a;
}

// Links the larger root under the smaller, so every label's parent is <= the label.
void unite(std::vector<int32_t>& parent, int32_t a, int32_t b) {
  a = find_root(parent, a);
  b = find_root(parent, b);
  if (a < b) parent[b] = a;
  else if (b < a) parent[a] = b;
}

void grow(Box& box, int32_t x, int32_t y) {
  box.x0 = std::min(box.x0, x);
  box.x1 = std::max(box.x1, x + 1);
  box.y1 = y + 1;  // rows arrive in increasing order
}

constexpr int64_t kSkip = 8;  // pixels tested at once for an all-background block

// True when the N bytes at p are all zero (N a multiple of 8).
template <size_t N>
bool all_zero(const void* p) {
  static_assert(N % 8 == 0, "whole 64-bit words");
  uint64_t acc = 0;
  for (size_t i = 0; i < N; i += 8) {
    uint64_t word;
    std::memcpy(&word, static_cast<const char*>(p) + i, 8);
    acc |= word;
  }
  return acc == 0;
}

template <class T>
bool occupied_by_colour(const T* px) {
  return px[0] > T(0) || px[1] > T(0) || px[2] > T(0);
}

template <class T, class Sum>
void stroke_grid_image(const T* img, const uint8_t* occ, int64_t H, int64_t W, int64_t S1,
                       int64_t S2, float* out, Scratch<Sum>& s) {
  const int64_t cells = S1 * S2;
  s.row_a.assign(static_cast<size_t>(W + 2), -1);
  s.row_b.assign(static_cast<size_t>(W + 2), -1);
  s.parent.clear();
  s.boxes.clear();
  s.col_cell.resize(static_cast<size_t>(W));
  for (int64_t x = 0; x < W; ++x) s.col_cell[x] = static_cast<int32_t>(cell_of(x, W, S2));
  s.count.assign(static_cast<size_t>(cells), 0);
  s.sums.assign(static_cast<size_t>(3 * cells), Sum(0));

  int32_t* prev = s.row_a.data() + 1;
  int32_t* cur = s.row_b.data() + 1;
  for (int64_t y = 0; y < H; ++y) {
    std::swap(prev, cur);
    const int64_t row_cell = cell_of(y, H, S1) * S2;
    const T* row = img + y * W * 3;
    const uint8_t* occ_row = occ ? occ + y * W : nullptr;
    for (int64_t x = 0; x < W; ++x) {
      // Strokes are sparse: skip blocks of background pixels whose bytes are all zero.
      if (x % kSkip == 0 && x + kSkip <= W &&
          (occ_row ? all_zero<kSkip>(occ_row + x) : all_zero<3 * kSkip * sizeof(T)>(row + 3 * x))) {
        std::fill_n(cur + x, kSkip, -1);
        x += kSkip - 1;
        continue;
      }
      const T* px = row + 3 * x;
      const bool on = occ_row ? occ_row[x] != 0 : occupied_by_colour(px);
      if (!on) {
        cur[x] = -1;
        continue;
      }
      // 8-connectivity decision tree over the already labelled neighbours (N, W, NW, NE).
      int32_t label = prev[x];
      if (label < 0) {
        const int32_t ne = prev[x + 1];
        const int32_t left = cur[x - 1] >= 0 ? cur[x - 1] : prev[x - 1];
        if (left >= 0) {
          label = left;
          if (ne >= 0) unite(s.parent, left, ne);
        } else if (ne >= 0) {
          label = ne;
        } else {
          label = static_cast<int32_t>(s.parent.size());
          s.parent.push_back(label);
          s.boxes.push_back({static_cast<int32_t>(x), static_cast<int32_t>(y),
                             static_cast<int32_t>(x + 1), static_cast<int32_t>(y + 1)});
        }
      }
      cur[x] = label;
      grow(s.boxes[label], static_cast<int32_t>(x), static_cast<int32_t>(y));
      const int64_t c = row_cell + s.col_cell[x];
      ++s.count[c];
      Sum* sum = &s.sums[3 * c];
      sum[0] += px[0];
      sum[1] += px[1];
      sum[2] += px[2];
    }
  }

  // Merge provisional boxes into their roots; parents precede children, so one pass suffices.
  const Box none{std::numeric_limits<int32_t>::max(), std::numeric_limits<int32_t>::max(), 0, 0};
  s.cell_boxes.assign(static_cast<size_t>(cells), none);
  const int32_t labels = static_cast<int32_t>(s.parent.size());
  for (int32_t l = 0; l < labels; ++l) {
    const int32_t root = s.parent[l] = s.parent[s.parent[l]];
    if (root == l) continue;
    Box& r = s.boxes[root];
    const Box& b = s.boxes[l];
    r.x0 = std::min(r.x0, b.x0);
    r.y0 = std::min(r.y0, b.y0);
    r.x1 = std::max(r.x1, b.x1);
    r.y1 = std::max(r.y1, b.y1);
  }
  for (int32_t l = 0; l < labels; ++l) {
    if (s.parent[l] != l) continue;
    const Box& b = s.boxes[l];
    Box& cb = s.cell_boxes[cell_of(b.y0, H, S1) * S2 + cell_of(b.x0, W, S2)];
    cb.x0 = std::min(cb.x0, b.x0);
    cb.y0 = std::min(cb.y0, b.y0);
    cb.x1 = std::max(cb.x1, b.x1);
    cb.y1 = std::max(cb.y1, b.y1);
  }

  for (int64_t i = 0; i < S1; ++i) {
    const int64_t cy0 = cell_start(i, H, S1), ch = cell_start(i + 1, H, S1) - cy0;
    for (int64_t j = 0; j < S2; ++j) {
      const int64_t cx0 = cell_start(j, W, S2), cw = cell_start(j + 1, W, S2) - cx0;
      const int64_t c = i * S2 + j;
      const Box& cb = s.cell_boxes[c];
      write_cell(out + c * kChannels, s.count[c], &s.sums[3 * c], cb.x1 > 0, cb.x0, cb.y0, cb.x1,
                 cb.y1, cx0, cy0, cw, ch, W, H);
    }
  }
}

// Training synthesis: every cell full (mask 1, rect = the cell, rgb = mean of all its pixels),
// then k cells chosen by the counter-based generator set to zero.
template <class T, class Sum>
void from_image(const T* img, int64_t H, int64_t W, int64_t S1, int64_t S2, uint32_t k,
                uint64_t seed, uint64_t image, float* out, Scratch<Sum>& s) {
  const int64_t cells = S1 * S2;
  s.col_cell.resize(static_cast<size_t>(W));
  for (int64_t x = 0; x < W; ++x) s.col_cell[x] = static_cast<int32_t>(cell_of(x, W, S2));
  s.count.assign(static_cast<size_t>(cells), 0);
  s.sums.assign(static_cast<size_t>(3 * cells), Sum(0));
  for (int64_t y = 0; y < H; ++y) {
    const int64_t row_cell = cell_of(y, H, S1) * S2;
    const T* row = img + y * W * 3;
    for (int64_t x = 0; x < W; ++x) {
      Sum* sum = &s.sums[3 * (row_cell + s.col_cell[x])];
      sum[0] += row[3 * x];
      sum[1] += row[3 * x + 1];
      sum[2] += row[3 * x + 2];
    }
  }
  for (int64_t i = 0; i < S1; ++i) {
    const int64_t cy0 = cell_start(i, H, S1), ch = cell_start(i + 1, H, S1) - cy0;
    for (int64_t j = 0; j < S2; ++j) {
      const int64_t cx0 = cell_start(j, W, S2), cw = cell_start(j + 1, W, S2) - cx0;
      const int64_t c = i * S2 + j;
      write_cell(out + c * kChannels, cw * ch, &s.sums[3 * c], true, cx0, cy0, cx0 + cw, cy0 + ch,
                 cx0, cy0, cw, ch, W, H);
    }
  }
  s.perm.resize(static_cast<size_t>(cells));
  choose_dropped(s.perm.data(), static_cast<uint32_t>(cells), k, seed, image);
  for (uint32_t t = 0; t < k; ++t) std::fill_n(out + s.perm[t] * kChannels, kChannels, 0.0f);
}

enum class Pixel { u8, f32 };

// Checks the (B, H, W, 3) image array and the grid; returns the pixel type.
Pixel check_images(const py::array& images, int64_t S1, int64_t S2, const char* name) {
  if (images.ndim() != 4 || images.shape(3) != 3) {
    throw std::invalid_argument(std::string(name) + ": expected a (B, H, W, 3) array");
  }
  if (!(images.flags() & py::array::c_style)) {
    throw std::invalid_argument(std::string(name) + ": expected a C-contiguous array");
  }
  const int64_t H = images.shape(1), W = images.shape(2);
  if (H < 1 || W < 1) throw std::invalid_argument(std::string(name) + ": image is empty");
  if (H * W >= (int64_t{1} << 31)) {
    throw std::invalid_argument(std::string(name) + ": images above 2^31 pixels are not supported");
  }
  if (S1 < 1 || S2 < 1 || S1 > H || S2 > W) {
    throw std::invalid_argument("grid must be between 1 and the image size along each axis");
  }
  if (py::dtype::of<uint8_t>().is(images.dtype())) return Pixel::u8;
  if (py::dtype::of<float>().is(images.dtype())) return Pixel::f32;
  throw py::type_error(std::string(name) + ": expected uint8 or float32 pixels");
}

template <class T, class Sum>
void run_stroke_grid(const py::array& strokes, const uint8_t* occ, int64_t S1, int64_t S2,
                     float* out) {
  const int64_t B = strokes.shape(0), H = strokes.shape(1), W = strokes.shape(2);
  const T* img = static_cast<const T*>(strokes.data());
  py::gil_scoped_release release;
  parallel_for(B, [&](int64_t begin, int64_t end) {
    Scratch<Sum> scratch;
    for (int64_t b = begin; b < end; ++b) {
      stroke_grid_image<T, Sum>(img + b * H * W * 3, occ ? occ + b * H * W : nullptr, H, W, S1, S2,
                                out + b * S1 * S2 * kChannels, scratch);
    }
  });
}

py::array_t<float> stroke_grid_cpu(const py::array& strokes, const py::object& occupancy,
                                   int64_t S1, int64_t S2) {
  const Pixel pixel = check_images(strokes, S1, S2, "strokes");
  const int64_t B = strokes.shape(0), H = strokes.shape(1), W = strokes.shape(2);
  py::array occ_array;
  const uint8_t* occ = nullptr;
  if (!occupancy.is_none()) {
    if (!py::isinstance<py::array>(occupancy)) throw py::type_error("occupancy: expected a NumPy array or None");
    occ_array = py::reinterpret_borrow<py::array>(occupancy);
    if (occ_array.ndim() != 3 || occ_array.shape(0) != B || occ_array.shape(1) != H ||
        occ_array.shape(2) != W) {
      throw std::invalid_argument("occupancy: expected a (B, H, W) array matching strokes");
    }
    if (!(occ_array.flags() & py::array::c_style) || occ_array.itemsize() != 1 ||
        !(py::dtype::of<uint8_t>().is(occ_array.dtype()) || py::dtype::of<bool>().is(occ_array.dtype()))) {
      throw std::invalid_argument("occupancy: expected a C-contiguous uint8 or bool array");
    }
    occ = static_cast<const uint8_t*>(occ_array.data());
  }
  py::array_t<float> out({B, S1, S2, int64_t{kChannels}});
  float* po = out.mutable_data();
  if (pixel == Pixel::u8) run_stroke_grid<uint8_t, uint64_t>(strokes, occ, S1, S2, po);
  else run_stroke_grid<float, double>(strokes, occ, S1, S2, po);
  return out;
}

template <class T, class Sum>
void run_from_image(const py::array& images, int64_t S1, int64_t S2, uint32_t k, uint64_t seed,
                    float* out) {
  const int64_t B = images.shape(0), H = images.shape(1), W = images.shape(2);
  const T* img = static_cast<const T*>(images.data());
  py::gil_scoped_release release;
  parallel_for(B, [&](int64_t begin, int64_t end) {
    Scratch<Sum> scratch;
    for (int64_t b = begin; b < end; ++b) {
      from_image<T, Sum>(img + b * H * W * 3, H, W, S1, S2, k, seed, static_cast<uint64_t>(b),
                         out + b * S1 * S2 * kChannels, scratch);
    }
  });
}

py::array_t<float> stroke_grid_from_image_cpu(const py::array& images, int64_t S1, int64_t S2,
                                              int64_t k, uint64_t seed) {
  const Pixel pixel = check_images(images, S1, S2, "images");
  if (k < 0 || k > S1 * S2) throw std::invalid_argument("dropped cells must be in [0, S1 * S2]");
  const int64_t B = images.shape(0);
  py::array_t<float> out({B, S1, S2, int64_t{kChannels}});
  float* po = out.mutable_data();
  const auto kk = static_cast<uint32_t>(k);
  if (pixel == Pixel::u8) run_from_image<uint8_t, uint64_t>(images, S1, S2, kk, seed, po);
  else run_from_image<float, double>(images, S1, S2, kk, seed, po);
  return out;
}

}  // namespace
}  // namespace stroke
}  // namespace pyfill

PYFILL_REGISTER(stroke_grid) {
  using namespace pyfill::stroke;
  m.def("stroke_grid_cpu", &stroke_grid_cpu, py::arg("strokes"), py::arg("occupancy"),
        py::arg("s1"), py::arg("s2"),
        "Stroke-grid features of C-contiguous (B, H, W, 3) uint8/float32 strokes with an optional "
        "(B, H, W) uint8/bool occupancy (None: any channel > 0) -> float32 (B, s1, s2, 8).");
  m.def("stroke_grid_from_image_cpu", &stroke_grid_from_image_cpu, py::arg("images"),
        py::arg("s1"), py::arg("s2"), py::arg("dropped"), py::arg("seed"),
        "Training synthesis from C-contiguous (B, H, W, 3) uint8/float32 images with `dropped` "
        "cells zeroed per image -> float32 (B, s1, s2, 8).");
}
