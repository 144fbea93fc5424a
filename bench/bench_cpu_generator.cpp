// Throughput of the MNIST-1D generator (generator.h): a whole set of N samples, from seeding to the
// normalised arrays (no file writing). Single-threaded: the numpy RNG stream is sequential.
//   bench_cpu --benchmark_filter=generate --benchmark_min_time=0.2
// The target: 1,000,000 samples in under 10 s on the 2-core CI machine.
#include <benchmark/benchmark.h>

#include "data/generator.h"

namespace {

void BM_generate_mnist1d(benchmark::State& state) {
  sb::GeneratorConfig cfg;
  cfg.num_samples = state.range(0);
  for (auto _ : state) {
    sb::GeneratedSet set = sb::generate_mnist1d(cfg);
    benchmark::DoNotOptimize(set.x.data());
  }
  state.counters["samples_per_s"] =
      benchmark::Counter(double(state.iterations()) * cfg.num_samples, benchmark::Counter::kIsRate);
}

}  // namespace

BENCHMARK(BM_generate_mnist1d)
    ->ArgNames({"N"})
    ->Arg(5000)
    ->Arg(1000000)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
