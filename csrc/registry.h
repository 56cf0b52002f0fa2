// Each source file adds its bindings to pyfill._C with PYFILL_REGISTER, so that a new kernel
// family is one new file and no shared file changes.
#pragma once

#include <pybind11/pybind11.h>

#include <utility>
#include <vector>

namespace pyfill {

using RegisterFn = void (*)(pybind11::module_&);

inline std::vector<std::pair<const char*, RegisterFn>>& registry() {
  static std::vector<std::pair<const char*, RegisterFn>> fns;
  return fns;
}

struct Registrar {
  Registrar(const char* name, RegisterFn fn) { registry().emplace_back(name, fn); }
};

}  // namespace pyfill

#define PYFILL_REGISTER(name)                                                           \
  static void pyfill_register_##name(pybind11::module_& m);                             \
  static ::pyfill::Registrar pyfill_registrar_##name(#name, &pyfill_register_##name);   \
  static void pyfill_register_##name(pybind11::module_& m)
