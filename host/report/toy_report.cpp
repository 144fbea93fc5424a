// The regression toy's writers (report/toy_report.h).
#include "report/toy_report.h"

#include <cmath>
#include <cstdio>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/metrics.h"
#include "core/text_util.h"
#include "report/report.h"
#include "sb_git_commit.h"  // generated at build time: SB_GIT_COMMIT

namespace sb {
namespace {

using nlohmann::json;

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

}  // namespace

json toy_results_json(const ToyConfig& cfg, const ToyResult& r, const std::string& device, const std::string& simd) {
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
                      {"simd", simd},
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

}  // namespace sb
