// Throughput of the CPU backend: training steps (forward + cross-entropy + backward + Adam) and evaluation,
// for S seeds at once, ConvBase with C channels, batch 100, length 40, on random data.
//   bench_cpu --benchmark_min_time=0.2      (benchmark 1.7 takes a plain number of seconds)
// Arguments are (S, C, threads). Rates are per wall-clock second (UseRealTime: the work runs on OpenMP threads).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/philox.h"
#include "cpu/convbase.h"
#include "cpu/simd.h"
#include "study/backends.h"

namespace {

constexpr int kBatch = 100, kLength = 40, kClasses = 10, kTrainRows = 1000, kBatches = 16;
constexpr uint64_t kSeed = 1234;

// A backend with S freshly initialised seeds and random training data (x (S, N, L) in [-1, 1), labels (N)).
std::unique_ptr<sb::Backend> make_trained_backend(const sb::ConvBaseShape& shape, int S, int threads) {
  auto backend = sb::make_backend("cpu", threads);
  const size_t P = shape.num_params();
  std::vector<float> params(size_t(S) * P);
  for (int s = 0; s < S; ++s) sb::convbase_init(shape, kSeed, uint32_t(s), params.data() + size_t(s) * P);
  backend->reset(shape, S, params.data(), sb::AdamConfig{});
  sb::RngStream rng(kSeed, 0, sb::Purpose::spurious_sample_noise);
  std::vector<float> x(size_t(S) * kTrainRows * kLength);
  for (float& v : x) v = rng.uniform(-1.0f, 1.0f);
  std::vector<int32_t> labels(kTrainRows);
  for (int32_t& y : labels) y = int32_t(rng.below(kClasses));
  backend->set_train_data(x.data(), labels.data(), kTrainRows);
  return backend;
}

void BM_train_step(benchmark::State& state) {
  const int S = int(state.range(0)), C = int(state.range(1)), threads = int(state.range(2));
  const sb::ConvBaseShape shape{C, kLength, kClasses};
  auto backend = make_trained_backend(shape, S, threads);
  sb::RngStream rng(kSeed, 0, sb::Purpose::batch_order);
  std::vector<int32_t> batches(size_t(kBatches) * S * kBatch);
  for (int32_t& r : batches) r = int32_t(rng.below(kTrainRows));
  std::vector<float> loss(S);
  int64_t step = 0;
  for (auto _ : state) {
    backend->train_step(batches.data() + size_t(step++ % kBatches) * S * kBatch, kBatch, 1e-3f, loss.data());
    benchmark::DoNotOptimize(loss.data());
  }
  const double steps = double(state.iterations()) * S;
  state.counters["seed_steps_per_s"] = benchmark::Counter(steps, benchmark::Counter::kIsRate);
  state.counters["GFLOP/s"] =
      benchmark::Counter(shape.train_step_flops() * kBatch * steps * 1e-9, benchmark::Counter::kIsRate);
  state.SetLabel(std::string(sb::simd_level_name(sb::simd_level())) + " kernels");
}

void BM_forward(benchmark::State& state) {
  const int S = int(state.range(0)), C = int(state.range(1)), threads = int(state.range(2));
  const sb::ConvBaseShape shape{C, kLength, kClasses};
  auto backend = make_trained_backend(shape, S, threads);
  const int N = kTrainRows;
  sb::RngStream rng(kSeed, 1, sb::Purpose::test_aligned);
  std::vector<float> x(size_t(N) * kLength), logits(size_t(S) * N * kClasses);
  for (float& v : x) v = rng.uniform(-1.0f, 1.0f);
  for (auto _ : state) {
    backend->predict(x.data(), N, false, logits.data());
    benchmark::DoNotOptimize(logits.data());
  }
  const double samples = double(state.iterations()) * S * N;
  state.counters["samples_per_s"] = benchmark::Counter(samples, benchmark::Counter::kIsRate);
  state.counters["GFLOP/s"] = benchmark::Counter(shape.forward_flops() * samples * 1e-9, benchmark::Counter::kIsRate);
  state.SetLabel(std::string(sb::simd_level_name(sb::simd_level())) + " kernels");
}

}  // namespace

BENCHMARK(BM_train_step)
    ->ArgNames({"S", "C", "threads"})
    ->ArgsProduct({{1, 2, 8, 32}, {25}, {1, 2}})
    ->Args({1, 256, 1})
    ->Args({1, 256, 2})
    ->Args({8, 256, 1})
    ->Args({2, 256, 2})
    ->Args({8, 256, 2})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

BENCHMARK(BM_forward)
    ->ArgNames({"S", "C", "threads"})
    ->Args({8, 25, 1})
    ->Args({8, 25, 2})
    ->Args({2, 256, 2})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

BENCHMARK_MAIN();
