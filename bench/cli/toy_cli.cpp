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
#include "report/toy_report.h"
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
  for (const auto& item : split_list(s, "--hidden", true)) {
    const double v = parse_number(item, "--hidden");
    if (v != std::floor(v) || v < 1 || v > 4096)
      throw std::invalid_argument("--hidden sizes must be integers in [1, 4096], got '" + item + "'");
    sizes.push_back(int(v));
  }
  return sizes;
}

// Statistics over seeds; a diverged run (NaN or inf) makes them null rather than a misleading number.
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
  cfg.models = split_list(c.models, "--models");
  cfg.regimes = split_list(c.regimes, "--regimes");
  cfg.hidden = parse_hidden(c.hidden);
  cfg.uniform = !c.uniform.empty();
  if (cfg.uniform) {
    const std::vector<std::string> ab = split_list(c.uniform, "--uniform", true);
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
  if (!c.out_json.empty()) write_file_atomic(c.out_json, toy_results_json(c.cfg, r, device, simd_level_name(simd_level())).dump(1) + "\n");
  if (!c.out_csv.empty()) write_file_atomic(c.out_csv, toy_results_csv(r));
  return 0;
}

}  // namespace sb
