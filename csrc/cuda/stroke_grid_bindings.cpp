// Bindings of the CUDA stroke-grid launchers (compiled only in CUDA builds). Arrays arrive as
// device pointers (integers) allocated and validated by pyfill.ops.stroke_grid.
#include <pybind11/pybind11.h>

#include <cstdint>

#include "cuda/stroke_grid.h"
#include "registry.h"

namespace py = pybind11;

PYFILL_REGISTER(stroke_grid_cuda) {
  using namespace pyfill::stroke;
  m.def("stroke_grid_cuda",
        [](uintptr_t strokes, bool is_float, uintptr_t occupancy, uintptr_t out, uintptr_t labels,
           uintptr_t boxes, int64_t B, int64_t H, int64_t W, int64_t S1, int64_t S2, int device,
           uintptr_t stream) {
          py::gil_scoped_release release;
          stroke_grid_cuda(reinterpret_cast<const void*>(strokes), is_float,
                           reinterpret_cast<const uint8_t*>(occupancy), reinterpret_cast<float*>(out),
                           reinterpret_cast<int32_t*>(labels), reinterpret_cast<int32_t*>(boxes), B,
                           H, W, S1, S2, device, stream);
        },
        py::arg("strokes"), py::arg("is_float"), py::arg("occupancy"), py::arg("out"),
        py::arg("labels"), py::arg("boxes"), py::arg("b"), py::arg("h"), py::arg("w"),
        py::arg("s1"), py::arg("s2"), py::arg("device"), py::arg("stream"),
        "Queue the stroke-grid kernels on `stream`. Device pointers: strokes (B, H, W, 3) "
        "uint8/float32, occupancy (B, H, W) bytes or 0, out (B, s1, s2, 8) float32, labels "
        "(B * H * W int32) and boxes (4 * B * s1 * s2 int32) workspaces.");
  m.def("stroke_grid_from_image_cuda",
        [](uintptr_t images, bool is_float, uintptr_t out, uintptr_t perm, int64_t B, int64_t H,
           int64_t W, int64_t S1, int64_t S2, uint32_t dropped, uint64_t seed, int device,
           uintptr_t stream) {
          py::gil_scoped_release release;
          stroke_grid_from_image_cuda(reinterpret_cast<const void*>(images), is_float,
                                      reinterpret_cast<float*>(out), reinterpret_cast<int32_t*>(perm),
                                      B, H, W, S1, S2, dropped, seed, device, stream);
        },
        py::arg("images"), py::arg("is_float"), py::arg("out"), py::arg("perm"), py::arg("b"),
        py::arg("h"), py::arg("w"), py::arg("s1"), py::arg("s2"), py::arg("dropped"),
        py::arg("seed"), py::arg("device"), py::arg("stream"),
        "Queue the training synthesis on `stream`. Device pointers: images (B, H, W, 3) "
        "uint8/float32, out (B, s1, s2, 8) float32, perm (B * s1 * s2 int32) workspace.");
}
