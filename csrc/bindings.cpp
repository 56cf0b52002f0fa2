// pyfill._C: the compiled core. Bindings live beside their kernels (see registry.h).
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstring>

#include "registry.h"

PYBIND11_MODULE(_C, m) {
  m.doc() = "pyfill compiled core: C++ kernels, and CUDA kernels when built with them";
  auto& fns = pyfill::registry();
  std::sort(fns.begin(), fns.end(),
            [](const auto& a, const auto& b) { return std::strcmp(a.first, b.first) < 0; });
  for (const auto& entry : fns) entry.second(m);
}
