// bench_spurious end to end: bad input gets one line on stderr, a non-zero exit and no output file;
// good input writes results that are deterministic and independent of the seed count and threads.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/backend.h"
#include "data/data.h"
#include "data/npy.h"
#include "study/backends.h"
#include "study/methods/methods.h"
#include "study/study.h"
#include "test_paths.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

using Result = SbRun;

fs::path scratch() { return sb_scratch_dir("sb_cli"); }
std::string slurp(const fs::path& p) { return sb_slurp(p); }

// bench_spurious with these arguments, run in a fresh scratch folder (absolute paths in args work from there).
Result run(const std::string& args) { return sb_run_in(scratch(), sb_bench_spurious() + " " + args); }

// Exit 2 for a command line that asks for something that cannot run, 1 for a failure to do what it asks.
void expect_clean_error(const std::string& args, const std::string& fragment, int status = 2) {
  const fs::path dir = scratch();
  const fs::path out = dir / "never.json";
  Result r = run(args + " --out " + out.string());
  EXPECT_EQ(r.status, status) << args;
  EXPECT_NE(r.err.find(fragment), std::string::npos) << args << " -> " << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "not one line: " << r.err;
  EXPECT_FALSE(fs::exists(out)) << args;
  for (const auto& e : fs::directory_iterator(dir))
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << "left behind " << e.path();
  fs::remove_all(dir);
}

json run_json(const std::string& args) {
  const fs::path dir = scratch();
  Result r = run(args + " --quiet --out " + (dir / "r.json").string());
  EXPECT_EQ(r.status, 0) << r.err;
  json j = json::parse(slurp(dir / "r.json"));
  fs::remove_all(dir);
  return j;
}

// The final metrics of (method, seed_index) as a comparable string.
std::string metrics_of(const json& j, const std::string& method, int seed_index) {
  for (const auto& r : j["runs"])
    if (r["method"] == method && r["seed_index"] == seed_index) return r["metrics"].dump() + r["curves"].dump() + r.value("afr", json()).dump() +
                                                                     r.value("dfr", json()).dump() + r["shortcut_reliance"].dump();
  return "missing";
}

const std::string kSmall =
    "--steps 60 --eval-every 30 --batch 50 --afr-epochs 20 --afr-gammas 0,4 --afr-lambdas 0,0.1 --dfr-subsamples 2";
const char* kMethods[] = {"erm-base", "erm", "dfr", "dfr-source", "afr", "afr-source"};

}  // namespace

TEST(Cli, HelpListsTheFlags) {
  Result r = run("--help");
  EXPECT_EQ(r.status, 0);
  for (const char* flag : {"--seeds", "--steps", "--p", "--methods", "--channels", "--lr", "--batch", "--seed",
                           "--threads", "--backend", "--streams", "--stream-per-seed", "--no-graphs", "--cudnn-conv", "--data",
                           "--out", "--csv", "dataset"})
    EXPECT_NE(r.out.find(flag), std::string::npos) << flag;
  // --methods lists the registry, which is also what validation accepts.
  EXPECT_EQ(sb::known_methods().size(), sb::study_methods().size());
  for (const sb::Method& m : sb::study_methods())
    EXPECT_NE(r.out.find(m.name + " (" + m.summary + ")"), std::string::npos) << m.name;
}

