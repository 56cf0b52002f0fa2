// Error handling for CUDA runtime calls: failures become C++ exceptions (Python RuntimeError).
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
