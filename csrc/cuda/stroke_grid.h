// CUDA launchers of the stroke-grid kernels (SPEC S2). All pointers are device pointers on
// `device`; work is queued on `stream` (a cudaStream_t as an integer) with no host round trip.
#pragma once

#include <cstdint>

namespace pyfill {
namespace stroke {

// strokes: (B, H, W, 3) uint8 or float32 (is_float); occupancy: (B, H, W) bytes, nonzero =
// occupied, or null for "any channel > 0"; out: (B, S1, S2, 8) float32.
// Workspace: labels (B * H * W int32), boxes (4 * B * S1 * S2 int32).
void stroke_grid_cuda(const void* strokes, bool is_float, const uint8_t* occupancy, float* out,
                      int32_t* labels, int32_t* boxes, int64_t B, int64_t H, int64_t W, int64_t S1,
                      int64_t S2, int device, uintptr_t stream);

// images: (B, H, W, 3) uint8 or float32; out: (B, S1, S2, 8) float32; `dropped` cells zeroed per
// image, chosen from (seed, image index). Workspace: perm (B * S1 * S2 int32).
void stroke_grid_from_image_cuda(const void* images, bool is_float, float* out, int32_t* perm,
                                 int64_t B, int64_t H, int64_t W, int64_t S1, int64_t S2,
                                 uint32_t dropped, uint64_t seed, int device, uintptr_t stream);

}  // namespace stroke
}  // namespace pyfill