TEST(Cli, BadInputIsOneLineAndNoFile) {
  expect_clean_error("--seeds 0", "--seeds");
  expect_clean_error("--seeds -3", "--seeds");
  expect_clean_error("--seeds abc", "--seeds");
  expect_clean_error("--steps 0", "--steps");
  expect_clean_error("--batch -1", "--batch");
  expect_clean_error("--channels 0", "--channels");
  expect_clean_error("--threads -2", "--threads");
  expect_clean_error("--p 1.5", "p");
  expect_clean_error("--p -0.1", "p");
  expect_clean_error("--p nan", "p");
  expect_clean_error("--lr 0", "--lr");
  expect_clean_error("--methods erm,bogus", "unknown method 'bogus'");
  expect_clean_error("--backend tpu", "unknown backend 'tpu'");
  expect_clean_error("--noise-draw everything", "everything");
  expect_clean_error("--data /nonexistent/folder", "/nonexistent/folder", 1);
  expect_clean_error("--no-such-flag", "no-such-flag");
  expect_clean_error("--batch 5000", "larger than the training set");
  expect_clean_error("--p 0.5,abc", "--p: 'abc' is not a number");
  expect_clean_error("--p 0.5,1.5", "p");
  expect_clean_error("--afr-stage1-steps 100,0", "--afr-stage1-steps");
  expect_clean_error("--afr-stage1-steps 1.5", "not an integer");
  expect_clean_error("--afr-gammas ''", "--afr-gammas");
  expect_clean_error("--dfr-fraction 0", "--dfr-fraction");
  expect_clean_error("--afr-stage1-fraction 1", "--afr-stage1-fraction");
  expect_clean_error("--streams 4", "--streams applies to --backend cuda only");
  expect_clean_error("--no-graphs", "--no-graphs applies to --backend cuda only");
  expect_clean_error("--stream-per-seed --backend cudnn", "--stream-per-seed applies to --backend cuda only");
  expect_clean_error("--cudnn-conv per-seed", "--cudnn-conv applies to --backend cudnn only");
  expect_clean_error("--backend cuda --streams 0", "--streams");
  expect_clean_error("--backend cuda --streams 2 --stream-per-seed", "excludes");
  expect_clean_error("--backend cudnn --cudnn-conv sideways", "sideways");
  // Every list flag refuses empty and repeated entries.
  expect_clean_error("--methods erm,,erm", "--methods: empty entry");
  expect_clean_error("--methods erm,", "--methods: empty entry");
  expect_clean_error("--methods erm,dfr,erm", "--methods: 'erm' is listed twice");
  expect_clean_error("--afr-gammas 1,,2", "--afr-gammas: empty entry");
  expect_clean_error("--afr-lambdas 0.1,0.10", "--afr-lambdas: 0.10 is listed twice");
  expect_clean_error("--dfr-l1-grid 0.1,0.1", "--dfr-l1-grid");
  expect_clean_error("--p 0.5,0.5", "--p: '0.5' is listed twice");
  expect_clean_error("--afr-stage1-steps 100,100", "--afr-stage1-steps");
  expect_clean_error("toy --models linear,linear", "--models: 'linear' is listed twice");
  // A run that cannot fit in memory is refused before it starts, with the numbers and the flag to lower.
  expect_clean_error("--seeds 100000000", "of memory");
  expect_clean_error("--seeds 100000000", "lower --seeds");
  expect_clean_error("--channels 100000", "lower --channels");
  expect_clean_error("--records r.txt", "--records r.txt: the name must end in .csv or .jsonl");
}

TEST(Cli, OutputFoldersAreCheckedBeforeTraining) {
  const fs::path dir = scratch();
  fs::create_directories(dir / "full");
  std::ofstream(dir / "full" / "x") << "x";
  std::ofstream(dir / "file") << "x";
  for (const std::string flag : {"--save-models", "--save-features"}) {
    for (const fs::path& bad : {dir / "full", dir / "file", fs::path("/nonexistent/dir/out")}) {
      Result r = run("--seeds 1 --steps 1 " + flag + " " + bad.string());
      EXPECT_EQ(r.status, 1) << flag << " " << bad;
      EXPECT_NE(r.err.find("cannot write " + bad.string()), std::string::npos) << r.err;
      EXPECT_EQ(r.out, "") << "it trained before failing";
    }
  }
  Result r = run("--seeds 1 --steps 1 --records /nonexistent/dir/r.csv");
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.out, "");
  for (const auto& e : fs::directory_iterator(dir))
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << "left behind " << e.path();
  fs::remove_all(dir);
}

// A --save-models run killed half-way (here after erm-base's model was written, while erm trains) leaves no
// models folder: the files wait in DIR.tmp.<pid> until the run ends.
TEST(Cli, SaveModelsKilledHalfWayLeavesNoFolder) {
  const fs::path dir = scratch();
  const fs::path models = dir / "models";
  const std::string cmd = sb_bench_spurious() + " --seeds 2 --steps 60 --eval-every 30 --batch 50 --quiet "
                          "--no-saliency --methods erm-base,erm,afr --afr-epochs 100000 --save-models " +
                          models.string() + " >/dev/null 2>&1 & echo $! >" + (dir / "pid").string();
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  const std::string pid = sb_slurp(dir / "pid");
  bool staged = false;
  for (int i = 0; i < 600 && !staged; ++i) {  // up to 60 s for erm's model (afr then runs for minutes)
    for (const auto& e : fs::directory_iterator(dir))
      if (e.path().filename().string().rfind("models.tmp.", 0) == 0 && fs::exists(e.path() / "erm.p0.9.safetensors"))
        staged = true;
    if (!staged) ::usleep(100000);
  }
  ASSERT_EQ(std::system(("kill -9 " + pid).c_str()), 0);
  EXPECT_TRUE(staged) << "the models never appeared in the staging folder";
  ::usleep(200000);
  EXPECT_FALSE(fs::exists(models)) << "a half-written models folder";
  fs::remove_all(dir);
}

