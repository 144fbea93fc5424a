// The "cudnn" baseline backend (issue 3): not written yet.
#include <stdexcept>

#include "backend_cuda.h"

namespace sb {

std::unique_ptr<Backend> make_cudnn_backend(const BackendOptions&) {
  throw std::runtime_error("backend 'cudnn' is not implemented yet (issue 3)");
}

}  // namespace sb
