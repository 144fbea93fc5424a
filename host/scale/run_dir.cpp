#include "scale/run_dir.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "core/file_util.h"
#include "core/text_util.h"
#include "data/data.h"
#include "report/report.h"
#include "report/safetensors.h"
#include "scale/shard.h"

namespace sb {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

volatile std::sig_atomic_t g_stop_signal = 0;

void on_stop_signal(int sig) { g_stop_signal = sig; }

const char* kRunSchema = "spurious-bench/run/v1";

// A key as part of a file name: letters, digits, '.', '-' kept, anything else '_'.
std::string file_safe(const std::string& key) {
  std::string out = key;
  for (char& c : out)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-') c = '_';
  return out;
}

// The safetensors bytes of tensors (name, data, S, P) with string metadata, in memory (to be hashed and written).
std::string safetensors_bytes(const std::vector<std::pair<std::string, const std::vector<float>*>>& tensors, int64_t S,
                              const std::map<std::string, std::string>& metadata) {
  SafetensorsWriter w;
  for (const auto& [k, v] : metadata) w.metadata(k, v);
  for (const auto& [name, v] : tensors) w.add(name, v->data(), {S, S ? int64_t(v->size()) / S : 0});
  std::string bytes = w.header();
  for (const auto& [name, v] : tensors) bytes.append(reinterpret_cast<const char*>(v->data()), v->size() * sizeof(float));
  return bytes;
}

std::string meta(const SafetensorsFile& f, const std::string& key) {
  auto it = f.metadata.find(key);
  if (it == f.metadata.end()) throw std::runtime_error("no '" + key + "' in its metadata");
  return it->second;
}

// f on a unit's file, its bytes parsed; whatever fails says which unit of which folder (its checksum matched, so
// another version wrote it).
template <class F>
void decode(const std::string& unit, const std::string& dir, std::string bytes, F f) {
  try {
    f(parse_safetensors(std::move(bytes), dir + ": " + unit));
  } catch (const std::exception& e) {
    throw std::runtime_error(unit + " in " + dir + " cannot be read: " + e.what());
  }
}

}  // namespace

void install_stop_signals() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

int stop_signal() { return g_stop_signal; }

RunDir::RunDir(const std::string& dir, bool resume, const json& config, const std::vector<std::string>& command,
               int checkpoint_every)
    : dir_(dir), config_(config), command_(command), every_(checkpoint_every) {
  if (every_ < 1) throw std::invalid_argument("--checkpoint-every must be a positive integer");
  warn_ = [](const std::string& m) { std::fprintf(stderr, "bench_spurious: warning: %s\n", m.c_str()); };
  const std::string run_json = dir + "/run.json";
  if (resume) {
    if (!fs::is_directory(dir)) throw std::invalid_argument("--resume " + dir + ": no such run folder");
    const std::string text = read_file_if_present(run_json);
    json saved;
    try {
      saved = json::parse(text);
    } catch (const json::exception&) {
      throw std::runtime_error("--resume " + dir + ": " + run_json + " is missing or damaged, so the run's configuration is unknown");
    }
    if (saved.value("schema", "") != kRunSchema)
      throw std::runtime_error("--resume " + dir + ": not a run folder of this version (schema '" +
                               saved.value("schema", "") + "')");
    if (saved.at("config") != config)
      throw std::invalid_argument("--resume " + dir + ": this command's configuration differs from the run's: " +
                                  json_difference(config, saved.at("config")) + " (this command's vs the run's)");
    command_ = saved.at("command").get<std::vector<std::string>>();
    // A kill can leave a temporary file, or a journal line without its end: drop the one, end the other, so the next
    // line starts on its own.
    for (const auto& f : fs::directory_iterator(dir))
      if (f.path().filename().string().find(".tmp.") != std::string::npos) fs::remove(f.path());
    const std::string journal = read_file_if_present(dir + "/journal.jsonl");
    if (!journal.empty() && journal.back() != '\n') {
      std::ofstream(dir + "/journal.jsonl", std::ios::app) << '\n';
    }
    std::ifstream in(dir + "/journal.jsonl", std::ios::binary);
    std::string line;
    for (int n = 1; std::getline(in, line); ++n) {
      const size_t tab = line.rfind('\t');
      const std::string text_part = tab == std::string::npos ? line : line.substr(0, tab);
      if (tab == std::string::npos || sha256_hex(text_part.data(), text_part.size()) != line.substr(tab + 1)) {
        warn_(dir + "/journal.jsonl line " + std::to_string(n) + " is damaged (checksum): ignored");
        continue;
      }
      try {
        const json j = json::parse(text_part);
        journal_.push_back({j.at("key"), j.at("kind"), j.at("file"), j.at("sha256"), j.at("step")});
      } catch (const json::exception& e) {  // its checksum matched: written by another version
        throw std::runtime_error(dir + "/journal.jsonl line " + std::to_string(n) + " is not of this version: " + e.what());
      }
    }
  } else {
    std::error_code ec;
    if (fs::exists(dir) && !fs::is_empty(dir, ec))
      throw std::invalid_argument("--run-dir " + dir + " holds files: continue its run with --resume " + dir +
                                  ", or give a new folder");
    if (!fs::exists(dir) && !fs::create_directory(dir, ec))
      throw std::runtime_error("cannot create the run folder " + dir + ": " + ec.message());
    write_file_atomic(run_json, json{{"schema", kRunSchema}, {"created", utc_now()}, {"config", config},
                                     {"command", command}}
                                    .dump(1) + "\n");
  }
}

