// The CPU twin of kernels/gather.cu (cpu/gather.h).
#include "cpu/gather.h"

#include <algorithm>
#include <cstddef>

namespace sb {

void gather_batch(const float* x, const int32_t* labels, int L, const int32_t* rows, int B, float* xb, int32_t* yb) {
  for (int i = 0; i < B; ++i) {
    std::copy(x + size_t(rows[i]) * L, x + size_t(rows[i] + 1) * L, xb + size_t(i) * L);
    yb[i] = labels[rows[i]];
  }
}

}  // namespace sb
