#include "report/report.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <algorithm>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "core/text_util.h"
#include "sb_git_commit.h"  // generated at build time

namespace sb {
namespace {

using nlohmann::json;

json finite_or_null(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

json set_metrics_json(const SetMetrics& m) {
  json per_group = json::array();
  for (double a : m.per_group_accuracy) per_group.push_back(finite_or_null(a));
  return {{"accuracy", m.accuracy},
          {"worst_group_accuracy", m.worst_group_accuracy},
          {"per_group_accuracy", per_group},
          {"loss", finite_or_null(m.loss)}};
}

json stats_json(const SeedStats& s) {
  return {{"mean", s.mean}, {"std", s.std},       {"min", s.min},
          {"max", s.max},   {"median", s.median}, {"ci95", {s.ci95_lo, s.ci95_hi}},
          {"n", s.n}};
}

const char* kMetrics[] = {"accuracy", "worst_group_accuracy", "loss"};

double metric_of(const SetMetrics& m, const std::string& name) {
  if (name == "accuracy") return m.accuracy;
  if (name == "worst_group_accuracy") return m.worst_group_accuracy;
  return m.loss;
}

// Per-seed values of a metric, diverged seeds left out; "shortcut_reliance" comes from the saliency (absent when it
// was off).
std::vector<double> values_of(const StudyResult& r, const std::string& method, const std::string& set,
                              const std::string& metric) {
  std::vector<double> v;
  for (const auto& run : r.runs) {
    if (run.method != method || run.diverged_step) continue;
    if (metric == "shortcut_reliance") {
      auto it = run.shortcut_reliance.find(set);
      if (it != run.shortcut_reliance.end()) v.push_back(it->second);
    } else {
      v.push_back(metric_of(run.metrics.at(set), metric));
    }
  }
  return v;
}

std::vector<std::string> diverged_seeds(const StudyResult& r, const std::string& method) {
  std::vector<std::string> out;
  for (const auto& run : r.runs)
    if (run.method == method && run.diverged_step)
      out.push_back(std::to_string(run.seed_index) + " at step " + std::to_string(run.diverged_step));
  return out;
}

json vec_json(const std::vector<double>& v) {
  json a = json::array();
  for (double x : v) a.push_back(finite_or_null(x));
  return a;
}

std::string temp_path_for(const std::string& path) { return path + ".tmp." + std::to_string(::getpid()); }

}  // namespace

json floats_json(const std::vector<float>& v) {
  json a = json::array();
  for (float x : v) a.push_back(float_setting(x));
  return a;
}

const char* git_commit() { return SB_GIT_COMMIT; }

json config_json(const StudyConfig& cfg, const Dataset& data) {
  const ConvBaseShape shape{cfg.channels, data.length, data.classes};
  return {
      {"seeds", cfg.seeds},
      {"steps", cfg.steps},
      {"batch", cfg.batch},
      {"lr", float_setting(cfg.lr)},
      {"channels", cfg.channels},
      {"parameters_per_seed", shape.num_params()},
      {"seed", cfg.seed},
      {"eval_every", cfg.eval_every},
      {"batch_order", cfg.fixed_order ? "fixed" : "reshuffle-per-epoch"},
      {"methods", cfg.methods},
      {"dfr",
       {{"fraction", float_setting(cfg.dfr_fraction)},
        {"subsamples", cfg.dfr.subsamples},
        {"l1_grid", floats_json(cfg.dfr.l1_grid)}}},
      {"afr",
       {{"stage1_fraction", float_setting(cfg.afr_stage1_fraction)},
        {"stage1_steps", cfg.afr_stage1_steps.empty() ? std::vector<int>{cfg.steps} : cfg.afr_stage1_steps},
        {"gammas", floats_json(cfg.afr.gammas)},
        {"lambdas", floats_json(cfg.afr.lambdas)},
        {"epochs", cfg.afr.epochs},
        {"lr", float_setting(cfg.afr.lr)},
        {"clip", float_setting(cfg.afr.clip)}}},
      {"saliency", cfg.saliency},
      {"optimizer",
       {{"name", "adam"},
        {"beta1", float_setting(cfg.adam.beta1)},
        {"beta2", float_setting(cfg.adam.beta2)},
        {"eps", float_setting(cfg.adam.eps)}}},
      {"spurious",
       {{"p", float_setting(cfg.spurious.p)},
        {"noise_mean", float_setting(cfg.spurious.mean)},
        {"noise_sd", float_setting(cfg.spurious.sd)},
        {"block_stride", cfg.spurious.stride},
        {"block_width", cfg.spurious.width},
        {"noise_draw", to_string(cfg.spurious.draw)}}},
      {"data",
       {{"source", data.source},
        {"n_train", data.n_train},
        {"n_test", data.n_test},
        {"length", data.length},
        {"classes", data.classes}}},
  };
}

json curves_json(const std::vector<CurvePoint>& points) {
  json steps = json::array();
  json curves;
  for (const auto& set : study_sets())
    for (const char* m : kMetrics) curves[set][m] = json::array();
  for (const auto& set : study_sets()) curves[set]["per_group_accuracy"] = json::array();
  for (const CurvePoint& c : points) {
    steps.push_back(c.step);
    for (const auto& set : study_sets())
      for (const char* m : kMetrics) curves[set][m].push_back(finite_or_null(metric_of(c.sets.at(set), m)));
    for (const auto& set : study_sets()) curves[set]["per_group_accuracy"].push_back(vec_json(c.sets.at(set).per_group_accuracy));
  }
  curves["step"] = steps;
  return curves;
}

json run_record_json(const RunRecord& r) {
  json rec = {{"seed_index", r.seed_index}, {"method", r.method}};
  if (r.diverged_step) rec["diverged_step"] = r.diverged_step;
  for (const auto& set : study_sets()) rec["metrics"][set] = set_metrics_json(r.metrics.at(set));
  rec["curves"] = curves_json(r.curves);
  if (!r.shortcut_reliance.empty()) rec["shortcut_reliance"] = r.shortcut_reliance;
  if (r.has_dfr)
    rec["dfr"] = {{"l1", float_setting(r.dfr_l1)}, {"tune_worst_group", vec_json(r.dfr_tune_worst_group)}};
  if (r.has_afr)
    rec["afr"] = {{"gamma", float_setting(r.afr_gamma)}, {"lambda", float_setting(r.afr_lambda)}, {"epoch", r.afr_epoch},
                  {"ess", r.afr_ess}, {"class_mass", vec_json(r.afr_class_mass)}, {"stage1_steps", r.afr_stage1_steps}};
  return rec;
}

json timing_json(const MethodTiming& t) {
  json stages = json::array();
  for (const StageTiming& st : t.stages) {
    json e = {{"stage", st.name}, {"s", st.s}, {"shared", st.shared}};
    if (st.epochs > 0) e["epochs"] = st.epochs, e["epoch_s"] = st.s / st.epochs;
    stages.push_back(e);
  }
  return {{"wall_s", t.wall_s},
          {"train_s", t.train_s},
          {"eval_s", t.eval_s},
          {"seed_steps_per_s", t.seed_steps_per_s},
          {"epoch_s", t.epoch_s},
          {"stages", stages}};
}

json environment_json(const RunEnvironment& env) {
  return {{"backend", env.backend},
          {"device", env.device},
          {"threads", env.threads},
          {"hardware_threads", std::thread::hardware_concurrency()},
          {"version", SB_VERSION},
          {"git_commit", git_commit()},
          {"compiler",
#ifdef __clang__
           "clang " __clang_version__
#else
           "gcc " __VERSION__
#endif
          },
          {"nlohmann_json", std::to_string(NLOHMANN_JSON_VERSION_MAJOR) + "." +
                                std::to_string(NLOHMANN_JSON_VERSION_MINOR) + "." +
                                std::to_string(NLOHMANN_JSON_VERSION_PATCH)}};
}

json results_json(const StudyConfig& cfg, const Dataset& data, const RunEnvironment& env, const StudyResult& result) {
  return results_json(config_json(cfg, data), environment_json(env), result);
}

json results_json(const json& config, const json& environment, const StudyResult& result) {
  json j;
  j["schema"] = "spurious-bench/results/v1";
  j["created"] = utc_now();
  const int classes = config.at("data").at("classes"), length = config.at("data").at("length"),
            batch = config.at("batch");
  const ConvBaseShape shape{config.at("channels").get<int>(), length, classes};
  j["config"] = config;
  j["environment"] = environment;

  json runs = json::array();
  for (const RunRecord& r : result.runs) runs.push_back(run_record_json(r));
  j["runs"] = runs;

  json summary, timing, cross;
  for (const auto& method : result.methods) {
    for (const auto& set : study_sets()) {
      for (const char* m : kMetrics) summary[method][set][m] = stats_json(seed_stats(values_of(result, method, set, m)));
      const std::vector<double> rel = values_of(result, method, set, "shortcut_reliance");
      if (!rel.empty()) summary[method][set]["shortcut_reliance"] = stats_json(seed_stats(rel));
    }

    const MethodTiming& t = result.timing.at(method);
    timing[method] = timing_json(t);
    if (t.seed_steps_per_s > 0) {
      const double flops = shape.train_step_flops() * batch, bytes = shape.train_step_bytes(batch);
      timing[method]["flops_per_seed_step"] = flops;
      timing[method]["bytes_per_seed_step"] = bytes;
      timing[method]["gflop_per_s"] = flops * t.seed_steps_per_s * 1e-9;
    }
    const MethodCrossSeed& c = result.cross_seed.at(method);
    json& cm = cross[method];
    cm["diverged"] = diverged_seeds(result, method).size();  // seeds left out of the summaries and statistics
    cm["underspecification"] = c.underspecification;
    cm["disagreement"] = c.disagreement;
    if (!c.beats_erm_worst_group.empty()) cm["beats_erm_worst_group"] = c.beats_erm_worst_group;
    for (const auto& [set, st] : c.worst_group_gain_vs_erm) cm["worst_group_gain_vs_erm"][set] = stats_json(st);
    if (!c.afr_p_histogram.empty()) cm["afr_p_histogram"] = {{"bins", 20}, {"range", {0, 1}}, {"counts", vec_json(c.afr_p_histogram)}};
    if (!c.saliency.empty()) {
      json sal;
      for (const auto& [set, map] : c.saliency) sal[set] = vec_json(map);
      cm["saliency"] = {{"shape", {classes, length}}, {"sets", sal}};
    }
  }
  j["summary"] = summary;
  j["timing"] = timing;
  j["cross_seed"] = cross;
  return j;
}

json study_document(std::vector<json> parts) {
  if (parts.size() == 1) return std::move(parts[0]);
  json doc = {{"schema", parts[0]["schema"]},
              {"created", parts[0]["created"]},
              {"config", parts[0]["config"]},
              {"environment", parts[0]["environment"]}};
  doc["config"]["spurious"].erase("p");  // each sweep entry names its p
  json sweep = json::array(), p_sweep = json::array();
  for (json& part : parts) {
    json entry = {{"p", part["config"]["spurious"]["p"]}};
    for (auto it = part.begin(); it != part.end(); ++it)
      if (!doc.contains(it.key())) entry[it.key()] = std::move(it.value());
    p_sweep.push_back(entry["p"]);
    sweep.push_back(std::move(entry));
  }
  doc["config"]["spurious"]["p_sweep"] = std::move(p_sweep);
  doc["sweep"] = std::move(sweep);
  return doc;
}

std::vector<json> study_parts(const json& doc) {
  if (!doc.contains("sweep")) return {doc};
  std::vector<json> parts;
  for (const json& entry : doc.at("sweep")) {
    json part = {{"schema", doc.at("schema")}, {"created", doc.at("created")}, {"config", doc.at("config")},
                 {"environment", doc.at("environment")}};
    part["config"]["spurious"].erase("p_sweep");
    part["config"]["spurious"]["p"] = entry.at("p");
    for (auto it = entry.begin(); it != entry.end(); ++it)
      if (it.key() != "p") part[it.key()] = it.value();
    parts.push_back(std::move(part));
  }
  return parts;
}

namespace {

double number_or_nan(const json& v) { return v.is_null() ? std::nan("") : v.get<double>(); }

std::vector<double> numbers_of(const json& a) {
  std::vector<double> v;
  for (const json& x : a) v.push_back(number_or_nan(x));
  return v;
}

SetMetrics set_metrics_from(const json& j) {
  SetMetrics m;
  m.accuracy = j.at("accuracy");
  m.worst_group_accuracy = j.at("worst_group_accuracy");
  m.loss = number_or_nan(j.at("loss"));
  m.per_group_accuracy = numbers_of(j.at("per_group_accuracy"));
  return m;
}

std::vector<CurvePoint> curves_from(const json& curves) {
  std::vector<CurvePoint> out;
  const json& steps = curves.at("step");
  for (size_t i = 0; i < steps.size(); ++i) {
    CurvePoint c;
    c.step = steps[i];
    for (const auto& set : study_sets()) {
      const json& cs = curves.at(set);
      SetMetrics& m = c.sets[set];
      m.accuracy = number_or_nan(cs.at("accuracy").at(i));
      m.worst_group_accuracy = number_or_nan(cs.at("worst_group_accuracy").at(i));
      m.loss = number_or_nan(cs.at("loss").at(i));
      m.per_group_accuracy = numbers_of(cs.at("per_group_accuracy").at(i));
    }
    out.push_back(std::move(c));
  }
  return out;
}

RunRecord run_record_from(const json& rec) {
  RunRecord r;
  r.seed_index = rec.at("seed_index");
  r.method = rec.at("method");
  r.diverged_step = rec.value("diverged_step", 0);
  for (const auto& set : study_sets()) r.metrics[set] = set_metrics_from(rec.at("metrics").at(set));
  r.curves = curves_from(rec.at("curves"));
  if (rec.contains("shortcut_reliance")) r.shortcut_reliance = rec["shortcut_reliance"].get<std::map<std::string, double>>();
  if (rec.contains("dfr")) {
    r.has_dfr = true;
    r.dfr_l1 = rec["dfr"].at("l1").get<float>();
    r.dfr_tune_worst_group = numbers_of(rec["dfr"].at("tune_worst_group"));
  }
  if (rec.contains("afr")) {
    const json& a = rec["afr"];
    r.has_afr = true;
    r.afr_gamma = a.at("gamma").get<float>(), r.afr_lambda = a.at("lambda").get<float>();
    r.afr_epoch = a.at("epoch"), r.afr_ess = a.at("ess"), r.afr_stage1_steps = a.at("stage1_steps");
    r.afr_class_mass = numbers_of(a.at("class_mass"));
  }
  return r;
}

MethodTiming timing_from(const json& t) {
  MethodTiming m;
  m.wall_s = t.at("wall_s"), m.train_s = t.at("train_s"), m.eval_s = t.at("eval_s");
  m.seed_steps_per_s = t.at("seed_steps_per_s"), m.epoch_s = t.at("epoch_s");
  for (const json& e : t.at("stages")) m.stages.push_back({e.at("stage"), e.at("s"), e.value("epochs", 0.0), e.at("shared")});
  return m;
}

}  // namespace

// f(), its JSON errors as std::runtime_error saying what was being read.
template <class F>
auto read_as(const char* what, F f) {
  try {
    return f();
  } catch (const json::exception& e) {
    throw std::runtime_error(std::string("not ") + what + " of this version: " + e.what());
  }
}

StudyResult study_result_from_json(const json& part) {
  return read_as("a results file", [&] {
    StudyResult r;
    for (const json& rec : part.at("runs")) {
      r.runs.push_back(run_record_from(rec));
      const std::string& method = r.runs.back().method;
      if (std::find(r.methods.begin(), r.methods.end(), method) == r.methods.end()) r.methods.push_back(method);
    }
    for (const std::string& method : r.methods) r.timing[method] = timing_from(part.at("timing").at(method));
    return r;
  });
}

RunRecord run_record_from_json(const json& rec) { return read_as("a run record", [&] { return run_record_from(rec); }); }

std::vector<CurvePoint> curves_from_json(const json& j) { return read_as("curves", [&] { return curves_from(j); }); }

MethodTiming timing_from_json(const json& t) { return read_as("a timing record", [&] { return timing_from(t); }); }

std::string results_csv(const StudyResult& result, double p, bool header) {
  std::ostringstream out;
  out.precision(9);
  if (header) out << "p,seed_index,method,set,accuracy,worst_group_accuracy,loss,shortcut_reliance\n";
  for (const RunRecord& r : result.runs)
    for (const auto& set : study_sets()) {
      const SetMetrics& m = r.metrics.at(set);
      out << float_setting(float(p)) << ',' << r.seed_index << ',' << r.method << ',' << set << ','
          << m.accuracy << ',' << m.worst_group_accuracy << ',' << m.loss << ',';
      auto it = r.shortcut_reliance.find(set);
      if (it != r.shortcut_reliance.end()) out << it->second;
      out << '\n';
    }
  return out.str();
}

std::string summary_table(const StudyResult& result) {
  std::ostringstream out;
  char line[256];
  std::snprintf(line, sizeof line, "%-10s %-17s %-22s %-7s %-7s   %-22s %-7s %-7s\n", "method", "set",
                "accuracy mean ± std", "min", "max", "worst-group mean ± std", "min", "max");
  out << line;
  for (const auto& method : result.methods)
    for (const auto& set : study_sets()) {
      const SeedStats a = seed_stats(values_of(result, method, set, "accuracy"));
      const SeedStats w = seed_stats(values_of(result, method, set, "worst_group_accuracy"));
      std::snprintf(line, sizeof line, "%-10s %-17s %.4f ± %.4f        %.4f  %.4f    %.4f ± %.4f          %.4f  %.4f\n",
                    method.c_str(), set.c_str(), a.mean, a.std, a.min, a.max, w.mean, w.std, w.min, w.max);
      out << line;
    }
  for (const auto& method : result.methods) {
    const std::vector<std::string> diverged = diverged_seeds(result, method);
    if (diverged.empty()) continue;
    std::string list;
    for (const std::string& d : diverged) list += (list.empty() ? "" : ", ") + d;
    out << method << ": " << diverged.size() << " seed(s) diverged and are left out above: " << list << "\n";
  }
  return out.str();
}

void check_writable(const std::string& path) {
  const std::string tmp = temp_path_for(path);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (fd < 0) throw std::runtime_error("cannot write " + path + ": " + std::strerror(errno));
  ::close(fd);
  ::unlink(tmp.c_str());
}

void write_file_atomic(const std::string& path, const std::string& content) {
  write_file_atomic(path, std::vector<FilePart>{{content.data(), content.size()}});
}

void write_file_atomic(const std::string& path, const std::vector<FilePart>& parts) {
  const std::string tmp = temp_path_for(path);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) throw std::runtime_error("cannot write " + path + ": " + std::strerror(errno));
  auto fail = [&](int err) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw std::runtime_error("cannot write " + path + ": " + std::strerror(err));
  };
  for (const FilePart& part : parts) {
    const char* p = static_cast<const char*>(part.data);
    size_t done = 0;
    while (done < part.size) {
      const ssize_t n = ::write(fd, p + done, part.size - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) fail(errno);
      done += size_t(n);
    }
  }
  if (::fsync(fd) != 0) fail(errno);
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw std::runtime_error("cannot write " + path + ": " + std::strerror(err));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw std::runtime_error("cannot write " + path + ": " + std::strerror(err));
  }
}

