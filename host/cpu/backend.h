// The reference CPU backend (cpu/backend.cpp): seeds in parallel over OpenMP threads, each seed's step the
// convbase.h chain of the layer twins.
#pragma once
#include <memory>

#include "core/backend.h"

namespace sb {

// threads 0 = all cores.
std::unique_ptr<Backend> make_cpu_backend(int threads);

}  // namespace sb
