// CUDA launchers of the degradation kernels. Images are device buffers (B, H, W, C), uint8
// (u8 = true) or float32 in [0, 1]; every launcher enqueues on `stream` and returns without
// synchronising. Semantics match the C++ kernels in csrc/degrade.cpp.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

namespace pyfill {
namespace cuda_degrade {

struct Dims {
  int b, h, w, c;
};

void sep_filter(const void* src, void* dst, Dims d, bool u8, const std::vector<float>& kx,
                const std::vector<float>& ky, cudaStream_t stream);
void filter2d(const void* src, void* dst, Dims d, bool u8, const std::vector<float>& kernel, int ksize,
              cudaStream_t stream);
void resize(const void* src, void* dst, Dims d, bool u8, int out_h, int out_w, int interp, cudaStream_t stream);
void gaussian_noise(const void* src, void* dst, Dims d, bool u8, float sigma, float mean, bool gray,
                    uint64_t seed, cudaStream_t stream);
void poisson_noise(const void* src, void* dst, Dims d, bool u8, float scale, bool gray, uint64_t seed,
                   cudaStream_t stream);
void salt_pepper(const void* src, void* dst, Dims d, bool u8, float amount, uint64_t seed, cudaStream_t stream);
void jpeg(const void* src, void* dst, Dims d, bool u8, int quality, bool sub420, cudaStream_t stream);

}  // namespace cuda_degrade
}  // namespace pyfill
