// ConvBase, the MNIST-1D CNN of the study (study.md §2): its shape, parameter layout and initialisation, which
// every backend shares (the CPU reference's forward and backward passes are in cpu/convbase.h).
//
//   Conv1d(1->C, k5, s2, p1) -> ReLU -> Conv1d(C->C, k3, s2, p1) -> ReLU -> Conv1d(C->C, k3, s2, p1)
//   -> ReLU -> flatten (index c*L3 + l) -> Linear(C*L3 -> 10)          lengths 40 -> 19 -> 10 -> 5
//
// The parameters of one seed are one flat float buffer in PyTorch's state_dict order and shapes:
//   conv1.weight (C,1,5)  conv1.bias (C)  conv2.weight (C,C,3)  conv2.bias (C)
//   conv3.weight (C,C,3)  conv3.bias (C)  head.weight (10, C*L3)  head.bias (10)
// Seed-batched buffers put the seed first: params is (S, P).
#pragma once
#include <cstddef>
#include <cstdint>

namespace sb {

struct ConvBaseShape {
  int channels = 25;
  int length = 40;
  int classes = 10;

  static constexpr int k1 = 5, k2 = 3, k3 = 3, stride = 2, pad = 1;
  static int out_len(int in, int k) { return (in + 2 * pad - k) / stride + 1; }
  int l1() const { return out_len(length, k1); }
  int l2() const { return out_len(l1(), k2); }
  int l3() const { return out_len(l2(), k3); }
  int feature_dim() const { return channels * l3(); }

  // Offsets of each tensor inside one seed's flat parameter buffer.
  size_t off_w1() const { return 0; }
  size_t off_b1() const { return off_w1() + size_t(channels) * k1; }
  size_t off_w2() const { return off_b1() + channels; }
  size_t off_b2() const { return off_w2() + size_t(channels) * channels * k2; }
  size_t off_w3() const { return off_b2() + channels; }
  size_t off_b3() const { return off_w3() + size_t(channels) * channels * k3; }
  size_t off_wh() const { return off_b3() + channels; }
  size_t off_bh() const { return off_wh() + size_t(classes) * feature_dim(); }
  size_t num_params() const { return off_bh() + classes; }
  // Forward FLOPs per sample (multiply-add = 2), for rate reporting.
  double forward_flops() const {
    const double C = channels;
    return 2.0 * (C * l1() * k1 + C * C * k2 * l2() + C * C * k3 * l3() + double(classes) * feature_dim());
  }
  // FLOPs of one training step per sample: the forward pass, the weight gradients (as many as the forward) and
  // the input gradients (as many again, except conv1's, which nothing needs). Softmax and Adam are left out
  // (under 0.5 %).
  double train_step_flops() const { return 3.0 * forward_flops() - 2.0 * channels * l1() * k1; }
  // Bytes one training step of one seed moves through device memory at batch B if every layer reads its inputs
  // from memory and writes its outputs once (no fusion across layers, no reuse across layers through caches):
  // per sample the batch gather, each layer's forward (input read, output written), the head and CE, each layer's
  // backward (the upstream gradient and the saved input read for the weight gradient; the gradient read, the
  // ReLU mask read and the input gradient written), and per seed the parameters read by forward and backward,
  // the gradients written, and Adam's read of p, g, m, v and write of p, m, v. A floor for an unfused design,
  // used to place measured rates against memory bandwidth.
  double train_step_bytes(int B) const {
    const double L = length, C = channels, F = feature_dim(), K = classes, a1 = C * l1(), a2 = C * l2();
    const double gather = 2 * L, forward = (L + a1) + (a1 + a2) + (a2 + F) + (F + K), ce = 2 * K;
    const double head_back = (K + F) + (K + 2 * F);
    const double conv3_back = (F + a2) + (F + 2 * a2), conv2_back = (a2 + a1) + (a2 + 2 * a1), conv1_back = a1 + L;
    const double per_sample = gather + forward + ce + head_back + conv3_back + conv2_back + conv1_back;
    return 4.0 * (B * per_sample + 10.0 * double(num_params()));
  }
};

// PyTorch-default initialisation (kaiming-uniform with a = sqrt(5)): every weight and bias of a layer
// ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), drawn in parameter order from stream (base_seed, seed_index, init_weights).
// Throws std::invalid_argument unless channels and classes are positive and the input is long enough for three
// stride-2 convolutions.
void check_convbase_shape(const ConvBaseShape& shape);

void convbase_init(const ConvBaseShape& shape, uint64_t base_seed, uint32_t seed_index, float* params);

}  // namespace sb
