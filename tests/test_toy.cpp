// The regression toy (host/study/toy.h): exact fit against the closed form, gradients against finite differences
// of an independent double-precision reference, determinism and seed independence, and the `toy` command.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/toy_cli.h"
#include "core/philox.h"
#include "cpu/simd.h"
#include "study/toy.h"
#include "test_paths.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// ---- Reference: the network in double precision, written plainly (PyTorch layout, ReLU between layers).
double ref_forward(const sb::ToyNet& net, const std::vector<double>& p, const double* x) {
  std::vector<double> a(x, x + 3);
  for (int l = 0; l < net.layers(); ++l) {
    const int K = net.dims[l], M = net.dims[l + 1];
    std::vector<double> out(M);
    for (int j = 0; j < M; ++j) {
      double s = p[net.bias_offset(l) + j];
      for (int k = 0; k < K; ++k) s += p[net.weight_offset(l) + size_t(j) * K + k] * a[k];
      out[j] = (l + 1 < net.layers()) ? std::max(s, 0.0) : s;
    }
    a = out;
  }
  return a[0];
}

double ref_mse(const sb::ToyNet& net, const std::vector<double>& p, const std::vector<float>& x,
               const std::vector<float>& y) {
  const int B = int(y.size());
  double loss = 0;
  for (int b = 0; b < B; ++b) {
    const double xb[3] = {x[3 * b], x[3 * b + 1], x[3 * b + 2]};
    const double r = ref_forward(net, p, xb) - y[b];
    loss += r * r;
  }
  return loss / B;
}

std::vector<sb::SimdLevel> supported_levels() {
  std::vector<sb::SimdLevel> levels;
  for (sb::SimdLevel l : {sb::SimdLevel::sse2, sb::SimdLevel::avx2, sb::SimdLevel::avx512})
    if (sb::simd_level_supported(l)) levels.push_back(l);
  return levels;
}

// Restores the process-wide SIMD level at the end of a test.
struct SimdLevelGuard {
  sb::SimdLevel saved = sb::simd_level();
  ~SimdLevelGuard() { sb::set_simd_level(saved); }
};

// Random parameters a little larger than the initialisation, so every unit has a sizeable gradient.
std::vector<float> random_params(const sb::ToyNet& net, uint32_t seed) {
  std::vector<float> p(net.num_params());
  sb::RngStream rng(99, seed, sb::Purpose::init_weights);
  for (float& v : p) v = rng.uniform(-0.8f, 0.8f);
  return p;
}

void random_batch(int B, uint32_t seed, std::vector<float>& x, std::vector<float>& y) {
  sb::RngStream rng(98, seed, sb::Purpose::batch_order);
  x.resize(size_t(B) * 3), y.resize(B);
  for (float& v : x) v = 2.0f * rng.normal();
  for (float& v : y) v = 3.0f + rng.normal();
}

// Analytic gradient of the MSE (float kernels) against central differences of the double reference.
void check_gradient(const std::vector<int>& dims, int B) {
  const sb::ToyNet net{dims};
  SimdLevelGuard guard;
  for (sb::SimdLevel level : supported_levels()) {
    sb::set_simd_level(level);
    const std::vector<float> p = random_params(net, uint32_t(dims.size()) * 7 + B);
    std::vector<float> x, y;
    random_batch(B, uint32_t(B), x, y);
    sb::ToyWorkspace ws(net, 64);
    std::vector<float> grad(net.num_params(), -1.0f);
    const double loss = sb::toy_mse_grad(net, p.data(), x.data(), y.data(), B, ws, grad.data());
    std::vector<double> pd(p.begin(), p.end());
    EXPECT_NEAR(loss, ref_mse(net, pd, x, y), 1e-5 * std::max(1.0, loss)) << sb::simd_level_name(level);
    const double h = 1e-5;
    int checked = 0;
    for (size_t i = 0; i < pd.size(); i += (pd.size() > 600 ? 7 : 1), ++checked) {
      const double saved = pd[i];
      pd[i] = saved + h;
      const double up = ref_mse(net, pd, x, y);
      pd[i] = saved - h;
      const double down = ref_mse(net, pd, x, y);
      pd[i] = saved;
      const double fd = (up - down) / (2 * h);
      ASSERT_NEAR(grad[i], fd, 2e-4 * std::max(1.0, std::fabs(fd)))
          << "parameter " << i << " of " << pd.size() << ", level " << sb::simd_level_name(level);
    }
    EXPECT_GT(checked, 3);
  }
}

}  // namespace

