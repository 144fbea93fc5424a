// Which backend runs a study: picked by name from those this build has (the CPU reference always, the CUDA ones in
// builds with a CUDA compiler).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/backend.h"

namespace sb {

// "cpu" (always), "cuda"/"cudnn" when built and a device is present. Throws std::runtime_error otherwise
// (also for options out of range).
std::unique_ptr<Backend> make_backend(const std::string& name, const BackendOptions& options);
inline std::unique_ptr<Backend> make_backend(const std::string& name, int threads) {
  BackendOptions options;
  options.threads = threads;
  return make_backend(name, options);
}
std::vector<std::string> known_backends();
// Usable CUDA devices: 0 in a build without the CUDA backend or on a machine without a GPU.
int cuda_device_count();

}  // namespace sb
