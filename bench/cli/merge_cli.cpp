#include "cli/merge_cli.h"

#include <cstdio>
#include <cstring>
#include <iostream>
#include <stdexcept>

#include "core/file_util.h"
#include "report/records.h"
#include "report/report.h"
#include "scale/shard.h"

namespace sb {

std::shared_ptr<MergeCommand> add_merge_command(CLI::App& app) {
  auto cmd = std::make_shared<MergeCommand>();
  cmd->app = app.add_subcommand(
      "merge",
      "Rebuild a study's results from the shard files of --seed-range runs (or MPI ranks): per-seed runs, summaries "
      "and cross-seed statistics identical to one process's (docs/scaling.md)");
  cmd->app->add_option("shards", cmd->shards, "Shard files (results JSON written with --seed-range)")->required();
  cmd->app->add_option("--out", cmd->out, "Write the merged results JSON here (written atomically)")->required();
  cmd->app->add_option("--csv", cmd->csv, "Write per-seed final metrics CSV here");
  cmd->app->add_option("--records", cmd->records, "Write long-format records here, .csv or .jsonl");
  cmd->app->add_flag("-q,--quiet", cmd->quiet, "Do not print the summary tables");
  return cmd;
}

bool merge_parsed(const MergeCommand& cmd) { return cmd.app->parsed(); }

int run_merge(const MergeCommand& cmd) {
  const RecordFormat record_format = cmd.records.empty() ? RecordFormat::csv : record_format_of(cmd.records);
  for (const std::string& f : {cmd.out, cmd.csv, cmd.records})
    if (!f.empty()) check_writable(f);
  std::vector<ShardFile> shards;
  for (const std::string& name : cmd.shards) {
    const std::string text = read_file(name);
    try {
      shards.push_back({name, nlohmann::json::parse(text)});
    } catch (const nlohmann::json::parse_error& e) {
      throw std::runtime_error(name + " is not a JSON document (truncated?): " + e.what());
    }
  }
  const MergedStudy merged = merge_shards(shards);
  std::string csv, records;
  for (size_t i = 0; i < merged.parts.size(); ++i) {
    const StudyResult& r = merged.parts[i];
    csv += results_csv(r, merged.ps[i], i == 0);
    if (!cmd.records.empty()) records += records_text(merged.ps[i], merged.steps, r, record_format, i == 0);
    if (cmd.quiet) continue;
    if (merged.parts.size() > 1) std::printf("== p = %g\n", merged.ps[i]);
    std::cout << summary_table(r);
    std::fputs(cross_seed_table(r).c_str(), stdout);
  }
  write_file_atomic(cmd.out, merged.doc.dump(1) + "\n");
  if (!cmd.csv.empty()) write_file_atomic(cmd.csv, csv);
  if (!cmd.records.empty()) write_file_atomic(cmd.records, records);
  if (!cmd.quiet)
    std::fprintf(stderr, "merged %zu shards (%d seeds) into %s\n", shards.size(),
                 merged.doc.at("config").at("seeds").get<int>(), cmd.out.c_str());
  return 0;
}

}  // namespace sb