// ---- Exact fit

TEST(Toy, ClosedFormOfThePlainRegime) {
  const sb::ToyClosedForm cf = sb::toy_closed_form(sb::ToyConfig{});
  EXPECT_DOUBLE_EQ(cf.sigma_train, 3.0);
  EXPECT_DOUBLE_EQ(cf.sigma_ood, 6.0);
  EXPECT_DOUBLE_EQ(cf.weights.w[2], 0.1);
  EXPECT_DOUBLE_EQ(cf.weights.w[0], 0.9);
  EXPECT_DOUBLE_EQ(cf.weights.w[1], 1.8);
  EXPECT_DOUBLE_EQ(cf.weights.bias, 2.7);
  EXPECT_NEAR(cf.rmse_iid, std::sqrt(0.9), 1e-12);
  EXPECT_NEAR(cf.rmse_ood, std::sqrt(0.81 + 0.01 * 36), 1e-12);
}

// The exact least-squares weight on x3 is 1 / (1 + sigma^2). Its sampling sd is sigma / ((1 + sigma^2) sqrt(n))
// (0.00067 at sigma 3, n = 200 000); the tolerance is 5 of those, so a wrong reading of the source
// (N(0, 3) as a variance: 0.25; sigma = k * factor: 0.986) or a wrong fit fails by far.
TEST(Toy, ExactFitMatchesTheClosedForm) {
  for (bool uniform : {false, true})
    for (double factor : {0.2, 0.6, 0.1}) {
      sb::ToyConfig cfg;
      cfg.samples = 200000;
      cfg.train_factor = factor;
      cfg.uniform = uniform, cfg.uniform_lo = -2, cfg.uniform_hi = 3;  // the closed form holds for any x1, x2
      const sb::ToyData data = sb::make_toy_data(cfg, 3);
      const sb::ToyWeights fit = sb::toy_exact_fit(cfg, data, sb::ToyRegime::plain);
      const double sigma = cfg.k / factor, n = cfg.samples;
      const double w3 = 1.0 / (1.0 + sigma * sigma), se = sigma / ((1 + sigma * sigma) * std::sqrt(n));
      SCOPED_TRACE("sigma " + std::to_string(sigma) + (uniform ? " uniform" : " normal"));
      EXPECT_NEAR(fit.w[2], w3, 5 * se);
      EXPECT_NEAR(fit.w[0], 1 - w3, 0.015);
      EXPECT_NEAR(fit.w[1], 2 * (1 - w3), 0.015);
      EXPECT_NEAR(fit.bias, 3 * (1 - w3), 0.03);
      if (!uniform && factor == 0.2) {
        const sb::ToyMetrics m = sb::evaluate_toy_linear(fit, data, sb::ToyRegime::plain);
        const sb::ToyClosedForm cf = sb::toy_closed_form(cfg);
        EXPECT_NEAR(m.rmse_iid, cf.rmse_iid, 0.01);
        EXPECT_NEAR(m.rmse_ood, cf.rmse_ood, 0.01);
      }
    }
}

// Augmentation's exact fit minimises the loss expected over the noise: x3's noise variance becomes
// sigma^2 + s^2, so w3 = 1 / (1 + sigma^2 + s^2) = 1/35 by default.
TEST(Toy, ExactFitOfAugmentation) {
  sb::ToyConfig cfg;
  cfg.samples = 200000;
  const sb::ToyData data = sb::make_toy_data(cfg, 0);
  const sb::ToyWeights fit = sb::toy_exact_fit(cfg, data, sb::ToyRegime::augmentation);
  EXPECT_NEAR(fit.w[2], 1.0 / 35.0, 0.002);
  EXPECT_NEAR(fit.bias, 3.0 * 34.0 / 35.0, 0.03);
}

