// Picks a backend by name. The CUDA ones exist only in builds with a CUDA compiler (host/cuda/).
#include "study/backends.h"

#include <stdexcept>
#include <string>

#include "cpu/backend.h"
#ifdef SB_HAVE_CUDA
#include "cuda/backend_cuda.h"
#endif

namespace sb {

std::unique_ptr<Backend> make_backend(const std::string& name, const BackendOptions& options) {
  if (options.threads < 0) throw std::invalid_argument("threads must be 0 (all) or positive");
  if (options.streams < 1) throw std::invalid_argument("streams must be positive");
  if (options.device < 0) throw std::invalid_argument("device must be 0 or positive");
  if (options.cudnn_conv != "grouped" && options.cudnn_conv != "per-seed")
    throw std::invalid_argument("cuDNN convolution mode '" + options.cudnn_conv + "' (known: grouped, per-seed)");
  if (name == "cpu") return make_cpu_backend(options.threads);
  if (name == "cuda" || name == "cudnn") {
#ifdef SB_HAVE_CUDA
    return make_cuda_backend(name, options);
#else
    throw std::runtime_error("backend '" + name +
                             "' is not available: this build has no CUDA support (rebuild with a CUDA compiler)");
#endif
  }
  throw std::invalid_argument("unknown backend '" + name + "' (known: cpu, cuda, cudnn)");
}

std::vector<std::string> known_backends() { return {"cpu", "cuda", "cudnn"}; }

int cuda_device_count() {
#ifdef SB_HAVE_CUDA
  return cuda_devices();
#else
  return 0;
#endif
}

}  // namespace sb
