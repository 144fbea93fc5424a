// Seed shards of a study and their merge. A shard trains the global seed indices [A, B) of a study's seeds
// (--seed-range A:B, or one MPI rank's share) and writes a study document with schema "spurious-bench/shard/v1" whose
// every part (one per p) carries a "shard" block: the seed range and what its seeds contribute to the cross-seed
// statistics (study.h's MethodSeedEvidence), stored exactly: predictions as base64 int8, saliency sums as base64
// little-endian float64. merge_shards puts the runs of every shard in seed order and computes the cross-seed
// statistics as one process does (compute_cross_seed), so the merged runs, summaries and cross-seed statistics equal a
// one-process run's bit for bit. Format: docs/results-format.md, use: docs/scaling.md.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/data.h"
#include "report/report.h"
#include "study/study.h"

namespace sb {

// One p's part of a shard's document: results_json with the shard block.
nlohmann::json shard_part(const StudyConfig& cfg, const Dataset& data, const RunEnvironment& env,
                          const StudyResult& result);

// The seed range [A, B) of "A:B" (what --seed-range takes); std::invalid_argument naming the flag otherwise.
std::pair<int, int> parse_seed_range(const std::string& text, const std::string& flag = "--seed-range");

// A method's evidence in a shard or run folder (base64, exact) and back; sizes are checked against S seeds of
// n_test test samples and classes x length saliency maps (std::invalid_argument starting with `what` otherwise).
nlohmann::json evidence_json(const MethodSeedEvidence& ev);
MethodSeedEvidence evidence_from_json(const nlohmann::json& j, int S, int n_test, int classes, int length,
                                      const std::string& what);

// "steps 80 vs 60, dfr.subsamples 3 vs 2": every leaf of two JSON documents that differs, a's value first.
std::string json_difference(const nlohmann::json& a, const nlohmann::json& b);

struct ShardFile {
  std::string name;      // for messages: the file it was read from
  nlohmann::json doc;    // its study document
};

struct MergedStudy {
  nlohmann::json doc;                // schema spurious-bench/results/v1, as one process writes it (plus "shards")
  std::vector<StudyResult> parts;    // per p, in the document's order
  std::vector<float> ps;             // p of each part
  int steps = 0;                     // training steps per seed (the configuration's)
};

// The full study from its shards, in any order. Shards of different configurations, of different versions, or
// whose seed ranges overlap or leave seeds out are refused with std::invalid_argument naming the files, settings or
// seeds.
MergedStudy merge_shards(const std::vector<ShardFile>& shards);

}  // namespace sb