TEST(Toy, DataFollowTheSpec) {
  sb::ToyConfig cfg;
  cfg.samples = 100000;
  const sb::ToyData d = sb::make_toy_data(cfg, 5);
  auto moments = [](const sb::ToySet& s, int col, double& mean, double& var, bool noise) {
    double sum = 0, ss = 0;
    for (int i = 0; i < s.n; ++i) {
      const double v = noise ? s.x[3 * i + 2] - s.y[i] : s.x[3 * i + col];
      sum += v, ss += v * v;
    }
    mean = sum / s.n, var = ss / s.n - mean * mean;
  };
  double m, v;
  moments(d.train, 0, m, v, false);
  EXPECT_NEAR(m, 0, 0.02);
  EXPECT_NEAR(v, 1, 0.02);
  moments(d.train, 2, m, v, true);  // x3 - y ~ N(0, 3^2)
  EXPECT_NEAR(m, 0, 0.05);
  EXPECT_NEAR(v, 9, 0.15);
  moments(d.ood, 2, m, v, true);  // N(0, 6^2)
  EXPECT_NEAR(v, 36, 0.6);
  // Domain randomization: the same samples, x3 noise rescaled by f ~ U[a, b) (default U[0.05, 0.2)):
  // E[(0.6/f)^2] = 0.36 E[1/f^2] = 0.36 / (a b), 36 by default: every domain at least as noisy as training (9).
  moments(d.train_dr, 2, m, v, true);
  EXPECT_NEAR(v, 0.36 / (cfg.dr_min * cfg.dr_max), 0.03 * 0.36 / (cfg.dr_min * cfg.dr_max));
  EXPECT_EQ(d.train_dr.y, d.train.y);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(d.train_dr.x[3 * i], d.train.x[3 * i]);
  // y = x1 + 2 x2 + 3 + e with e ~ N(0, 1).
  double sum = 0, ss = 0;
  for (int i = 0; i < d.train.n; ++i) {
    const double e = d.train.y[i] - d.train.x[3 * i] - 2.0 * d.train.x[3 * i + 1] - 3.0;
    sum += e, ss += e * e;
  }
  EXPECT_NEAR(sum / d.train.n, 0, 0.02);
  EXPECT_NEAR(ss / d.train.n, 1, 0.02);
}

TEST(Toy, InitIsPyTorchDefault) {
  const sb::ToyNet net = sb::toy_net("mlp", {64, 32});
  EXPECT_EQ(net.num_params(), size_t(3 * 64 + 64 + 64 * 32 + 32 + 32 + 1));
  std::vector<float> p(net.num_params());
  sb::toy_init_params(net, 0, 0, 1, p.data());
  for (int l = 0; l < net.layers(); ++l) {
    const float bound = 1.0f / std::sqrt(float(net.dims[l]));
    float most = 0;
    for (size_t i = net.weight_offset(l); i < net.weight_offset(l + 1); ++i) {
      EXPECT_LE(std::fabs(p[i]), bound);
      most = std::max(most, std::fabs(p[i]));
    }
    EXPECT_GT(most, 0.8f * bound) << "layer " << l;  // fills the range
  }
}

// ---- Kernels

TEST(Toy, LinearGradientMatchesFiniteDifferences) { check_gradient({3, 1}, 7); }
TEST(Toy, MlpGradientMatchesFiniteDifferences) {
  check_gradient({3, 5, 1}, 7);
  check_gradient({3, 20, 17, 1}, 16);  // one full lane chunk of inputs plus a remainder
  check_gradient({3, 64, 64, 1}, 37);  // the default MLP, batch over two chunks with padding
}

// A sample's prediction does not depend on the batch it is in, and matches the reference.
TEST(Toy, PredictionsMatchTheReferenceWhateverTheBatch) {
  const sb::ToyNet net = sb::toy_net("mlp", {64, 64});
  const std::vector<float> p = random_params(net, 4);
  std::vector<float> x, y;
  random_batch(100, 4, x, y);
  std::vector<double> pd(p.begin(), p.end());
  sb::ToyWorkspace big(net, 256), small(net, 1);
  std::vector<float> a(100), b(100);
  sb::toy_predict(net, p.data(), x.data(), 100, big, a.data());
  sb::toy_predict(net, p.data(), x.data(), 100, small, b.data());
  EXPECT_EQ(a, b);
  for (int i = 0; i < 100; ++i) {
    const double xi[3] = {x[3 * i], x[3 * i + 1], x[3 * i + 2]};
    const double r = ref_forward(net, pd, xi);
    EXPECT_NEAR(a[i], r, 1e-4 * std::max(1.0, std::fabs(r)));
  }
}