bool RunDir::stop_requested() const { return max_all_(stop_signal() != 0 ? 1 : 0) != 0; }

std::string RunDir::file_name(const std::string& key, const std::string& kind, int step) const {
  return file_safe(key) + "." + kind + (kind == "training" ? "." + std::to_string(step) : "") + ".safetensors";
}

void RunDir::append(const Entry& e) {
  const std::string text =
      json{{"key", e.key}, {"kind", e.kind}, {"file", e.file}, {"sha256", e.sha256}, {"step", e.step}}.dump();
  const std::string line = text + "\t" + sha256_hex(text.data(), text.size()) + "\n";
  const std::string path = dir_ + "/journal.jsonl";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd < 0) throw std::runtime_error("cannot write " + path + ": " + std::strerror(errno));
  const bool ok = ::write(fd, line.data(), line.size()) == ssize_t(line.size()) && ::fsync(fd) == 0;
  const int err = errno;
  ::close(fd);
  if (!ok) throw std::runtime_error("cannot write " + path + ": " + std::strerror(err));
  journal_.push_back(e);
}

void RunDir::keep_newest(const std::string& key, const std::string& kind, size_t n) {
  std::vector<const Entry*> of_key;
  for (const Entry& e : journal_)
    if (e.key == key && e.kind == kind) of_key.push_back(&e);
  for (size_t i = 0; i + n < of_key.size(); ++i) fs::remove(dir_ + "/" + of_key[i]->file);
}

bool RunDir::read_checked(const Entry& e, std::string& bytes) const {
  bytes = read_file_if_present(dir_ + "/" + e.file);
  if (!bytes.empty() && sha256_hex(bytes.data(), bytes.size()) == e.sha256) return true;
  warn_(dir_ + "/" + e.file + (bytes.empty() ? " is missing" : " is damaged (checksum)") + ": not loaded, " +
        (e.kind == "training" ? "using the checkpoint before it" : "running " + e.key + " again"));
  return false;
}

void RunDir::save_unit(const std::string& key, const std::string& kind, int step, const std::string& bytes) {
  const Entry e{key, kind, file_name(key, kind, step), sha256_hex(bytes.data(), bytes.size()), step};
  write_file_atomic(dir_ + "/" + e.file, bytes);
  append(e);
}

bool RunDir::load_unit(const std::string& key, const std::string& kind, std::string& bytes) const {
  bool have = false;
  for (auto it = journal_.rbegin(); it != journal_.rend() && !have; ++it)
    if (it->key == key && it->kind == kind) have = read_checked(*it, bytes);
  return min_all_(have ? 1 : 0) != 0;  // an MPI job runs it again unless every rank has it
}

void RunDir::save_training(const std::string& key, const TrainingCheckpoint& c) {
  const std::string k = prefix_ + key;
  std::map<std::string, std::string> m = {{"step", std::to_string(c.step)},
                                          {"adam_step", std::to_string(c.adam_step)},
                                          {"train_s", json(c.train_s).dump()},
                                          {"eval_s", json(c.eval_s).dump()}};
  json curves = json::array();
  for (const auto& seed : c.curves) curves.push_back(curves_json(seed));
  m["curves"] = curves.dump();
  m["diverged_steps"] = json(c.diverged_steps).dump();
  const std::string bytes = safetensors_bytes(
      {{"params", &c.params}, {"adam_m", &c.adam_m}, {"adam_v", &c.adam_v}}, int64_t(c.curves.size()), m);
  save_unit(k, "training", c.step, bytes);
  keep_newest(k, "training", 2);
}

