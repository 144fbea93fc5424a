// The regression toy's results (study/toy.h) as files and a terminal table: `bench_spurious toy`'s output.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "study/toy.h"

namespace sb {

// The results JSON (schema spurious-bench/toy/v1: docs/toy.md): configuration, closed form, summaries, every run;
// device names the CPU the study ran on, simd the CPU kernels' instruction-set level.
nlohmann::json toy_results_json(const ToyConfig& cfg, const ToyResult& r, const std::string& device,
                                const std::string& simd);
// One row per (seed, model, regime).
std::string toy_results_csv(const ToyResult& r);
// Per model and regime: the metrics over the seeds, the learned weights and the closed form.
std::string toy_summary_table(const ToyConfig& cfg, const ToyResult& r);

}  // namespace sb
