// A batch of activations in the CPU layout (cpu/simd.h) with its own storage, filled from and read back to the
// sample-major (B, C, L) layout the CUDA kernels and PyTorch use: how the kernels are compared with their CPU twins
// (tests, bench_kernels).
#pragma once
#include <cstddef>
#include <vector>

#include "cpu/simd.h"

namespace sb {

struct ActBuffer {
  ActBuffer(int C, int L, int pad, int B_)
      : B(B_), buf(size_t(C) * (L + 2 * pad) * padded_batch(B_), 0.0f), v{buf.data(), C, L, pad, padded_batch(B_)} {}
  void set(const float* sm) {  // sm is (B, C, L)
    for (int b = 0; b < B; ++b)
      for (int c = 0; c < v.channels; ++c)
        for (int p = 0; p < v.length; ++p) v.row(c, p)[b] = sm[(size_t(b) * v.channels + c) * v.length + p];
  }
  void get(float* sm) const {  // sm is (B, C, L)
    for (int b = 0; b < B; ++b)
      for (int c = 0; c < v.channels; ++c)
        for (int p = 0; p < v.length; ++p) sm[(size_t(b) * v.channels + c) * v.length + p] = v.row(c, p)[b];
  }
  std::vector<float> get() const {
    std::vector<float> sm(size_t(B) * v.channels * v.length);
    get(sm.data());
    return sm;
  }
  int B;
  std::vector<float> buf;
  ActView v;
};

}  // namespace sb