// The MLP's "weights": mean input gradient over the set, bias = mean(yhat - w.x); a linear model's are its parameters.
TEST(Toy, EffectiveWeights) {
  sb::ToyConfig cfg;
  cfg.samples = 300;
  const sb::ToyData d = sb::make_toy_data(cfg, 0);
  const sb::ToyNet lin = sb::toy_net("linear", {});
  const std::vector<float> pl = {0.5f, -1.25f, 2.0f, 0.75f};
  sb::ToyWorkspace wsl(lin, 64);
  const sb::ToyWeights wl = sb::toy_effective_weights(lin, pl.data(), d.iid, wsl);
  EXPECT_EQ(wl.w[0], 0.5);
  EXPECT_EQ(wl.w[1], -1.25);
  EXPECT_EQ(wl.w[2], 2.0);
  EXPECT_EQ(wl.bias, 0.75);

  const sb::ToyNet net = sb::toy_net("mlp", {16, 8});
  const std::vector<float> p = random_params(net, 9);
  std::vector<double> pd(p.begin(), p.end());
  sb::ToyWorkspace ws(net, 64);  // several batches of the 300 samples
  const sb::ToyWeights w = sb::toy_effective_weights(net, p.data(), d.iid, ws);
  double g[3] = {0, 0, 0}, ysum = 0, xsum[3] = {0, 0, 0};
  for (int i = 0; i < d.iid.n; ++i) {
    double xi[3] = {d.iid.x[3 * i], d.iid.x[3 * i + 1], d.iid.x[3 * i + 2]};
    ysum += ref_forward(net, pd, xi);
    for (int j = 0; j < 3; ++j) {
      xsum[j] += xi[j];
      const double s = xi[j];
      xi[j] = s + 1e-6;
      const double up = ref_forward(net, pd, xi);
      xi[j] = s - 1e-6;
      g[j] += (up - ref_forward(net, pd, xi)) / 2e-6;
      xi[j] = s;
    }
  }
  double bias = ysum / d.iid.n;
  for (int j = 0; j < 3; ++j) {
    EXPECT_NEAR(w.w[j], g[j] / d.iid.n, 1e-3) << j;
    bias -= g[j] / d.iid.n * xsum[j] / d.iid.n;
  }
  EXPECT_NEAR(w.bias, bias, 1e-3);
}

// ---- Training

sb::ToyConfig small_config() {
  sb::ToyConfig cfg;
  cfg.samples = 300;
  cfg.epochs = 3;
  cfg.hidden = {8, 8};
  return cfg;
}

std::string run_of(const sb::ToyResult& r, const std::string& model, const std::string& regime, int seed) {
  for (const auto& run : r.runs)
    if (run.model == model && run.regime == regime && run.seed_index == seed) {
      std::ostringstream s;
      s.precision(17);
      for (const auto& m : sb::toy_metric_names()) s << sb::toy_metric(run.metrics, m) << ' ';
      for (double l : run.train_loss) s << l << ' ';
      return s.str();
    }
  return "missing";
}

// Seed i gives the same numbers (bit for bit) whether 2 or 8 seeds run, whatever the thread count.
TEST(Toy, SeedResultsDoNotDependOnSeedCountOrThreads) {
  sb::ToyConfig cfg = small_config();
  cfg.seeds = 2;
  const sb::ToyResult two = sb::run_toy_study(cfg, 1);
  cfg.seeds = 8;
  const sb::ToyResult eight = sb::run_toy_study(cfg, 2);
  const sb::ToyResult again = sb::run_toy_study(cfg, 3);
  ASSERT_EQ(eight.runs.size(), size_t(8 * (2 * 3 + 3)));
  for (const char* model : {"linear", "mlp", "exact"})
    for (const char* regime : {"plain", "domain-randomization", "augmentation"}) {
      for (int s = 0; s < 2; ++s) {
        EXPECT_NE(run_of(two, model, regime, s), "missing");
        EXPECT_EQ(run_of(two, model, regime, s), run_of(eight, model, regime, s)) << model << " " << regime << " " << s;
      }
      for (int s = 0; s < 8; ++s) EXPECT_EQ(run_of(eight, model, regime, s), run_of(again, model, regime, s));
      EXPECT_NE(run_of(eight, model, regime, 0), run_of(eight, model, regime, 1)) << model << " " << regime;
    }
}

// --shared-data: one data set for all seeds (the exact fit is the same), but the training still differs.
TEST(Toy, SharedDataDiffersOnlyInTraining) {
  sb::ToyConfig cfg = small_config();
  cfg.seeds = 3;
  cfg.shared_data = true;
  cfg.models = {"mlp"};
  cfg.regimes = {"plain", "augmentation"};
  const sb::ToyResult r = sb::run_toy_study(cfg, 2);
  for (const char* regime : {"plain", "augmentation"}) {
    EXPECT_EQ(run_of(r, "exact", regime, 0), run_of(r, "exact", regime, 2));
    EXPECT_NE(run_of(r, "mlp", regime, 0), run_of(r, "mlp", regime, 2));
  }
  // Seed index 0 sees the same data either way.
  sb::ToyConfig own = cfg;
  own.shared_data = false;
  own.seeds = 1;
  EXPECT_EQ(run_of(sb::run_toy_study(own, 1), "mlp", "plain", 0), run_of(r, "mlp", "plain", 0));
}