std::string cross_seed_table(const StudyResult& result) {
  // Every column names its set: underspecification (std of accuracy on a shifted set over std on test_clean) on
  // test_aligned and test_conflicting, disagreement on test_clean and test_conflicting, beats-erm and the paired gain
  // over erm on test_clean's worst group, shortcut reliance on test_clean.
  std::string out = strprintf("%-12s %-17s %-21s %-19s %-23s %-20s %-28s %-20s\n", "method", "underspec aligned",
                              "underspec conflicting", "disagreement clean", "disagreement conflicting",
                              "beats erm (wg clean)", "wg gain vs erm (clean) [95%]", "shortcut rel. clean");
  for (const auto& m : result.methods) {
    const MethodCrossSeed& c = result.cross_seed.at(m);
    auto get = [](const std::map<std::string, double>& mp, const char* k) {
      auto it = mp.find(k);
      return it == mp.end() ? std::nan("") : it->second;
    };
    double rel = 0;
    int n = 0;
    for (const RunRecord& r : result.runs)
      if (r.method == m && r.shortcut_reliance.count("test_clean")) rel += r.shortcut_reliance.at("test_clean"), ++n;
    const auto gain = c.worst_group_gain_vs_erm.find("test_clean");
    const std::string gain_text = gain == c.worst_group_gain_vs_erm.end()
                                      ? "nan"
                                      : strprintf("%+.3f [%+.3f, %+.3f]", gain->second.mean, gain->second.ci95_lo,
                                                  gain->second.ci95_hi);
    out += strprintf("%-12s %-17.2f %-21.2f %-19.4f %-23.4f %-20.2f %-28s %-20.4f\n", m.c_str(),
                    get(c.underspecification, "test_aligned"), get(c.underspecification, "test_conflicting"),
                    get(c.disagreement, "test_clean"), get(c.disagreement, "test_conflicting"),
                    get(c.beats_erm_worst_group, "test_clean"), gain_text.c_str(), n ? rel / n : std::nan(""));
  }
  return out;
}

std::string timing_table(const StudyResult& result, const ConvBaseShape& shape, int batch) {
  std::string out;
  for (const auto& m : result.methods) {
    const MethodTiming& t = result.timing.at(m);
    out += strprintf("timing %-11s wall %7.2f s", m.c_str(), t.wall_s);
    if (t.train_s > 0)
      out += strprintf("  %.0f seed-steps/s  %.4f s/epoch  %.1f GFLOP/s", t.seed_steps_per_s, t.epoch_s,
                       t.seed_steps_per_s * shape.train_step_flops() * batch * 1e-9);
    out += "  |";
    for (const StageTiming& st : t.stages)
      out += strprintf(" %s %.2f s%s", st.name.c_str(), st.s, st.shared ? " (shared)" : "");
    out += "\n";
  }
  return out;
}


}  // namespace sb
