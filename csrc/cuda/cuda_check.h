// Error handling for CUDA runtime calls (failures become C++ exceptions, Python RuntimeError) and
// the device guard every launcher takes.
#pragma once

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#define PYFILL_CUDA_CHECK(expr)                                                         \
  do {                                                                                  \
    const cudaError_t pyfill_err_ = (expr);                                             \
    if (pyfill_err_ != cudaSuccess) {                                                   \
      throw std::runtime_error(std::string("CUDA error in ") + #expr + ": " +           \
                               cudaGetErrorString(pyfill_err_));                        \
    }                                                                                   \
  } while (0)

namespace pyfill {

// Makes `device` current for the launches of one call and restores the previous device after:
// the caller's arrays may live on any GPU, and the kernels must run on theirs.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    PYFILL_CUDA_CHECK(cudaGetDevice(&previous_));
    changed_ = device != previous_;
    if (changed_) PYFILL_CUDA_CHECK(cudaSetDevice(device));
  }
  ~DeviceGuard() {
    if (changed_) cudaSetDevice(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
  bool changed_ = false;
};

}  // namespace pyfill