// The default protocol: the MLP lands near the exact fit, and augmentation takes most of its weight off x3.
TEST(Toy, TrainingReachesTheExactFit) {
  sb::ToyConfig cfg;
  cfg.seeds = 3;
  cfg.models = {"mlp"};
  cfg.regimes = {"plain", "augmentation"};
  const sb::ToyResult r = sb::run_toy_study(cfg, 0);
  auto mean = [&](const char* model, const char* regime, const char* metric) {
    const std::vector<double> v = sb::toy_values(r, model, regime, metric);
    double s = 0;
    for (double x : v) s += x;
    return s / v.size();
  };
  EXPECT_NEAR(mean("mlp", "plain", "w3"), mean("exact", "plain", "w3"), 0.03);
  EXPECT_NEAR(mean("mlp", "plain", "rmse_iid"), mean("exact", "plain", "rmse_iid"), 0.03);
  EXPECT_LT(mean("mlp", "augmentation", "w3"), 0.5 * mean("mlp", "plain", "w3"));
  EXPECT_LT(mean("mlp", "augmentation", "rmse_ood"), mean("mlp", "plain", "rmse_ood"));
  for (const auto& run : r.runs)
    if (run.model == "mlp") EXPECT_LT(run.train_loss.back(), run.train_loss.front());
}

// ---- The `toy` command, in process

namespace {

struct ToyCall {
  int status = -1;
  std::string out, error;
};

ToyCall call_toy(const std::string& args) {
  CLI::App app{"test"};
  auto cmd = sb::add_toy_command(app);
  ToyCall r;
  testing::internal::CaptureStdout();
  try {
    app.parse("toy " + args, false);
    EXPECT_TRUE(sb::toy_parsed(*cmd));
    r.status = sb::run_toy(*cmd);
  } catch (const CLI::ParseError& e) {
    r.status = 2, r.error = e.what();
  } catch (const std::exception& e) {
    r.status = 1, r.error = e.what();
  }
  r.out = testing::internal::GetCapturedStdout();
  return r;
}

fs::path scratch() { return sb_scratch_dir("sb_toy"); }
std::string slurp(const fs::path& p) { return sb_slurp(p); }

}  // namespace

TEST(ToyCli, BadInputIsAClearError) {
  const std::pair<const char*, const char*> cases[] = {
      {"--seeds 0", "--seeds"},
      {"--seeds -3", "--seeds"},
      {"--epochs 0", "--epochs"},
      {"--batch -1", "--batch"},
      {"--batch 6000", "larger than the training set"},
      {"--samples 2", "--samples"},
      {"--lr 0", "--lr"},
      {"--lr nan", "--lr"},
      {"--lr-step 0", "--lr-step"},
      {"--k -1", "--k"},
      {"--train-factor 0", "--train-factor"},
      {"--ood-factor -0.1", "--ood-factor"},
      {"--dr-min 0.5 --dr-max 0.2", "--dr-min"},
      {"--dr-min 0", "--dr-min"},
      {"--aug-sd -1", "--aug-sd"},
      {"--models linear,bogus", "unknown model 'bogus'"},
      {"--models mlp,mlp", "listed twice"},
      {"--models ,", "--models: empty entry"},
      {"--regimes plain,,augmentation", "--regimes: empty entry"},
      {"--regimes plain,nope", "unknown regime 'nope'"},
      {"--hidden 64,x", "--hidden"},
      {"--hidden 64,0", "--hidden"},
      {"--hidden ,", "--hidden"},
      {"--uniform 1", "--uniform"},
      {"--uniform 2,1", "--uniform"},
      {"--uniform a,b", "--uniform"},
      {"--threads -1", "--threads"},
      {"--seeds abc", "--seeds"},
      {"--no-such-flag", "no-such-flag"},
  };
  for (const auto& [args, fragment] : cases) {
    const ToyCall r = call_toy(args);
    EXPECT_NE(r.status, 0) << args;
    EXPECT_NE(r.error.find(fragment), std::string::npos) << args << " -> " << r.error;
    EXPECT_EQ(r.error.find('\n'), std::string::npos) << args << ": not one line";
    EXPECT_EQ(r.out, "") << args;
  }
}

