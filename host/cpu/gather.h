// A training batch gathered from one seed's training set on the CPU: the reference twin of kernels/gather.cu.
#pragma once
#include <cstdint>

namespace sb {

// xb (B, L) = rows `rows` (B) of x (N, L); yb (B) = their labels. Row indices are trusted (the backend checks them).
void gather_batch(const float* x, const int32_t* labels, int L, const int32_t* rows, int B, float* xb, int32_t* yb);

}  // namespace sb
