// The spurious transform of the study (study.md §1.2): label-dependent noise planted on a block of
// features of a fraction p of each class, and the two shifted test sets built from clean test samples: its
// configuration and the draw order that the CPU transform (cpu/spurious.h) and the CUDA kernels
// (kernels/spurious_cuda.h) both follow.
//
// Every draw comes from a Philox stream keyed by (base seed, seed index, purpose) (core/philox.h), so a
// seed's data depends on nothing but its own seed index. Within a purpose, each unit of work (a class
// or a sample) reads its own sub-stream: unit u starts at block u << 32, i.e. counter
// {j, u, seed_index, purpose} for j = 0, 1, 2, ... . A CUDA thread per class or per sample can thus
// start its own RngStream(base_seed, seed_index, purpose, uint64_t(u) << 32) and reproduce the host
// exactly, whatever order the units are processed in. The draw order inside each sub-stream:
//
//   Purpose::spurious_class_noise  unit k (class k, 0 <= k < classes): c_k = one truncated_normal_nonneg
//                                  draw. Drawn for every class, whatever p (so c_k never depends on p).
//   Purpose::spurious_choice       unit k (class k): partial Fisher-Yates over the indices of class k in
//                                  ascending order, idx[0..n_k): for j = 0 .. m_k-1:
//                                  swap(idx[j], idx[j + below(n_k - j)]); chosen = idx[0..m_k),
//                                  m_k = round_half_even(p * n_k). Exactly one u32 per step, and the
//                                  j-th draw does not depend on m_k, so a smaller p plants a subset
//                                  of what a larger p plants (nested p sweeps).
//   Purpose::spurious_sample_noise unit i (training sample i, its row in x): per_sample: one
//                                  truncated_normal_nonneg draw; per_element: one draw per feature of
//                                  the (clipped) block, in ascending feature order. Only chosen samples
//                                  draw; per_class mode does not use this stream.
//   Purpose::test_aligned          unit i (test sample i): as spurious_sample_noise, for block y_i.
//                                  per_class mode uses c_y from spurious_class_noise (the seed's c_k).
//   Purpose::test_conflicting      unit i (test sample i): first u32 r = below(classes - 1),
//                                  k' = r < y_i ? r : r + 1 (uniform over the other classes); then,
//                                  per_sample: one truncated-normal draw, per_element: one per feature
//                                  of block k' in ascending order; per_class: value c_{k'}, no draw.
//
// Truncated normals are RngStream::truncated_normal_nonneg(mean, sd) (rejection of Box-Muller draws,
// two u32 per attempt), so a unit's draw count is random, which is why units get separate sub-streams.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace sb {

// How the noise values are drawn. CLI names: class | sample | element.
enum class NoiseDraw { per_class, per_sample, per_element };

// "class" | "sample" | "element"; throws std::invalid_argument naming the accepted values.
NoiseDraw parse_noise_draw(const std::string& name);
std::string to_string(NoiseDraw draw);

// The three sets the transform makes: D_sp from the training set, the aligned and the conflicting test sets.
enum class SpuriousSetKind { train, aligned, conflicting };

struct SpuriousConfig {
  double p = 0.9;               // fraction of each class that gets the planted feature
  float mean = 2.0f, sd = 1.0f; // noise ~ N(mean, sd) restricted to [0, inf)
  int stride = 4, width = 5;    // block of class k: [k*stride, min(length, k*stride + width))
  NoiseDraw draw = NoiseDraw::per_class;
  int classes = 10;
};

// Throws std::invalid_argument for: p outside [0, 1] or NaN; sd <= 0 or not finite; mean not finite;
// stride <= 0; width <= 0; classes < 2; a block start k*stride >= length for some class k (sequence
// too short); mean < -3*sd (rejection sampling would need more than ~740 tries per value).
void validate(const SpuriousConfig& cfg, int length);

// Round half to even, as Python's round() and numpy: round_half_even(205.5) == 206, (204.5) == 204.
// Written out (not nearbyint) so it does not depend on the floating-point rounding mode.
int64_t round_half_even(double v);

// Number of samples of a class with n samples that get the feature: round_half_even(p * n).
int planted_count(double p, int n);

// Feature block of class k: [block_begin, block_end).
inline int block_begin(const SpuriousConfig& cfg, int k) { return k * cfg.stride; }
inline int block_end(const SpuriousConfig& cfg, int k, int length) {
  const int e = k * cfg.stride + cfg.width;
  return e < length ? e : length;
}

// The per-class noise values c_k (k = 0 .. classes-1) of one seed. Drawn whatever cfg.draw is
// (only per_class mode uses them).
std::vector<float> class_noise_values(const SpuriousConfig& cfg, uint64_t base_seed, uint32_t seed_index);

}  // namespace sb
