// CUDA launchers of the degradation kernels. Images are device buffers (B, H, W, C), uint8
// (u8 = true) or float32 in [0, 1], on the current device; every launcher enqueues on `stream`
// and returns without synchronising. Semantics and arguments match the C++ kernels in
// csrc/degrade.cpp: noise draws image b's numbers from Philox stream (seeds[b], streams[b]),
// with seeds and streams host arrays of B entries.
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
                    const uint64_t* seeds, const uint32_t* streams, cudaStream_t stream);
void poisson_noise(const void* src, void* dst, Dims d, bool u8, float scale, bool gray, const uint64_t* seeds,
                   const uint32_t* streams, cudaStream_t stream);
void salt_pepper(const void* src, void* dst, Dims d, bool u8, float amount, const uint64_t* seeds,
                 const uint32_t* streams, cudaStream_t stream);
void jpeg(const void* src, void* dst, Dims d, bool u8, int quality, bool sub420, cudaStream_t stream);

}  // namespace cuda_degrade
}  // namespace pyfill