bool RunDir::load_training(const std::string& key, TrainingCheckpoint& c) {
  const std::string k = prefix_ + key;
  // The newest good checkpoint at or before `limit`; the ranks of an MPI job agree on one step all of them have.
  int limit = INT_MAX, step = 0;
  std::string bytes;
  while (true) {
    step = 0, bytes.clear();
    for (auto it = journal_.rbegin(); it != journal_.rend(); ++it) {
      std::string b;
      if (it->key == k && it->kind == "training" && it->step <= limit && read_checked(*it, b)) {
        step = it->step, bytes = std::move(b);
        break;
      }
    }
    const int lo = min_all_(step), hi = max_all_(step);
    if (lo == hi) break;
    limit = lo;
  }
  if (step == 0) return false;
  decode("the checkpoint of " + k, dir_, std::move(bytes), [&](const SafetensorsFile& f) {
    c.step = std::stoi(meta(f, "step"));
    c.adam_step = std::stoi(meta(f, "adam_step"));
    c.train_s = json::parse(meta(f, "train_s")), c.eval_s = json::parse(meta(f, "eval_s"));
    c.curves.clear();
    for (const json& seed : json::parse(meta(f, "curves"))) c.curves.push_back(curves_from_json(seed));
    c.diverged_steps = json::parse(meta(f, "diverged_steps")).get<std::vector<int>>();
    if (c.diverged_steps.size() != c.curves.size()) throw std::runtime_error("diverged_steps and curves disagree");
    const auto& t = f.tensors.at("params");
    const size_t n = size_t(t.shape.at(0) * t.shape.at(1));
    c.params = f.f32("params", n), c.adam_m = f.f32("adam_m", n), c.adam_v = f.f32("adam_v", n);
  });
  return true;
}

void RunDir::save_method(const std::string& key, const MethodOutputs& m) {
  const std::string k = prefix_ + key;
  json records = json::array();
  for (const RunRecord& r : m.records) records.push_back(run_record_json(r));
  const std::string bytes =
      safetensors_bytes({{"params", &m.params}}, int64_t(m.records.size()),
                        {{"records", records.dump()}, {"evidence", evidence_json(m.evidence).dump()},
                         {"timing", timing_json(m.timing).dump()}});
  save_unit(k, "method", 0, bytes);
}

bool RunDir::load_method(const std::string& key, MethodOutputs& m) {
  const std::string k = prefix_ + key;
  std::string bytes;
  if (!load_unit(k, "method", bytes)) return false;
  decode("the saved method " + k, dir_, std::move(bytes), [&](const SafetensorsFile& f) {
    m.records.clear();
    for (const json& r : json::parse(meta(f, "records"))) m.records.push_back(run_record_from_json(r));
    const int S = int(m.records.size());
    const json& data = config_.at("data");
    m.evidence = evidence_from_json(json::parse(meta(f, "evidence")), S, data.at("n_test"), data.at("classes"),
                                    data.at("length"), k + "'s ");
    m.timing = timing_from_json(json::parse(meta(f, "timing")));
    const auto& t = f.tensors.at("params");
    m.params = f.f32("params", size_t(t.shape.at(0) * t.shape.at(1)));
  });
  return true;
}

void RunDir::save_model(const std::string& key, const SavedModel& m) {
  const std::string k = prefix_ + key;
  const std::string bytes = safetensors_bytes(
      {{"params", &m.params}}, 1,
      {{"train_s", json(m.train_s).dump()}, {"diverged_steps", json(m.diverged_steps).dump()}});
  save_unit(k, "model", 0, bytes);
}

bool RunDir::load_model(const std::string& key, SavedModel& m) {
  const std::string k = prefix_ + key;
  std::string bytes;
  if (!load_unit(k, "model", bytes)) return false;
  decode("the saved model " + k, dir_, std::move(bytes), [&](const SafetensorsFile& f) {
    m.params = f.f32("params", size_t(f.tensors.at("params").shape.at(1)));
    m.train_s = json::parse(meta(f, "train_s"));
    m.diverged_steps = json::parse(meta(f, "diverged_steps")).get<std::vector<int>>();
  });
  return true;
}

}  // namespace sb
