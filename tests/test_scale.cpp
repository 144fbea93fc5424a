// Studies split into seed shards (--seed-range A:B) and merged (bench_spurious merge, scale/shard.h): the merged
// runs, summaries, cross-seed statistics, CSV and records equal one process's bit for bit; every shard set that does
// not make one study is refused with one line naming the problem, a non-zero exit and no output file.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "test_paths.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

using Result = SbRun;

Result run_in(const fs::path& dir, const std::string& args) { return sb_run_in(dir, sb_bench_spurious() + " " + args); }

// Two p values (a sweep: parts per p) and every method (DFR's and AFR's details, AFR's histogram).
const std::string kStudy =
    "--seeds 5 --steps 60 --eval-every 30 --batch 50 --afr-epochs 20 --afr-gammas 0,4 --afr-lambdas 0,0.1 "
    "--dfr-subsamples 2 --p 0.5,0.9 -q";

class Shards : public ::testing::Test {
 protected:
  static fs::path dir;
  static void SetUpTestSuite() {
    dir = fs::temp_directory_path() / ("sb_shards_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    for (const std::string& args : {kStudy + " --out full.json --csv full.csv --records full.jsonl",
                                    kStudy + " --seed-range 0:2 --out a.json", kStudy + " --seed-range 2:3 --out b.json",
                                    kStudy + " --seed-range 3:5 --out c.json"}) {
      const Result r = run_in(dir, args);
      ASSERT_EQ(r.status, 0) << args << ": " << r.err;
    }
  }
  static void TearDownTestSuite() { fs::remove_all(dir); }

  // Runs a merge that must fail: its exit status, one line naming `fragment`, no output file.
  static void expect_refused(const std::string& args, const std::string& fragment, int status = 2) {
    fs::remove(dir / "never.json");
    const Result r = run_in(dir, "merge " + args + " --out never.json");
    EXPECT_EQ(r.status, status) << args;
    EXPECT_NE(r.err.find(fragment), std::string::npos) << args << " -> " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "not one line: " << r.err;
    EXPECT_FALSE(fs::exists(dir / "never.json")) << args;
    for (const auto& e : fs::directory_iterator(dir))
      EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << "left behind " << e.path();
  }

  static json load(const std::string& name) { return json::parse(sb_slurp(dir / name)); }
  static void save(const std::string& name, const json& j) { std::ofstream(dir / name) << j.dump(1); }
};
fs::path Shards::dir;

TEST_F(Shards, MergeEqualsOneProcess) {
  const Result r = run_in(dir, "merge c.json a.json b.json --out merged.json --csv merged.csv --records merged.jsonl -q");
  ASSERT_EQ(r.status, 0) << r.err;
  const json full = load("full.json"), merged = load("merged.json");
  EXPECT_EQ(merged["schema"], "spurious-bench/results/v1");
  EXPECT_EQ(merged["config"], full["config"]);
  ASSERT_EQ(merged["sweep"].size(), 2u);
  for (size_t p = 0; p < 2; ++p)
    for (const char* block : {"p", "runs", "summary", "cross_seed"})
      EXPECT_EQ(merged["sweep"][p][block], full["sweep"][p][block]) << "p entry " << p << ": " << block;
  EXPECT_EQ(sb_slurp(dir / "merged.csv"), sb_slurp(dir / "full.csv"));
  EXPECT_EQ(sb_slurp(dir / "merged.jsonl"), sb_slurp(dir / "full.jsonl"));
  // The merged file says where it came from, in seed order.
  ASSERT_EQ(merged["shards"].size(), 3u);
  EXPECT_EQ(merged["shards"][0]["file"], "a.json");
  EXPECT_EQ(merged["shards"][2]["seed_range"], json({3, 5}));
  // Timing: the slowest shard's times, the sum of the shards' rates.
  double rate = 0;
  for (const char* f : {"a.json", "b.json", "c.json"}) rate += load(f)["sweep"][0]["timing"]["erm"]["seed_steps_per_s"].get<double>();
  EXPECT_DOUBLE_EQ(merged["sweep"][0]["timing"]["erm"]["seed_steps_per_s"].get<double>(), rate);
}

TEST_F(Shards, ShardHoldsItsGlobalSeedsOnly) {
  const json a = load("c.json");
  EXPECT_EQ(a["schema"], "spurious-bench/shard/v1");
  EXPECT_EQ(a["config"]["seeds"], 5);
  EXPECT_EQ(a["sweep"][1]["shard"]["seed_range"], json({3, 5}));
  std::set<int> seeds;
  for (const json& run : a["sweep"][1]["runs"]) seeds.insert(run["seed_index"].get<int>());
  EXPECT_EQ(seeds, (std::set<int>{3, 4}));
}

TEST_F(Shards, RefusesSetsThatAreNotOneStudy) {
  expect_refused("a.json c.json", "seeds 2..2 are in no shard given (--seed-range 2:3 is missing)");
  expect_refused("a.json b.json", "seeds 3..4 of the study's 5 are in no shard given");
  expect_refused("a.json b.json c.json b.json", "both hold seeds 2..2");
  expect_refused("a.json b.json full.json", "full.json is not a shard");
  expect_refused("a.json b.json missing.json", "cannot open missing.json", 1);
  std::ofstream(dir / "cut.json") << sb_slurp(dir / "b.json").substr(0, 5000);
  expect_refused("a.json cut.json c.json", "cut.json is not a JSON document", 1);
  // Another configuration: the differing settings are named.
  json other = load("b.json");
  other["config"]["steps"] = 80;
  other["config"]["dfr"]["subsamples"] = 3;
  save("other.json", other);
  expect_refused("a.json other.json c.json",
                 "other.json is a shard of another study than a.json: dfr.subsamples 3 vs 2, steps 80 vs 60 "
                 "(other.json's vs a.json's)");
  // Damaged evidence (the predictions disagreement is computed from) is caught by its size.
  json damaged = load("b.json");
  std::string& pred = damaged["sweep"][0]["shard"]["evidence"]["erm"]["predictions"]["test_clean"].get_ref<std::string&>();
  pred.resize(pred.size() - 4);
  save("damaged.json", damaged);
  expect_refused("a.json damaged.json c.json", "erm's test_clean predictions is damaged");
  expect_refused("", "shards is required");
}

TEST_F(Shards, RefusesBadSeedRanges) {
  for (const auto& [range, fragment] : std::vector<std::pair<std::string, std::string>>{
           {"3", "expected A:B"}, {"a:b", "expected A:B"}, {"-1:2", "expected A:B"}, {"1.5:3", "expected A:B"},
           {"3:3", "is empty"}, {"4:2", "is empty"}, {"4:7", "not a non-empty range within the study's 5 seeds"}}) {
    fs::remove(dir / "never.json");
    const Result r = run_in(dir, "--seeds 5 --steps 10 --seed-range=" + range + " --out never.json");
    EXPECT_EQ(r.status, 2) << range;
    EXPECT_NE(r.err.find(fragment), std::string::npos) << range << " -> " << r.err;
    EXPECT_FALSE(fs::exists(dir / "never.json"));
  }
}

}  // namespace