TEST(Cli, CrossSeedTableNamesEveryColumnBySet) {
  const fs::path dir = scratch();
  Result r = run(kSmall + " --seeds 3 --quiet --methods erm,dfr --no-saliency --out " + (dir / "r.json").string());
  ASSERT_EQ(r.status, 0) << r.err;
  const json j = json::parse(slurp(dir / "r.json"));
  const std::string header = "underspec aligned underspec conflicting";
  const size_t at = r.out.find(header);
  ASSERT_NE(at, std::string::npos) << r.out;
  const size_t line = r.out.find("\nerm ", at);
  ASSERT_NE(line, std::string::npos);
  double aligned = 0, conflicting = 0;
  ASSERT_EQ(std::sscanf(r.out.c_str() + line + 1, "erm %lf %lf", &aligned, &conflicting), 2);
  EXPECT_NEAR(aligned, j["cross_seed"]["erm"]["underspecification"]["test_aligned"].get<double>(), 0.006);
  EXPECT_NEAR(conflicting, j["cross_seed"]["erm"]["underspecification"]["test_conflicting"].get<double>(), 0.006);
  fs::remove_all(dir);
}

TEST(Cli, CudaBackendWithoutCuda) {
  if (sb::cuda_device_count() > 0) GTEST_SKIP() << "a CUDA device is present: the CUDA backend tests cover --backend cuda";
  expect_clean_error("--backend cuda", "cuda", 1);
}

TEST(Cli, UnwritableOutputFailsBeforeTraining) {
  Result r = run("--seeds 1 --steps 1 --out /nonexistent/dir/r.json");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("cannot write /nonexistent/dir/r.json"), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "");  // no summary: it stopped before training
}

TEST(Cli, CorruptDataIsRejected) {
  const fs::path dir = scratch() / "data";
  fs::create_directories(dir);
  const std::string src = sb_source_dir() + "/data/mnist1d/";
  for (const char* n : {"x_train.f32", "y_train.i32", "x_test.f32", "y_test.i32", "SHA256SUMS"}) fs::copy_file(src + n, dir / n);
  fs::resize_file(dir / "x_train.f32", 640000 - 160);  // one sample short
  expect_clean_error("--data " + dir.string(), "x_train.f32", 1);
  fs::remove_all(dir.parent_path());
}

