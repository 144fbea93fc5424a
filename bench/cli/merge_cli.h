// `bench_spurious merge SHARD.json... --out results.json`: the full study from the shard files --seed-range runs
// wrote (scale/shard.h), with the same outputs as one process: results JSON, per-seed CSV, long-format records.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace sb {

struct MergeCommand {
  CLI::App* app = nullptr;  // the subcommand
  std::vector<std::string> shards;
  std::string out, csv, records;
  bool quiet = false;
};

// Adds `merge` to app. After app.parse():  if (merge_parsed(*cmd)) return run_merge(*cmd);
std::shared_ptr<MergeCommand> add_merge_command(CLI::App& app);
bool merge_parsed(const MergeCommand& cmd);

// Reads and checks every shard before writing anything; throws std::invalid_argument (a shard missing, foreign,
// overlapping) or std::runtime_error (a file that cannot be read or written) with a one-line reason.
int run_merge(const MergeCommand& cmd);

}  // namespace sb
