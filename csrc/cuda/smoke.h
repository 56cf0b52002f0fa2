#pragma once

namespace pyfill {
// out = a * x + y computed on the current CUDA device (host arrays in and out).
void cuda_smoke_saxpy(int n, float a, const float* x, const float* y, float* out);
}  // namespace pyfill