TEST(ToyCli, UnwritableOutputFailsBeforeTraining) {
  const ToyCall r = call_toy("-q --out /nonexistent/dir/r.json");  // 100 seeds if it did not stop at once
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.error.find("cannot write /nonexistent/dir/r.json"), std::string::npos) << r.error;
  EXPECT_EQ(r.out, "");
}

TEST(ToyCli, ResultsJsonHasTheSchema) {
  const fs::path dir = scratch();
  const ToyCall r = call_toy("-q --seeds 3 --samples 200 --epochs 2 --hidden 8 --out " + (dir / "t.json").string() +
                             " --csv " + (dir / "t.csv").string());
  ASSERT_EQ(r.status, 0) << r.error;
  EXPECT_NE(r.out.find("closed form"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("augmentation          mlp"), std::string::npos) << r.out;
  const json j = json::parse(slurp(dir / "t.json"));
  EXPECT_EQ(j["schema"], "spurious-bench/toy/v1");
  EXPECT_EQ(j["config"]["seeds"], 3);
  EXPECT_EQ(j["config"]["batches_per_epoch"], 7);  // ceil(200 / 32)
  EXPECT_EQ(j["config"]["hidden"], json({8}));
  for (const char* model : {"linear", "mlp"})
    for (const char* regime : {"plain", "domain-randomization", "augmentation"}) {
      for (const char* metric : {"rmse_train", "rmse_iid", "rmse_ood", "w1", "w2", "w3", "bias"}) {
        const json& s = j["summary"][model][regime][metric];
        for (const char* k : {"mean", "std", "min", "max"}) EXPECT_TRUE(s[k].is_number()) << model << regime << metric << k;
        EXPECT_EQ(s["n"], 3);
      }
      EXPECT_GT(j["timing"]["runs"][model][regime]["wall_s"].get<double>(), 0.0);
    }
  for (const char* metric : {"w1", "w2", "w3", "bias", "rmse_iid", "rmse_ood"}) {
    EXPECT_TRUE(j["exact_fit"][metric]["mean"].is_number()) << metric;
    EXPECT_TRUE(j["closed_form"][metric].is_number()) << metric;
  }
  EXPECT_DOUBLE_EQ(j["closed_form"]["w3"].get<double>(), 0.1);
  EXPECT_EQ(j["exact_fit"], j["exact_fit_by_regime"]["plain"]);
  ASSERT_EQ(j["runs"].size(), size_t(3 * (2 * 3 + 3)));
  EXPECT_EQ(j["runs"][0]["train_loss"].size(), 2u);
  const std::string csv = slurp(dir / "t.csv");
  EXPECT_EQ(csv.rfind("seed_index,model,regime,rmse_train,rmse_iid,rmse_ood,w1,w2,w3,bias\n", 0), 0u);
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 1 + 3 * (2 * 3 + 3));
  fs::remove_all(dir);
}

// The exact fit of plain is reported even when plain is not trained.
TEST(ToyCli, ExactFitOfPlainAlwaysThere) {
  const fs::path dir = scratch();
  const ToyCall r = call_toy("-q --seeds 2 --samples 100 --epochs 1 --models linear --regimes augmentation --out " +
                             (dir / "t.json").string());
  ASSERT_EQ(r.status, 0) << r.error;
  const json j = json::parse(slurp(dir / "t.json"));
  EXPECT_TRUE(j["exact_fit"]["w3"]["mean"].is_number());
  EXPECT_FALSE(j["summary"]["linear"].contains("plain"));
  fs::remove_all(dir);
}

// bench_spurious itself, once bench/cli/cli.cpp has the `toy` subcommand: one line on stderr and exit 2 (a usage error).
TEST(ToyCli, BinaryReportsErrorsOnOneLine) {
  const fs::path dir = scratch();
  const std::string cmd = sb_bench_spurious() + " toy --seeds 0 >" + (dir / "out").string() + " 2>" +
                          (dir / "err").string() + " </dev/null";
  const int rc = std::system(cmd.c_str());
  const std::string err = slurp(dir / "err");
  fs::remove_all(dir);
  if (err.find("toy") != std::string::npos && err.find("--seeds") == std::string::npos)
    GTEST_SKIP() << "bench/cli/cli.cpp has no `toy` subcommand yet: " << err;
  EXPECT_EQ(WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, 2);
  EXPECT_EQ(err, "bench_spurious: error: --seeds must be a positive integer, got 0\n");
}
