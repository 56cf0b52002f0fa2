// Device probing and CUDA entry points shared between the bindings and csrc/cuda/.
// Everything here is callable in a CPU-only build and on machines without a driver.
#pragma once

#include <string>
#include <vector>

namespace pyfill {

struct CudaDevice {
  int index;
  std::string name;
  int major;
  int minor;
  size_t total_memory;
  int multiprocessors;
};

bool cuda_compiled();
std::string cuda_compiled_version();  // "" in a CPU-only build
std::string cuda_compiled_archs();    // "" in a CPU-only build
// Devices visible now; an empty list with a reason when none (no driver, no device, CPU build).
std::vector<CudaDevice> cuda_devices(std::string* reason);

}  // namespace pyfill
