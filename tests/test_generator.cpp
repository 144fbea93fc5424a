// MNIST-1D generator: numpy's RNG primitives, the Python generator's debug traces (tests/data/), the
// canonical arrays (data/mnist1d/), the `generate` subcommand, and a short study on a generated set.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <sstream>

#include "cli/generate_cli.h"
#include "core/backend.h"
#include "data/data.h"
#include "data/generator.h"
#include "data/legacy_random.h"
#include "data/npy.h"
#include "study/backends.h"
#include "study/study.h"
#include "test_paths.h"

namespace fs = std::filesystem;
using namespace sb;

namespace {

const std::string kCanonical = sb_source_dir() + "/data/mnist1d/";
const std::string kTraces = sb_source_dir() + "/tests/data/";

template <class T>
std::vector<T> read_raw(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  EXPECT_TRUE(f) << path;
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<T> v(bytes.size() / sizeof(T));
  std::memcpy(v.data(), bytes.data(), v.size() * sizeof(T));
  return v;
}

double max_abs_diff(const double* a, const double* b, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

void expect_near_all(const std::vector<double>& got, const std::vector<double>& want, double tol,
                     const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  EXPECT_LE(max_abs_diff(got.data(), want.data(), got.size()), tol) << what;
}

fs::path scratch_dir() {
  fs::path p = fs::temp_directory_path() / ("sb_gen_" + std::to_string(::getpid()) + "_" +
                                            ::testing::UnitTest::GetInstance()->current_test_info()->name());
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

// Parses argv into a fresh app with only the generate subcommand, then runs it.
int run_generate_args(std::vector<std::string> args) {
  CLI::App app;
  auto cmd = add_generate_command(app);
  args.insert(args.begin(), {"bench_spurious", "generate"});
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(&a[0]);
  app.parse(int(argv.size()), argv.data());
  EXPECT_TRUE(generate_parsed(*cmd));
  return run_generate(*cmd);
}

// The canonical set, generated once for all tests that need it.
const GeneratedSet& canonical_set() {
  static const GeneratedSet set = generate_mnist1d(GeneratorConfig{});
  return set;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
// numpy legacy RandomState primitives: known first outputs (data/mnist1d/README.md, numpy docs)

TEST(LegacyRandom, FirstOutputsSeed42) {
  EXPECT_EQ(LegacyRandomState(42).next_uint32(), 1608637542u);
  {
    LegacyRandomState r(42);
    EXPECT_EQ(r.random_sample(), 0.3745401188473625);
    EXPECT_EQ(r.random_sample(), 0.9507143064099162);
    EXPECT_EQ(r.random_sample(), 0.7319939418114051);
  }
  {
    LegacyRandomState r(42);
    EXPECT_EQ(r.gauss(), 0.4967141530112327);
    EXPECT_EQ(r.gauss(), -0.13826430117118466);
    EXPECT_EQ(r.gauss(), 0.6476885381006925);
  }
  {
    LegacyRandomState r(42);
    for (int64_t want : {38, 28, 14, 42, 7}) EXPECT_EQ(r.choice(48), want);
  }
}

TEST(LegacyRandom, Mt19937IsTheStandardStream) {
  Mt19937 a(5489u);
  uint32_t v = 0;
  for (int i = 0; i < 10000; ++i) v = a();
  EXPECT_EQ(v, 4123659995u);  // the C++ standard's check value for mt19937
  for (uint32_t seed : {0u, 42u, 0xffffffffu}) {
    Mt19937 m(seed);
    std::mt19937 ref(seed);
    for (int i = 0; i < 2000; ++i) ASSERT_EQ(m(), uint32_t(ref())) << "seed " << seed << " draw " << i;
  }
}

TEST(LegacyRandom, FirstOutputsSeed0) {
  LegacyRandomState r(0);
  EXPECT_EQ(r.random_sample(), 0.5488135039273248);
  EXPECT_EQ(r.random_sample(), 0.7151893663724195);
  LegacyRandomState g(0);
  EXPECT_EQ(g.gauss(), 1.764052345967664);
  EXPECT_EQ(g.gauss(), 0.4001572083672233);
  EXPECT_EQ(g.gauss(), 0.9787379841057392);
  LegacyRandomState p(0);
  EXPECT_EQ(p.permutation<int>(10), (std::vector<int>{2, 8, 4, 9, 1, 6, 7, 3, 0, 5}));
}

TEST(LegacyRandom, CacheSurvivesUniformDrawsAndChoiceOfOneDrawsNothing) {
  LegacyRandomState a(7), b(7);
  const double g0 = a.gauss();
  a.random_sample();
  const double g1 = a.gauss();  // the cached second value of the first pair
  EXPECT_EQ(b.gauss(), g0);
  EXPECT_EQ(b.gauss(), g1);
  LegacyRandomState c(7), d(7);
  EXPECT_EQ(c.choice(1), 0);
  EXPECT_EQ(c.next_uint32(), d.next_uint32());
}

TEST(LegacyRandom, BatchPermutationOfTheCanonicalSet) {
  // The generator's permutation(5000) is drawn after 5000 samples; the trace holds it.
  const std::vector<int32_t> want = read_raw<int32_t>(kTraces + "batch_perm.i32");
  ASSERT_EQ(want.size(), 5000u);
  GeneratorTrace trace;
  generate_mnist1d(GeneratorConfig{}, &trace);
  ASSERT_EQ(trace.batch_perm.size(), 5000u);
  for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(trace.batch_perm[i], want[i]) << "row " << i;

  // Per-sample draws in generation order (gen_params.csv): pad, scale, shift exactly; shear to 1 ulp.
  std::ifstream csv(kTraces + "gen_params.csv");
  std::string line;
  std::getline(csv, line);
  EXPECT_EQ(line, "gen_index,label,pad_p,scale_factor,translate_k,shear_coeff");
  int rows = 0;
  while (std::getline(csv, line)) {
    std::replace(line.begin(), line.end(), ',', ' ');
    std::istringstream ls(line);
    int g, label, pad, k;
    double scale, shear;
    ASSERT_TRUE(ls >> g >> label >> pad >> scale >> k >> shear) << line;
    ASSERT_EQ(g, rows);
    const SampleParams& p = trace.params[g];
    ASSERT_EQ(label, g / 500);
    ASSERT_EQ(p.pad, pad) << "sample " << g;
    ASSERT_EQ(p.shift, k) << "sample " << g;
    ASSERT_EQ(p.scale, scale) << "sample " << g;
    ASSERT_EQ(p.shear, shear) << "sample " << g;
    ++rows;
  }
  EXPECT_EQ(rows, 5000);
}

// ---------------------------------------------------------------------------------------------------
// Templates and every intermediate array of generated sample 0 (trace_gen0.json)

TEST(Generator, TemplatesMatchCanonical) {
  const Mnist1dTemplates tp = mnist1d_templates();
  expect_near_all(tp.x, read_raw<double>(kCanonical + "templates_x.f64"), 0.0, "templates_x");
  expect_near_all(tp.t, read_raw<double>(kCanonical + "templates_t.f64"), 0.0, "templates_t");
  for (int c = 0; c < 10; ++c) {
    EXPECT_EQ(tp.x[c * 12], 0.0);
    EXPECT_EQ(tp.x[c * 12 + 11], 0.0);
  }
}

TEST(Generator, TraceOfSampleZero) {
  std::ifstream f(kTraces + "trace_gen0.json");
  ASSERT_TRUE(f);
  const nlohmann::json j = nlohmann::json::parse(f);
  GeneratorConfig cfg;
  LegacyRandomState rng(42);
  SampleGenerator gen(cfg);
  std::vector<double> out(40);
  SampleParams p;
  SampleTrace tr;
  gen.generate(0, rng, out.data(), &p, &tr);
  EXPECT_EQ(p.pad, j["pad_p"].get<int>());
  EXPECT_EQ(p.scale, j["scale_factor"].get<double>());
  EXPECT_EQ(p.shift, j["translate_k"].get<int>());
  EXPECT_EQ(p.shear, j["shear_coeff"].get<double>());
  const double tol = 1e-15;
  expect_near_all(tr.padded, j["padded"].get<std::vector<double>>(), 0.0, "padded");
  expect_near_all(tr.dilated, j["dilated"].get<std::vector<double>>(), tol, "dilated");
  expect_near_all(tr.scaled, j["scaled"].get<std::vector<double>>(), tol, "scaled");
  expect_near_all(tr.translated, j["translated"].get<std::vector<double>>(), tol, "translated");
  const std::vector<int> mask = j["mask_nonzero_after_translate"].get<std::vector<int>>();
  ASSERT_EQ(tr.mask.size(), mask.size());
  for (size_t i = 0; i < mask.size(); ++i) EXPECT_EQ(int(tr.mask[i]), mask[i]) << i;
  expect_near_all(tr.corr_noise_filtered, j["corr_noise_filtered"].get<std::vector<double>>(), tol, "filtered");
  expect_near_all(tr.after_corr, j["after_corr"].get<std::vector<double>>(), tol, "after_corr");
  expect_near_all(tr.after_iid, j["after_iid"].get<std::vector<double>>(), tol, "after_iid");
  expect_near_all(tr.sheared, j["sheared"].get<std::vector<double>>(), tol, "sheared");
  expect_near_all(tr.final_unnormalized, j["final_unnormalized"].get<std::vector<double>>(), tol, "final");
  EXPECT_EQ(tr.final_unnormalized, out);

  const GeneratedSet& set = canonical_set();
  EXPECT_NEAR(set.norm_mean, j["norm_mean"].get<double>(), 1e-17);
  EXPECT_NEAR(set.norm_std, j["norm_std"].get<double>(), 1e-16);
  // Sample 0 lands in row 3521 (a train row).
  const int row = j["gen0_shuffled_index"].get<int>();
  for (int i = 0; i < 40; ++i)
    EXPECT_NEAR(set.x[size_t(row) * 40 + i], (out[i] - set.norm_mean) / set.norm_std, 1e-13);
}

// ---------------------------------------------------------------------------------------------------
// The whole canonical set with default parameters

TEST(Generator, DefaultsReproduceCanonicalArrays) {
  const GeneratedSet& set = canonical_set();
  ASSERT_EQ(set.n_train, 4000);
  ASSERT_EQ(set.n_test, 1000);
  ASSERT_EQ(set.length, 40);
  const std::vector<double> xtr = read_raw<double>(kCanonical + "x_train.f64"),
                            xte = read_raw<double>(kCanonical + "x_test.f64"), t = read_raw<double>(kCanonical + "t.f64");
  const std::vector<int32_t> ytr = read_raw<int32_t>(kCanonical + "y_train.i32"),
                             yte = read_raw<int32_t>(kCanonical + "y_test.i32");
  ASSERT_EQ(xtr.size(), 4000u * 40);
  ASSERT_EQ(xte.size(), 1000u * 40);
  EXPECT_EQ(std::vector<int32_t>(set.y.begin(), set.y.begin() + 4000), ytr);
  EXPECT_EQ(std::vector<int32_t>(set.y.begin() + 4000, set.y.end()), yte);
  const double d_train = max_abs_diff(set.x.data(), xtr.data(), xtr.size());
  const double d_test = max_abs_diff(set.x.data() + xtr.size(), xte.data(), xte.size());
  const double d_t = max_abs_diff(set.t.data(), t.data(), t.size());
  EXPECT_LE(d_train, 1e-12);
  EXPECT_LE(d_test, 1e-12);
  EXPECT_LE(d_t, 1e-12);
  std::printf("max |diff| vs canonical: x_train %.3g, x_test %.3g, t %.3g\n", d_train, d_test, d_t);

  // As the study's float32 Dataset it equals the embedded copy (each value rounds to the same float).
  const Dataset d = to_dataset(set), e = load_embedded_mnist1d();
  EXPECT_EQ(d.y_train, e.y_train);
  EXPECT_EQ(d.y_test, e.y_test);
  ASSERT_EQ(d.x_train.size(), e.x_train.size());
  size_t differ = 0;
  for (size_t i = 0; i < d.x_train.size(); ++i) differ += d.x_train[i] != e.x_train[i];
  EXPECT_EQ(differ, 0u);
}

// ---------------------------------------------------------------------------------------------------
// Other parameters

TEST(Generator, SameSeedSameSetOtherSeedOtherSet) {
  GeneratorConfig cfg;
  cfg.num_samples = 200;
  const GeneratedSet a = generate_mnist1d(cfg), b = generate_mnist1d(cfg);
  EXPECT_EQ(a.x, b.x);
  cfg.seed = 43;
  const GeneratedSet c = generate_mnist1d(cfg);
  EXPECT_NE(a.x, c.x);
  // Normalised over the whole set.
  const double mean = std::accumulate(a.x.begin(), a.x.end(), 0.0) / a.x.size();
  double var = 0;
  for (double v : a.x) var += (v - mean) * (v - mean);
  EXPECT_NEAR(mean, 0.0, 1e-12);
  EXPECT_NEAR(var / a.x.size(), 1.0, 1e-12);
  EXPECT_EQ(a.n_train, 160);
  EXPECT_EQ(class_counts(a.y, 10), std::vector<int>(10, 20));
}

TEST(Generator, ShuffleSeqPermutesColumnsOnly) {
  GeneratorConfig cfg;
  cfg.num_samples = 100;
  const GeneratedSet plain = generate_mnist1d(cfg);
  cfg.shuffle_seq = true;
  GeneratorTrace tr;
  const GeneratedSet shuf = generate_mnist1d(cfg, &tr);
  ASSERT_EQ(tr.seq_perm.size(), 40u);
  EXPECT_EQ(plain.y, shuf.y);
  EXPECT_EQ(plain.t, shuf.t);  // the plot axis is not shuffled
  bool moved = false;
  for (size_t j = 0; j < 40; ++j) {
    moved |= tr.seq_perm[j] != int64_t(j);
    for (size_t r = 0; r < 100; ++r)
      ASSERT_NEAR(shuf.x[r * 40 + j], plain.x[r * 40 + tr.seq_perm[j]], 1e-12);
  }
  EXPECT_TRUE(moved);
}

TEST(Generator, OddAndShortWorkingLengths) {
  // Odd L carries the randn cache from the correlated into the iid noise; L < 17 reflects more than once
  // in the filter; max_translation > L shifts nothing for k >= L (numpy slicing).
  for (auto [tl, pmin, pmax, mt] : {std::array<int, 4>{13, 36, 60, 48}, {3, 0, 4, 30}, {1, 1, 1, 1}}) {
    GeneratorConfig cfg;
    cfg.num_samples = 50;
    cfg.template_len = tl;
    cfg.padding_min = pmin;
    cfg.padding_max = pmax;
    cfg.max_translation = mt;
    cfg.final_seq_length = 60;
    const GeneratedSet s = generate_mnist1d(cfg);
    EXPECT_EQ(s.x.size(), 50u * 60);
    for (double v : s.x) ASSERT_TRUE(std::isfinite(v));
  }
}

TEST(Generator, InvalidParametersAreRejected) {
  auto bad = [](const char* fragment, auto mutate) {
    GeneratorConfig cfg;
    mutate(cfg);
    try {
      validate(cfg);
      ADD_FAILURE() << "no error for " << fragment;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  bad("--seed", [](GeneratorConfig& c) { c.seed = -1; });
  bad("--seed", [](GeneratorConfig& c) { c.seed = int64_t(1) << 32; });
  bad("--num-samples", [](GeneratorConfig& c) { c.num_samples = -10; });
  bad("--num-samples", [](GeneratorConfig& c) { c.num_samples = 0; });
  bad("multiple of 10", [](GeneratorConfig& c) { c.num_samples = 1005; });
  bad("--train-split", [](GeneratorConfig& c) { c.train_split = 0; });
  bad("--train-split", [](GeneratorConfig& c) { c.train_split = 1; });
  bad("--train-split", [](GeneratorConfig& c) { c.train_split = std::nan(""); });
  bad("empty", [](GeneratorConfig& c) { c.num_samples = 10, c.train_split = 0.05; });
  bad("--template-len", [](GeneratorConfig& c) { c.template_len = 0; });
  bad("--padding-min", [](GeneratorConfig& c) { c.padding_min = -1; });
  bad("is larger than --padding-max", [](GeneratorConfig& c) { c.padding_min = 61; });
  bad("--scale-coeff", [](GeneratorConfig& c) { c.scale_coeff = -0.1; });
  bad("--max-translation", [](GeneratorConfig& c) { c.max_translation = 0; });
  bad("--corr-noise-scale", [](GeneratorConfig& c) { c.corr_noise_scale = INFINITY; });
  bad("--iid-noise-scale", [](GeneratorConfig& c) { c.iid_noise_scale = -1; });
  bad("--shear-scale", [](GeneratorConfig& c) { c.shear_scale = std::nan(""); });
  bad("--final-seq-length", [](GeneratorConfig& c) { c.final_seq_length = kMinSequenceLength - 1; });
  EXPECT_NO_THROW(validate(GeneratorConfig{}));
}

// ---------------------------------------------------------------------------------------------------
// The subcommand and the loader on its output

TEST(GenerateCommand, WritesNpyFilesThatLoad) {
  const fs::path dir = scratch_dir();
  const fs::path out = dir / "set60";
  ASSERT_EQ(run_generate_args({"--out", out.string(), "--num-samples", "300", "--final-seq-length", "60", "--seed",
                               "7", "--train-split", "0.7"}),
            0);
  for (const char* n : {"x_train.npy", "x_test.npy", "y_train.npy", "y_test.npy", "t.npy", "generator.json"})
    EXPECT_TRUE(fs::exists(out / n)) << n;
  const NpyArray x = read_npy((out / "x_train.npy").string());
  EXPECT_EQ(x.descr, "<f8");
  EXPECT_EQ(x.shape, (std::vector<size_t>{210, 60}));
  EXPECT_EQ(read_npy((out / "y_test.npy").string()).descr, "<i4");
  EXPECT_EQ(read_npy((out / "t.npy").string()).shape, (std::vector<size_t>{60}));

  std::ifstream jf(out / "generator.json");
  const nlohmann::json j = nlohmann::json::parse(jf);
  EXPECT_EQ(j["params"]["seed"], 7);
  EXPECT_EQ(j["params"]["final_seq_length"], 60);
  EXPECT_EQ(j["params"]["padding_max"], 60);
  EXPECT_EQ(j["n_train"], 210);

  GeneratorConfig cfg;
  cfg.num_samples = 300, cfg.final_seq_length = 60, cfg.seed = 7, cfg.train_split = 0.7;
  const GeneratedSet want = generate_mnist1d(cfg);
  const NpyData<double> xd = read_npy_double((out / "x_test.npy").string());
  EXPECT_EQ(xd.data, std::vector<double>(want.x.begin() + 210 * 60, want.x.end()));  // float64, bit for bit

  const Dataset d = load_dataset(out.string());
  EXPECT_EQ(d.length, 60);
  EXPECT_EQ(d.n_train, 210);
  EXPECT_EQ(d.n_test, 90);
  EXPECT_EQ(d.x_train[5], float(want.x[5]));
  EXPECT_EQ(d.y_test, std::vector<int32_t>(want.y.begin() + 210, want.y.end()));
  for (const auto& e : fs::directory_iterator(dir)) EXPECT_EQ(e.path().filename(), "set60");
  fs::remove_all(dir);
}

TEST(GenerateCommand, DefaultsWriteTheCanonicalSet) {
  const fs::path dir = scratch_dir();
  ASSERT_EQ(run_generate_args({"--out", (dir / "canon/").string()}), 0);  // trailing slash: same folder
  const NpyData<double> x = read_npy_double((dir / "canon" / "x_train.npy").string());
  const std::vector<double> want = read_raw<double>(kCanonical + "x_train.f64");
  ASSERT_EQ(x.data.size(), want.size());
  EXPECT_LE(max_abs_diff(x.data.data(), want.data(), want.size()), 1e-12);
  EXPECT_EQ(read_npy_int32((dir / "canon" / "y_test.npy").string()).data,
            read_raw<int32_t>(kCanonical + "y_test.i32"));
  EXPECT_FALSE(fs::exists(dir / ("canon.tmp." + std::to_string(::getpid()))));
  fs::remove_all(dir);
}

TEST(GenerateCommand, InvalidParametersWriteNothing) {
  const fs::path dir = scratch_dir();
  const fs::path out = dir / "never";
  auto expect_error = [&](std::vector<std::string> args, const std::string& fragment) {
    args.insert(args.begin(), {"--out", out.string()});
    try {
      run_generate_args(args);
      ADD_FAILURE() << "no error for " << fragment;
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
    EXPECT_TRUE(fs::is_empty(dir)) << fragment;
  };
  expect_error({"--num-samples", "-5"}, "--num-samples");
  expect_error({"--num-samples", "995"}, "multiple of 10");
  expect_error({"--padding-min", "70"}, "--padding-min 70 is larger than --padding-max 60");
  expect_error({"--train-split", "1.5"}, "--train-split");
  expect_error({"--final-seq-length", "5"}, "--final-seq-length");
  expect_error({"--seed", "4294967296"}, "--seed");
  // A file where the folder should be.
  std::ofstream(dir / "file").put('x');
  try {
    run_generate_args({"--out", (dir / "file").string(), "--num-samples", "100"});
    ADD_FAILURE() << "no error for a file as --out";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("not a folder"), std::string::npos) << e.what();
  }
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 1);
  fs::remove_all(dir);
}

// ---------------------------------------------------------------------------------------------------
// The whole pipeline on a generated length-60 set: the spurious blocks fit, ConvBase trains.

TEST(Generator, StudyOnLength60TrainsWellAboveChance) {
  const fs::path dir = scratch_dir();
  ASSERT_EQ(run_generate_args({"--out", (dir / "len60").string(), "--final-seq-length", "60", "--seed", "3"}), 0);
  const Dataset data = load_dataset((dir / "len60").string());
  fs::remove_all(dir);
  ASSERT_EQ(data.length, 60);
  StudyConfig cfg;
  cfg.seeds = 2;
  cfg.steps = 300;
  cfg.eval_every = 150;
  cfg.methods = {"erm-base", "erm"};
  auto backend = make_backend("cpu", 2);
  const StudyResult r = run_study(cfg, data, *backend);
  ASSERT_EQ(r.runs.size(), 4u);
  for (const RunRecord& run : r.runs) {
    EXPECT_LT(run.metrics.at("train").loss, std::log(10.0) - 0.8) << run.method;  // chance is ln 10
    if (run.method == "erm-base") EXPECT_GT(run.metrics.at("test_clean").accuracy, 0.5);  // chance is 0.1
    if (run.method == "erm")
      EXPECT_GT(run.metrics.at("test_aligned").accuracy, run.metrics.at("test_conflicting").accuracy + 0.2);
  }
}

TEST(GenerateCommand, NpyFloat64RoundTrip) {
  const fs::path dir = scratch_dir();
  const std::vector<double> v = {0.1, -1e-300, 3.0, 1.0 / 3.0, -0.0, 12345.678};
  write_npy((dir / "a.npy").string(), v.data(), {2, 3});
  const NpyData<double> d = read_npy_double((dir / "a.npy").string());
  EXPECT_EQ(d.shape, (std::vector<size_t>{2, 3}));
  EXPECT_EQ(d.data, v);
  EXPECT_EQ(read_npy((dir / "a.npy").string()).descr, "<f8");
  const std::vector<float> f = {0.5f, -2.25f};
  write_npy((dir / "b.npy").string(), f.data(), {2});
  EXPECT_EQ(read_npy_double((dir / "b.npy").string()).data, (std::vector<double>{0.5, -2.25}));
  fs::remove_all(dir);
}
