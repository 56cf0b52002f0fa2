// Device probes and a smoke-test kernel. Probing happens at call time, never at import.
#include <cuda_runtime.h>

#include <string>
#include <vector>

#include "cuda_api.h"
#include "cuda/cuda_check.h"
#include "cuda/smoke.h"

#ifndef PYFILL_CUDA_ARCHS_STR
#define PYFILL_CUDA_ARCHS_STR ""
#endif

namespace pyfill {

bool cuda_compiled() { return true; }

std::string cuda_compiled_version() {
  return std::to_string(CUDART_VERSION / 1000) + "." + std::to_string((CUDART_VERSION % 1000) / 10);
}

std::string cuda_compiled_archs() { return PYFILL_CUDA_ARCHS_STR; }

std::vector<CudaDevice> cuda_devices(std::string* reason) {
  std::vector<CudaDevice> out;
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error so later calls start clean
    if (reason) *reason = cudaGetErrorString(err);
    return out;
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    out.push_back({i, prop.name, prop.major, prop.minor, prop.totalGlobalMem, prop.multiProcessorCount});
  }
  if (out.empty() && reason) *reason = "no CUDA device found";
  return out;
}

namespace {
__global__ void saxpy_kernel(int n, float a, const float* x, const float* y, float* out) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = a * x[i] + y[i];
}
}  // namespace

void cuda_smoke_saxpy(int n, float a, const float* x, const float* y, float* out) {
  if (n <= 0) return;
  const size_t bytes = static_cast<size_t>(n) * sizeof(float);
  float *dx = nullptr, *dy = nullptr, *dout = nullptr;
  PYFILL_CUDA_CHECK(cudaMalloc(&dx, bytes));
  try {
    PYFILL_CUDA_CHECK(cudaMalloc(&dy, bytes));
    PYFILL_CUDA_CHECK(cudaMalloc(&dout, bytes));
    PYFILL_CUDA_CHECK(cudaMemcpy(dx, x, bytes, cudaMemcpyHostToDevice));
    PYFILL_CUDA_CHECK(cudaMemcpy(dy, y, bytes, cudaMemcpyHostToDevice));
    saxpy_kernel<<<(n + 255) / 256, 256>>>(n, a, dx, dy, dout);
    PYFILL_CUDA_CHECK(cudaGetLastError());
    PYFILL_CUDA_CHECK(cudaMemcpy(out, dout, bytes, cudaMemcpyDeviceToHost));
  } catch (...) {
    cudaFree(dx);
    cudaFree(dy);
    cudaFree(dout);
    throw;
  }
  cudaFree(dx);
  cudaFree(dy);
  cudaFree(dout);
}

}  // namespace pyfill
