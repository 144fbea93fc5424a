#include "cli/toy_cli.h"

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "core/backend.h"
#include "core/metrics.h"
#include "cpu/simd.h"
#include "report/report.h"
#include "sb_git_commit.h"  // generated at build time: SB_GIT_COMMIT
#include "core/text_util.h"
#include "study/backends.h"
#include "study/toy.h"

namespace sb {

struct ToyCommand {
  CLI::App* app = nullptr;
  ToyConfig cfg;
  std::string models = "linear,mlp", regimes = "plain,domain-randomization,augmentation", hidden = "64,64", uniform;
  int threads = 0;
  std::string out_json, out_csv;
  bool quiet = false;
};

namespace {

using nlohmann::json;

std::vector<int> parse_hidden(const std::string& s) {
  std::vector<int> sizes;
  for (const auto& item : split_list(s)) {
    const double v = parse_number(item, "--hidden");
    if (v != std::floor(v) || v < 1 || v > 4096)
      throw std::invalid_argument("--hidden sizes must be integers in [1, 4096], got '" + item + "'");
    sizes.push_back(int(v));
  }
  return sizes;
}

// Statistics over seeds; a diverged run (NaN or inf) makes them null rather than a misleading number.
json stats_json(const std::vector<double>& v) {
  for (double x : v)
    if (!std::isfinite(x))
      return {{"mean", nullptr}, {"std", nullptr}, {"min", nullptr}, {"max", nullptr},
              {"median", nullptr}, {"ci95", nullptr}, {"n", v.size()}};
  const SeedStats s = seed_stats(v);
  return {{"mean", s.mean}, {"std", s.std},       {"min", s.min},
          {"max", s.max},   {"median", s.median}, {"ci95", {s.ci95_lo, s.ci95_hi}},
          {"n", s.n}};
}

json metric_stats(const ToyResult& r, const std::string& model, const std::string& regime) {
  json j;
  for (const auto& m : toy_metric_names()) j[m] = stats_json(toy_values(r, model, regime, m));
  return j;
}

json weights_json(const ToyWeights& w) { return {{"w1", w.w[0]}, {"w2", w.w[1]}, {"w3", w.w[2]}, {"bias", w.bias}}; }

int batches_per_epoch(const ToyConfig& cfg) { return (cfg.samples + cfg.batch - 1) / cfg.batch; }

json toy_results_json(const ToyCommand& c, const ToyResult& r, const std::string& device) {
  const ToyConfig& cfg = c.cfg;
  const ToyClosedForm cf = toy_closed_form(cfg);
  json j;
  j["schema"] = "spurious-bench/toy/v1";
  j["created"] = utc_now();
  j["config"] = {
      {"seeds", cfg.seeds},
      {"seed", cfg.seed},
      {"models", cfg.models},
      {"regimes", cfg.regimes},
      {"samples", cfg.samples},
      {"k", cfg.k},
      {"train_factor", cfg.train_factor},
      {"ood_factor", cfg.ood_factor},
      {"sigma_train", cf.sigma_train},
      {"sigma_ood", cf.sigma_ood},
      {"x_distribution", cfg.uniform ? json{{"name", "uniform"}, {"lo", cfg.uniform_lo}, {"hi", cfg.uniform_hi}}
                                     : json{{"name", "normal"}, {"mean", 0.0}, {"sd", 1.0}}},
      {"shared_data", cfg.shared_data},
      {"domain_randomization", {{"factor_min", cfg.dr_min}, {"factor_max", cfg.dr_max}}},
      {"augmentation", {{"sd", cfg.aug_sd}}},
      {"hidden", cfg.hidden},
      {"epochs", cfg.epochs},
      {"batch", cfg.batch},
      {"batches_per_epoch", batches_per_epoch(cfg)},
      {"lr", cfg.lr},
      {"lr_schedule", {{"name", "step"}, {"step_epochs", cfg.lr_step}, {"gamma", cfg.lr_gamma}}},
      {"optimizer", {{"name", "adam"}, {"beta1", cfg.adam.beta1}, {"beta2", cfg.adam.beta2}, {"eps", cfg.adam.eps}}},
      {"loss", "mse"},
      {"mlp_weights", "input-gradient equivalents on the IID set: w_j = mean d yhat/d x_j, bias = mean(yhat - w.x)"},
  };
  j["environment"] = {{"device", device},
                      {"simd", simd_level_name(simd_level())},
                      {"threads", r.threads},
                      {"hardware_threads", std::thread::hardware_concurrency()},
                      {"version", SB_VERSION},
                      {"git_commit", SB_GIT_COMMIT},
                      {"compiler", __VERSION__}};
  j["truth"] = {{"w1", 1.0}, {"w2", 2.0}, {"w3", 0.0}, {"bias", 3.0}};
  json closed = weights_json(cf.weights);
  closed["rmse_iid"] = cf.rmse_iid;
  closed["rmse_ood"] = cf.rmse_ood;
  j["closed_form"] = closed;
  j["exact_fit"] = metric_stats(r, "exact", "plain");
  for (const auto& regime : cfg.regimes) j["exact_fit_by_regime"][regime] = metric_stats(r, "exact", regime);
  for (const auto& model : cfg.models)
    for (const auto& regime : cfg.regimes) {
      j["summary"][model][regime] = metric_stats(r, model, regime);
      // Underspecification (study.md §5): spread on the shifted set relative to the IID set.
      const double sd_iid = j["summary"][model][regime]["rmse_iid"]["std"].is_number()
                                ? j["summary"][model][regime]["rmse_iid"]["std"].get<double>()
                                : NAN;
      const double sd_ood = j["summary"][model][regime]["rmse_ood"]["std"].is_number()
                                ? j["summary"][model][regime]["rmse_ood"]["std"].get<double>()
                                : NAN;
      j["underspecification"][model][regime] = sd_iid > 0 ? json(sd_ood / sd_iid) : json(nullptr);
      const double wall = r.wall_s.at(model + "/" + regime);
      j["timing"]["runs"][model][regime] = {
          {"wall_s", wall}, {"seed_steps_per_s", double(cfg.seeds) * cfg.epochs * batches_per_epoch(cfg) / wall}};
    }
  j["timing"]["data_s"] = r.data_s;
  j["timing"]["total_s"] = r.total_s;
  json runs = json::array();
  for (const ToyRun& run : r.runs) {
    json rec = {{"seed_index", run.seed_index}, {"model", run.model}, {"regime", run.regime}};
    for (const auto& m : toy_metric_names()) rec[m] = toy_metric(run.metrics, m);
    if (!run.train_loss.empty()) rec["train_loss"] = run.train_loss;
    runs.push_back(rec);
  }
  j["runs"] = runs;
  return j;
}

std::string toy_results_csv(const ToyResult& r) {
  std::ostringstream out;
  out.precision(9);
  out << "seed_index,model,regime";
  for (const auto& m : toy_metric_names()) out << ',' << m;
  out << '\n';
  for (const ToyRun& run : r.runs) {
    out << run.seed_index << ',' << run.model << ',' << run.regime;
    for (const auto& m : toy_metric_names()) out << ',' << toy_metric(run.metrics, m);
    out << '\n';
  }
  return out.str();
}

// Mean ± std over seeds per regime and model (and the exact fit), then the truth and the closed form.
std::string toy_summary_table(const ToyConfig& cfg, const ToyResult& r) {
  static const char* cols[] = {"w1", "w2", "w3", "bias", "rmse_train", "rmse_iid", "rmse_ood"};
  std::ostringstream out;
  char cell[64];
  std::snprintf(cell, sizeof cell, "%-21s %-7s", "regime", "model");
  out << cell;
  for (const char* c : cols) std::snprintf(cell, sizeof cell, " %-17s", c), out << cell;
  out << '\n';
  for (const auto& regime : cfg.regimes) {
    std::vector<std::string> models = cfg.models;
    models.push_back("exact");
    for (const auto& model : models) {
      std::snprintf(cell, sizeof cell, "%-21s %-7s", regime.c_str(), model.c_str());
      out << cell;
      for (const char* c : cols) {
        const std::vector<double> v = toy_values(r, model, regime, c);
        bool finite = true;
        for (double x : v) finite = finite && std::isfinite(x);
        if (!finite) {
          std::snprintf(cell, sizeof cell, " %-17s", "diverged");
        } else {
          const SeedStats s = seed_stats(v);
          std::snprintf(cell, sizeof cell, " %7.4f ± %-8.4f", s.mean, s.std);  // '±' is 2 bytes, 1 column
        }
        out << cell;
      }
      out << '\n';
    }
  }
  const ToyClosedForm cf = toy_closed_form(cfg);
  std::snprintf(cell, sizeof cell, "%-29s", "truth");
  out << cell;
  for (double v : {1.0, 2.0, 0.0, 3.0}) std::snprintf(cell, sizeof cell, " %7.4f          ", v), out << cell;
  out << "\n";
  std::snprintf(cell, sizeof cell, "%-29s", "closed form (plain, n=inf)");
  out << cell;
  for (double v : {cf.weights.w[0], cf.weights.w[1], cf.weights.w[2], cf.weights.bias, double(NAN), cf.rmse_iid, cf.rmse_ood}) {
    if (std::isnan(v))
      std::snprintf(cell, sizeof cell, " %-17s", "");
    else
      std::snprintf(cell, sizeof cell, " %7.4f          ", v);
    out << cell;
  }
  out << '\n';
  return out.str();
}

}  // namespace

std::shared_ptr<ToyCommand> add_toy_command(CLI::App& app) {
  auto c = std::make_shared<ToyCommand>();
  ToyConfig& cfg = c->cfg;
  CLI::App* t = app.add_subcommand(
      "toy",
      "Regression toy: y = x1 + 2 x2 + 3 + e, spurious x3 = y + N(0, (k/factor)^2); linear and MLP seeds under "
      "plain, domain-randomization and augmentation training against the exact least-squares fit");
  c->app = t;
  t->add_option("--seeds", cfg.seeds, "Number of seeds trained in parallel")->capture_default_str();
  t->add_option("--seed", cfg.seed, "Base seed of every random stream")->capture_default_str();
  t->add_option("--models", c->models, "Comma-separated models: linear, mlp")->capture_default_str();
  t->add_option("--regimes", c->regimes, "Comma-separated regimes: plain, domain-randomization, augmentation")
      ->capture_default_str();
  t->add_option("--epochs", cfg.epochs, "Training epochs")->capture_default_str();
  t->add_option("--batch", cfg.batch, "Batch size (the last partial batch of an epoch is kept)")
      ->capture_default_str();
  t->add_option("--lr", cfg.lr, "Adam learning rate")->capture_default_str();
  t->add_option("--lr-step", cfg.lr_step, "StepLR: multiply the learning rate by --lr-gamma every N epochs")
      ->capture_default_str();
  t->add_option("--lr-gamma", cfg.lr_gamma, "StepLR factor")->capture_default_str();
  t->add_option("--samples", cfg.samples, "Samples per set (train, IID, OOD)")->capture_default_str();
  t->add_option("--k", cfg.k, "x3 noise sd is k / factor")->capture_default_str();
  t->add_option("--train-factor", cfg.train_factor, "Spurious factor of the training and IID sets")
      ->capture_default_str();
  t->add_option("--ood-factor", cfg.ood_factor, "Spurious factor of the OOD set")->capture_default_str();
  t->add_option("--dr-min", cfg.dr_min, "Domain randomization: smallest per-sample factor")->capture_default_str();
  t->add_option("--dr-max", cfg.dr_max, "Domain randomization: largest per-sample factor")->capture_default_str();
  t->add_option("--aug-sd", cfg.aug_sd, "Augmentation: sd of the fresh noise added to x3 of every batch")
      ->capture_default_str();
  t->add_option("--hidden", c->hidden, "MLP hidden layer sizes, comma-separated")->capture_default_str();
  t->add_option("--uniform", c->uniform, "Draw x1, x2 from U[A, B) instead of N(0, 1): A,B");
  t->add_flag("--shared-data", cfg.shared_data,
              "Every seed trains and tests on the same data (seed index 0's); default: data per seed");
  t->add_option("--threads", c->threads, "CPU threads (0 = all)")->capture_default_str();
  t->add_option("--out", c->out_json, "Write results JSON here (written atomically)");
  t->add_option("--csv", c->out_csv, "Write per-seed results CSV here (written atomically)");
  t->add_flag("-q,--quiet", c->quiet, "No progress on stderr");
  return c;
}

bool toy_parsed(const ToyCommand& c) { return c.app && c.app->parsed(); }

int run_toy(ToyCommand& c) {
  ToyConfig& cfg = c.cfg;
  cfg.models = split_list(c.models);
  cfg.regimes = split_list(c.regimes);
  cfg.hidden = parse_hidden(c.hidden);
  cfg.uniform = !c.uniform.empty();
  if (cfg.uniform) {
    const std::vector<std::string> ab = split_list(c.uniform);
    if (ab.size() != 2) throw std::invalid_argument("--uniform takes two numbers A,B, got '" + c.uniform + "'");
    cfg.uniform_lo = parse_number(ab[0], "--uniform");
    cfg.uniform_hi = parse_number(ab[1], "--uniform");
  }
  if (c.threads < 0) throw std::invalid_argument("--threads must be 0 (all) or a positive integer");
  validate(cfg);
  if (!c.out_json.empty()) check_writable(c.out_json);
  if (!c.out_csv.empty()) check_writable(c.out_csv);

  const std::string device = make_backend("cpu", c.threads)->device();
  const ToyClosedForm cf = toy_closed_form(cfg);
  if (!c.quiet)
    std::fprintf(stderr,
                 "bench_spurious toy: %d seeds, models %s, regimes %s, %d epochs x %d batches, sigma train %.3g / OOD "
                 "%.3g, %s data, %s\n",
                 cfg.seeds, c.models.c_str(), c.regimes.c_str(), cfg.epochs, batches_per_epoch(cfg), cf.sigma_train,
                 cf.sigma_ood, cfg.shared_data ? "shared" : "per-seed", device.c_str());
  ToyProgressFn progress;
  if (!c.quiet)
    progress = [](const std::string& model, const std::string& regime, double s) {
      std::fprintf(stderr, "[toy] %s / %s done in %.2f s\n", model.c_str(), regime.c_str(), s);
      std::fflush(stderr);
    };
  const ToyResult r = run_toy_study(cfg, c.threads, progress);

  std::cout << toy_summary_table(cfg, r);
  std::printf("time: %.2f s in all (%d threads)\n", r.total_s, r.threads);
  if (!c.out_json.empty()) write_file_atomic(c.out_json, toy_results_json(c, r, device).dump(1) + "\n");
  if (!c.out_csv.empty()) write_file_atomic(c.out_csv, toy_results_csv(r));
  return 0;
}

}  // namespace sb
