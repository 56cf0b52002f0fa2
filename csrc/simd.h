// Run-time choice of the instruction set for hot loops: a function marked PYFILL_MULTIVERSION is
// compiled for AVX-512, AVX2 and the baseline ISA, and the loader picks the widest clone this CPU
// runs (GCC/Clang function multi-versioning), so one wheel runs on any x86-64. The build has
// -ffp-contract=off, so no clone fuses a * b + c and all clones give the same bits.
#pragma once

#include <string>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define PYFILL_MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))
#define PYFILL_HAS_MULTIVERSION 1
#endif
#endif
#ifndef PYFILL_MULTIVERSION
#define PYFILL_MULTIVERSION
#endif

namespace pyfill {

// The clone PYFILL_MULTIVERSION functions run on this CPU: "avx512f", "avx2", "baseline", or
// "none" in a build without multi-versioning.
inline std::string dispatch_isa() {
#ifdef PYFILL_HAS_MULTIVERSION
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return "avx512f";
  if (__builtin_cpu_supports("avx2")) return "avx2";
  return "baseline";
#else
  return "none";
#endif
}

}  // namespace pyfill