TEST(Cli, ResultsJsonHasTheSchema) {
  const fs::path dir = scratch();
  Result r = run("--seeds 2 " + kSmall + " --out " + (dir / "r.json").string() + " --csv " + (dir / "r.csv").string());
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("test_conflicting"), std::string::npos);  // summary table on stdout
  EXPECT_NE(r.err.find("step 60/60"), std::string::npos);         // progress on stderr
  json j = json::parse(slurp(dir / "r.json"));
  EXPECT_EQ(j["schema"], "spurious-bench/results/v1");
  EXPECT_EQ(j["config"]["seeds"], 2);
  EXPECT_EQ(j["config"]["spurious"]["p"], 0.9);
  EXPECT_EQ(j["environment"]["backend"], "cpu");
  ASSERT_EQ(j["runs"].size(), 12u);  // 2 seeds x 6 methods
  for (const auto& run : j["runs"]) {
    const std::string method = run["method"];
    for (const char* set : {"train", "test_clean", "test_aligned", "test_conflicting"}) {
      const auto& m = run["metrics"][set];
      EXPECT_GE(m["accuracy"].get<double>(), 0.0);
      EXPECT_LE(m["accuracy"].get<double>(), 1.0);
      EXPECT_LE(m["worst_group_accuracy"].get<double>(), m["accuracy"].get<double>());
      EXPECT_EQ(m["per_group_accuracy"].size(), 10u);
      EXPECT_TRUE(m["loss"].is_number());
    }
    if (method.rfind("dfr", 0) == 0) EXPECT_TRUE(run["dfr"]["l1"].is_number());
    if (method.rfind("dfr", 0) == 0 || method == "afr-source") {  // no ERM training of their own
      EXPECT_EQ(run["curves"]["step"], json::array());
    } else {
      EXPECT_EQ(run["curves"]["step"], json({30, 60})) << method;
    }
    if (method.rfind("afr", 0) == 0) {
      const auto& a = run["afr"];
      for (const char* k : {"gamma", "lambda", "epoch", "ess", "stage1_steps"}) EXPECT_TRUE(a[k].is_number()) << k;
      EXPECT_EQ(a["class_mass"].size(), 10u);
      EXPECT_LE(a["epoch"].get<int>(), 20);
    }
    EXPECT_GE(run["shortcut_reliance"]["test_clean"].get<double>(), 0.0);
    EXPECT_LE(run["shortcut_reliance"]["test_clean"].get<double>(), 1.0);
  }
  for (const char* method : kMethods) {
    const auto& s = j["summary"][method]["test_clean"]["accuracy"];
    for (const char* k : {"mean", "std", "min", "max", "median", "ci95"}) EXPECT_TRUE(s.contains(k)) << k;
    EXPECT_TRUE(j["summary"][method]["test_clean"]["shortcut_reliance"].contains("mean"));
    EXPECT_GT(j["timing"][method]["wall_s"].get<double>(), 0.0);
    EXPECT_FALSE(j["timing"][method]["stages"].empty());
    EXPECT_EQ(j["cross_seed"][method]["saliency"]["sets"]["test_clean"].size(), 400u);  // 10 classes x 40
    EXPECT_TRUE(j["cross_seed"][method]["disagreement"]["test_clean"].is_number());
    EXPECT_TRUE(j["cross_seed"][method]["beats_erm_worst_group"]["test_clean"].is_number());
    // The paired gain over erm is the mean of the per-seed differences of the runs written beside it.
    double sum = 0;
    int pairs = 0;
    for (const auto& run : j["runs"])
      if (run["method"] == method)
        for (const auto& e : j["runs"])
          if (e["method"] == "erm" && e["seed_index"] == run["seed_index"])
            sum += run["metrics"]["test_clean"]["worst_group_accuracy"].get<double>() -
                   e["metrics"]["test_clean"]["worst_group_accuracy"].get<double>(),
                ++pairs;
    const auto& gain = j["cross_seed"][method]["worst_group_gain_vs_erm"]["test_clean"];
    ASSERT_GT(pairs, 0) << method;
    EXPECT_NEAR(gain["mean"].get<double>(), sum / pairs, 1e-12) << method;
    EXPECT_LE(gain["ci95"][0].get<double>(), gain["mean"].get<double>()) << method;
    if (std::string(method) == "erm") EXPECT_EQ(gain["std"].get<double>(), 0.0);
  }
  for (const char* method : {"erm-base", "erm", "afr"}) {
    EXPECT_GT(j["timing"][method]["seed_steps_per_s"].get<double>(), 0.0);
    EXPECT_GT(j["timing"][method]["epoch_s"].get<double>(), 0.0);
    const double flops = j["timing"][method]["flops_per_seed_step"].get<double>();
    EXPECT_DOUBLE_EQ(flops, 50 * 185750.0);  // --batch 50, C = 25 (see ConvBase.StepCostCountsEveryLayer)
    EXPECT_GT(j["timing"][method]["bytes_per_seed_step"].get<double>(), 0.0);
    EXPECT_NEAR(j["timing"][method]["gflop_per_s"].get<double>(),
                flops * j["timing"][method]["seed_steps_per_s"].get<double>() * 1e-9, 1e-6);
  }
  EXPECT_EQ(j["cross_seed"]["afr"]["afr_p_histogram"]["counts"].size(), 20u);
  const std::string csv = slurp(dir / "r.csv");
  EXPECT_EQ(csv.rfind("p,seed_index,method,set,accuracy,worst_group_accuracy,loss,shortcut_reliance\n", 0), 0u);
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 1 + 12 * 4);
  fs::remove_all(dir);
}

TEST(Cli, SameCommandTwiceGivesIdenticalNumbers) {
  json a = run_json("--seeds 3 " + kSmall), b = run_json("--seeds 3 " + kSmall);
  for (const char* method : kMethods)
    for (int s = 0; s < 3; ++s) {
      EXPECT_EQ(metrics_of(a, method, s), metrics_of(b, method, s)) << method;
      EXPECT_NE(metrics_of(a, method, s), "missing");
    }
}

