// Binding for the CUDA smoke test (compiled only in CUDA builds).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>

#include "cuda/smoke.h"
#include "registry.h"

namespace py = pybind11;

PYFILL_REGISTER(cuda_smoke) {
  m.def("cuda_smoke_saxpy",
        [](float a, py::array_t<float, py::array::c_style | py::array::forcecast> x,
           py::array_t<float, py::array::c_style | py::array::forcecast> y) {
          if (x.ndim() != 1 || y.ndim() != 1 || x.shape(0) != y.shape(0)) {
            throw py::value_error("x and y must be 1-D float32 arrays of the same length");
          }
          const auto n = static_cast<int>(x.shape(0));
          py::array_t<float> out(n);
          const float* px = x.data();
          const float* py_ = y.data();
          float* po = out.mutable_data();
          {
            py::gil_scoped_release release;
            pyfill::cuda_smoke_saxpy(n, a, px, py_, po);
          }
          return out;
        },
        py::arg("a"), py::arg("x"), py::arg("y"),
        "a * x + y on the GPU: a smoke test that the CUDA kernels load and run.");
}
