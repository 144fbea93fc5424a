// numpy's legacy RandomState (np.random.seed / rand / randn / choice / permutation), reproduced draw
// for draw, so the MNIST-1D generator gives the same arrays as the Python original
// (docs/mnist1d-generator.md §2). The bit generator is MT19937 seeded with init_genrand (the same
// stream as std::mt19937(seed)); the sampling rules on top are numpy's (distributions.c,
// legacy-distributions.c).
#pragma once
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <vector>

namespace sb {

// MT19937 that twists and tempers all 624 words at once in plain loops the compiler vectorises:
// several times faster per draw than libstdc++'s std::mt19937 (tempers word by word), same stream.
class Mt19937 {
 public:
  explicit Mt19937(uint32_t seed) {
    mt_[0] = seed;
    for (uint32_t i = 1; i < kN; ++i) mt_[i] = 1812433253u * (mt_[i - 1] ^ (mt_[i - 1] >> 30)) + i;
  }
  uint32_t operator()() {
    if (pos_ == kN) refill();
    return out_[pos_++];
  }

 private:
  static constexpr uint32_t kN = 624, kM = 397, kUpper = 0x80000000u, kLower = 0x7fffffffu, kA = 0x9908b0dfu;
  static uint32_t twist(uint32_t hi, uint32_t lo, uint32_t far) {
    const uint32_t y = (hi & kUpper) | (lo & kLower);
    return far ^ (y >> 1) ^ ((0u - (y & 1u)) & kA);
  }
  void refill() {
    uint32_t i = 0;
    for (; i < kN - kM; ++i) mt_[i] = twist(mt_[i], mt_[i + 1], mt_[i + kM]);
    for (; i < kN - 1; ++i) mt_[i] = twist(mt_[i], mt_[i + 1], mt_[i + kM - kN]);
    mt_[kN - 1] = twist(mt_[kN - 1], mt_[0], mt_[kM - 1]);
    for (i = 0; i < kN; ++i) {
      uint32_t y = mt_[i];
      y ^= y >> 11;
      y ^= (y << 7) & 0x9d2c5680u;
      y ^= (y << 15) & 0xefc60000u;
      y ^= y >> 18;
      out_[i] = y;
    }
    pos_ = 0;
  }
  uint32_t mt_[kN], out_[kN];
  uint32_t pos_ = kN;
};

class LegacyRandomState {
 public:
  explicit LegacyRandomState(uint32_t seed) : mt_(seed) {}

  uint32_t next_uint32() { return mt_(); }
  uint64_t next_uint64() {  // numpy's mt19937_next64: high word first
    const uint64_t hi = next_uint32();
    return hi << 32 | next_uint32();
  }

  // rand(): 53 random bits from two draws, in [0, 1).
  double random_sample() {
    const uint32_t a = next_uint32() >> 5, b = next_uint32() >> 6;
    return (a * 67108864.0 + b) / 9007199254740992.0;
  }

  // randn(): polar Box-Muller. Each accepted pair yields two values; the second is cached and returned by
  // the next call (rand() does not touch the cache, a new seed clears it).
  double gauss() {
    if (has_gauss_) {
      has_gauss_ = false;
      return gauss_;
    }
    double x1, x2, r2;
    do {
      x1 = 2.0 * random_sample() - 1.0;
      x2 = 2.0 * random_sample() - 1.0;
      r2 = x1 * x1 + x2 * x2;
    } while (r2 >= 1.0 || r2 == 0.0);
    const double f = std::sqrt(-2.0 * std::log(r2) / r2);
    gauss_ = f * x1;
    has_gauss_ = true;
    return f * x2;
  }

  // Uniform integer in [0, max] by masked rejection (numpy's random_interval, used by shuffle).
  uint64_t interval(uint64_t max) {
    if (max == 0) return 0;
    const uint64_t mask = smallest_mask(max);
    uint64_t v;
    if (max <= 0xffffffffu) {
      while ((v = next_uint32() & mask) > max) {
      }
    } else {
      while ((v = next_uint64() & mask) > max) {
      }
    }
    return v;
  }

  // choice(n) == randint(0, n): masked rejection on [0, n-1]; n == 1 draws nothing (numpy's rng == 0 case).
  int64_t choice(int64_t n) {
    if (n <= 0) throw std::invalid_argument("choice: n must be positive");
    const uint64_t rng = uint64_t(n - 1);
    if (rng == 0) return 0;
    if (rng == 0xffffffffu) return next_uint32();
    const uint64_t mask = smallest_mask(rng);
    uint64_t v;
    if (rng < 0xffffffffu) {
      while ((v = next_uint32() & mask) > rng) {
      }
    } else {
      while ((v = next_uint64() & mask) > rng) {
      }
    }
    return int64_t(v);
  }

  // permutation(n): arange(n) shuffled by Fisher-Yates from the top (numpy's legacy _shuffle_raw).
  template <class Int>
  std::vector<Int> permutation(size_t n) {
    std::vector<Int> a(n);
    for (size_t i = 0; i < n; ++i) a[i] = Int(i);
    for (size_t i = n; i-- > 1;) {
      const size_t j = size_t(interval(i));
      const Int tmp = a[j];
      a[j] = a[i];
      a[i] = tmp;
    }
    return a;
  }

 private:
  static uint64_t smallest_mask(uint64_t m) {  // smallest 2^k - 1 >= m
    m |= m >> 1;
    m |= m >> 2;
    m |= m >> 4;
    m |= m >> 8;
    m |= m >> 16;
    m |= m >> 32;
    return m;
  }

  Mt19937 mt_;
  double gauss_ = 0.0;
  bool has_gauss_ = false;
};

}  // namespace sb