TEST(Cli, SeedResultsDoNotDependOnSeedCountOrThreads) {
  json two = run_json("--seeds 2 --threads 1 " + kSmall), eight = run_json("--seeds 8 --threads 2 " + kSmall);
  for (const char* method : kMethods)
    for (int s = 0; s < 2; ++s) {
      EXPECT_EQ(metrics_of(two, method, s), metrics_of(eight, method, s)) << method << " seed " << s;
      EXPECT_NE(metrics_of(two, method, s), "missing");
    }
  EXPECT_NE(metrics_of(eight, "erm", 0), metrics_of(eight, "erm", 1));  // seeds differ from each other
}

TEST(Cli, DatasetWritesWhatTheSeedTrainsOn) {
  const fs::path dir = scratch() / "ds";
  Result r = run("dataset --p 0.3 --seed 7 --seed-index 3 --out " + dir.string());
  ASSERT_EQ(r.status, 0) << r.err;
  sb::StudyConfig cfg;
  cfg.seed = 7;
  cfg.spurious.p = 0.3f;
  sb::Dataset data = sb::load_embedded_mnist1d();
  sb::SeedData sd = sb::make_seed_data(cfg, data, 3);
  auto x = sb::read_npy_float((dir / "x_train.npy").string());
  EXPECT_EQ(x.shape, (std::vector<size_t>{4000, 40}));
  EXPECT_EQ(x.data, sd.train);
  EXPECT_EQ(sb::read_npy_float((dir / "x_test_conflicting.npy").string()).data, sd.test_conflicting);
  EXPECT_EQ(sb::read_npy_float((dir / "x_test_aligned.npy").string()).data, sd.test_aligned);
  EXPECT_EQ(sb::read_npy_int32((dir / "y_train.npy").string()).data, data.y_train);
  const json meta = json::parse(slurp(dir / "dataset.json"));
  EXPECT_EQ(meta.at("p").get<double>(), 0.3);  // as typed, not the float's 0.30000001192092896
  Result bad = run("dataset --p 2 --out " + (dir.parent_path() / "bad").string());
  EXPECT_NE(bad.status, 0);
  EXPECT_FALSE(fs::exists(dir.parent_path() / "bad"));
  fs::remove_all(dir.parent_path());
}

// run.json (and so a resume's check) holds p as typed, as the results do.
TEST(Cli, RunFolderKeepsSettingsAsTyped) {
  const fs::path dir = scratch();
  Result r = run("--seeds 1 --steps 20 --methods erm --p 0.9,0.3 -q --run-dir " + (dir / "run").string());
  ASSERT_EQ(r.status, 0) << r.err;
  const json saved = json::parse(slurp(dir / "run" / "run.json"));
  EXPECT_EQ(saved.at("config").at("spurious").at("p"), json({0.9, 0.3}));
  EXPECT_EQ(saved.at("config").at("lr").get<double>(), 0.01);
  fs::remove_all(dir);
}

TEST(Cli, PSweepWritesOneEntryPerP) {
  const fs::path dir = scratch();
  Result r = run("--seeds 2 --methods erm,afr --afr-stage1-steps 20,40 --p 0,0.5 " + kSmall + " --out " +
                 (dir / "r.json").string() + " --csv " + (dir / "r.csv").string());
  ASSERT_EQ(r.status, 0) << r.err;
  json j = json::parse(slurp(dir / "r.json"));
  EXPECT_EQ(j["config"]["spurious"]["p_sweep"], json({0.0, 0.5}));
  ASSERT_EQ(j["sweep"].size(), 2u);
  EXPECT_FALSE(j.contains("runs"));
  for (const auto& e : j["sweep"]) {
    EXPECT_EQ(e["runs"].size(), 2u * 3);  // erm, afr@20, afr@40
    EXPECT_TRUE(e["summary"].contains("afr@20"));
    EXPECT_TRUE(e["summary"].contains("afr@40"));
  }
  // p = 0 plants nothing: erm trains on D_base itself.
  const std::string csv = slurp(dir / "r.csv");
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 1 + 2 * 6 * 4);
  EXPECT_NE(csv.find("\n0.5,1,afr@40,test_clean,"), std::string::npos);
  fs::remove_all(dir);
}
