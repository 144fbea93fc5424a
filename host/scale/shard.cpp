#include "scale/shard.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <stdexcept>

#include "core/text_util.h"

namespace sb {
namespace {

using nlohmann::json;

const char* kShardSchema = "spurious-bench/shard/v1";

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "shards store numbers little-endian, as this machine does");

std::string base64(const void* data, size_t n) {
  std::string out(4 * ((n + 2) / 3) + 1, '\0');
  const int len = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), static_cast<const unsigned char*>(data),
                                  int(n));
  out.resize(size_t(len));
  return out;
}

// The bytes of base64 text, which must decode to exactly `n` bytes.
std::vector<unsigned char> unbase64(const std::string& text, size_t n, const std::string& what) {
  std::vector<unsigned char> out(3 * (text.size() / 4) + 3);
  const int len = text.size() % 4 == 0 ? EVP_DecodeBlock(out.data(), reinterpret_cast<const unsigned char*>(text.data()),
                                                         int(text.size()))
                                       : -1;
  // EVP_DecodeBlock counts the padding's zero bytes: strip one per '='.
  const size_t pad = text.size() >= 2 ? (text[text.size() - 1] == '=') + (text[text.size() - 2] == '=') : 0;
  if (len < 0 || size_t(len) - pad != n)
    throw std::invalid_argument(what + " is damaged: not base64 of " + std::to_string(n) + " bytes");
  out.resize(n);
  return out;
}

}  // namespace

json evidence_json(const MethodSeedEvidence& ev) {
  json j;
  for (const auto& [set, pred] : ev.predictions) j["predictions"][set] = base64(pred.data(), pred.size());
  for (const auto& [set, sums] : ev.saliency_sums)
    j["saliency_sums"][set] = base64(sums.data(), sums.size() * sizeof(double));
  if (!ev.afr_p_counts.empty()) j["afr_p_counts"] = ev.afr_p_counts;
  return j.is_null() ? json::object() : j;
}

MethodSeedEvidence evidence_from_json(const json& ev, int S, int n_test, int classes, int length,
                                      const std::string& what) {
  MethodSeedEvidence out;
  try {
    if (ev.contains("predictions"))
      for (const auto& [set, text] : ev["predictions"].items()) {
        const std::vector<unsigned char> b = unbase64(text, size_t(S) * n_test, what + set + " predictions");
        out.predictions[set].assign(b.begin(), b.end());
      }
    if (ev.contains("saliency_sums"))
      for (const auto& [set, text] : ev["saliency_sums"].items()) {
        const size_t n = size_t(S) * classes * length;
        const std::vector<unsigned char> b = unbase64(text, n * sizeof(double), what + set + " saliency");
        out.saliency_sums[set].resize(n);
        std::memcpy(out.saliency_sums[set].data(), b.data(), b.size());
      }
    if (ev.contains("afr_p_counts")) out.afr_p_counts = ev["afr_p_counts"].get<std::vector<double>>();
  } catch (const json::exception& e) {
    throw std::invalid_argument(what + "evidence is not of this version: " + e.what());
  }
  return out;
}

namespace {

// One shard's part, read back: its runs and timing, its seeds' evidence and class counts.
struct ShardPart {
  std::string file;
  int begin = 0, end = 0;
  StudyResult result;
  json environment;  // where the shard ran
};

ShardPart read_part(const std::string& file, const json& part) {
  ShardPart sp;
  sp.file = file;
  sp.result = study_result_from_json(part);
  sp.environment = part.at("environment");
  try {
    const json& shard = part.at("shard");
    sp.begin = shard.at("seed_range").at(0), sp.end = shard.at("seed_range").at(1);
    const int S = sp.end - sp.begin;
    const int classes = part.at("config").at("data").at("classes"), length = part.at("config").at("data").at("length"),
              n_test = part.at("config").at("data").at("n_test");
    sp.result.class_counts = shard.at("class_counts").get<std::map<std::string, std::vector<int>>>();
    for (const std::string& method : sp.result.methods)
      sp.result.evidence[method] =
          evidence_from_json(shard.at("evidence").at(method), S, n_test, classes, length, file + ": " + method + "'s ");
  } catch (const json::exception& e) {
    throw std::invalid_argument(file + " is not a shard of this version: " + e.what());
  }
  for (const RunRecord& r : sp.result.runs)
    if (r.seed_index < sp.begin || r.seed_index >= sp.end)
      throw std::invalid_argument(file + ": seed index " + std::to_string(r.seed_index) + " is outside its range " +
                                  std::to_string(sp.begin) + ":" + std::to_string(sp.end));
  return sp;
}

// Every leaf of a JSON value as "a.b.c" -> its text, to name the settings two configurations differ in.
void flatten(const json& j, const std::string& path, std::map<std::string, std::string>& out) {
  if (j.is_object()) {
    for (const auto& [k, v] : j.items()) flatten(v, path.empty() ? k : path + "." + k, out);
  } else {
    out[path] = j.dump();
  }
}

}  // namespace

std::string json_difference(const json& a, const json& b) {
  std::map<std::string, std::string> fa, fb;
  flatten(a, "", fa), flatten(b, "", fb);
  for (const auto& [k, v] : fb) fa.emplace(k, "(absent)");
  std::string diff;
  for (const auto& [k, v] : fa) {
    auto it = fb.find(k);
    const std::string other = it == fb.end() ? "(absent)" : it->second;
    if (other != v) diff += (diff.empty() ? "" : ", ") + k + " " + v + " vs " + other;
  }
  return diff;
}

namespace {

// The shards' timing as one study's: each time is the slowest shard's (shards run side by side), each rate the sum.
MethodTiming combined_timing(const std::vector<const MethodTiming*>& ts) {
  MethodTiming out = *ts[0];
  for (size_t i = 1; i < ts.size(); ++i) {
    const MethodTiming& t = *ts[i];
    out.wall_s = std::max(out.wall_s, t.wall_s), out.train_s = std::max(out.train_s, t.train_s);
    out.eval_s = std::max(out.eval_s, t.eval_s), out.epoch_s = std::max(out.epoch_s, t.epoch_s);
    out.seed_steps_per_s += t.seed_steps_per_s;
    for (size_t k = 0; k < out.stages.size() && k < t.stages.size(); ++k)
      out.stages[k].s = std::max(out.stages[k].s, t.stages[k].s);
  }
  return out;
}

}  // namespace

std::pair<int, int> parse_seed_range(const std::string& text, const std::string& flag) {
  const size_t colon = text.find(':');
  auto bad = [&] { return std::invalid_argument(flag + " '" + text + "': expected A:B, global seed indices A <= i < B"); };
  if (colon == std::string::npos) throw bad();
  int v[2];
  const std::string parts[2] = {text.substr(0, colon), text.substr(colon + 1)};
  for (int i = 0; i < 2; ++i) {
    double d = 0;
    try {
      d = parse_number(parts[i], flag);
    } catch (const std::invalid_argument&) {
      throw bad();
    }
    if (d != double(int(d)) || d < 0) throw bad();
    v[i] = int(d);
  }
  if (v[0] >= v[1]) throw std::invalid_argument(flag + " " + text + " is empty: A must be below B");
  return {v[0], v[1]};
}

json shard_part(const StudyConfig& cfg, const Dataset& data, const RunEnvironment& env, const StudyResult& result) {
  json j = results_json(cfg, data, env, result);
  j["schema"] = kShardSchema;
  json& shard = j["shard"];
  shard["seed_range"] = {cfg.seed_begin, cfg.last_seed()};
  shard["class_counts"] = result.class_counts;
  shard["evidence"] = json::object();
  for (const auto& [method, ev] : result.evidence) shard["evidence"][method] = evidence_json(ev);
  return j;
}

MergedStudy merge_shards(const std::vector<ShardFile>& shards) {
  if (shards.empty()) throw std::invalid_argument("merge: no shard files given");
  for (const ShardFile& f : shards)
    if (f.doc.value("schema", std::string()) != kShardSchema)
      throw std::invalid_argument(f.name + " is not a shard (schema '" + f.doc.value("schema", std::string()) +
                                  "', expected '" + kShardSchema + "'): write shards with --seed-range");
  const json& config = shards[0].doc.at("config");
  for (const ShardFile& f : shards)
    if (f.doc.at("config") != config)
      throw std::invalid_argument(f.name + " is a shard of another study than " + shards[0].name + ": " +
                                  json_difference(f.doc.at("config"), config) + " (" + f.name + "'s vs " +
                                  shards[0].name + "'s)");
  // Per p, every shard's part, in seed order.
  std::vector<std::vector<json>> parts_of;
  for (const ShardFile& f : shards) parts_of.push_back(study_parts(f.doc));
  const size_t n_parts = parts_of[0].size();
  MergedStudy merged;
  std::vector<json> out_parts;
  json shard_list = json::array();
  for (size_t p = 0; p < n_parts; ++p) {
    std::vector<ShardPart> parts;
    for (size_t i = 0; i < shards.size(); ++i) parts.push_back(read_part(shards[i].name, parts_of[i].at(p)));
    std::sort(parts.begin(), parts.end(), [](const ShardPart& a, const ShardPart& b) { return a.begin < b.begin; });
    const int seeds = config.at("seeds");
    int next = 0;
    for (size_t i = 0; i < parts.size(); ++i) {
      const ShardPart& sp = parts[i];
      if (sp.begin < next)
        throw std::invalid_argument(sp.file + " and " + parts[i - 1].file + " both hold seeds " +
                                    std::to_string(sp.begin) + ".." + std::to_string(std::min(next, sp.end) - 1));
      if (sp.begin > next)
        throw std::invalid_argument("seeds " + std::to_string(next) + ".." + std::to_string(sp.begin - 1) +
                                    " are in no shard given (--seed-range " + std::to_string(next) + ":" +
                                    std::to_string(sp.begin) + " is missing)");
      next = sp.end;
    }
    if (next != seeds)
      throw std::invalid_argument("seeds " + std::to_string(next) + ".." + std::to_string(seeds - 1) +
                                  " of the study's " + std::to_string(seeds) + " are in no shard given (--seed-range " +
                                  std::to_string(next) + ":" + std::to_string(seeds) + " is missing)");
    StudyResult r;
    r.methods = parts[0].result.methods;
    r.class_counts = parts[0].result.class_counts;
    for (const std::string& method : r.methods) {
      std::vector<const MethodTiming*> ts;
      MethodSeedEvidence& ev = r.evidence[method];
      for (ShardPart& sp : parts) {
        if (sp.result.methods != r.methods)
          throw std::invalid_argument(sp.file + " ran other methods than " + parts[0].file);
        ts.push_back(&sp.result.timing.at(method));
        MethodSeedEvidence& e = sp.result.evidence.at(method);
        for (auto& [set, v] : e.predictions) ev.predictions[set].insert(ev.predictions[set].end(), v.begin(), v.end());
        for (auto& [set, v] : e.saliency_sums)
          ev.saliency_sums[set].insert(ev.saliency_sums[set].end(), v.begin(), v.end());
        if (!e.afr_p_counts.empty()) {
          ev.afr_p_counts.resize(e.afr_p_counts.size(), 0.0);
          for (size_t k = 0; k < e.afr_p_counts.size(); ++k) ev.afr_p_counts[k] += e.afr_p_counts[k];
        }
      }
      r.timing[method] = combined_timing(ts);
    }
    for (const std::string& method : r.methods)  // seed-major within each method, as run_study orders them
      for (ShardPart& sp : parts)
        for (RunRecord& run : sp.result.runs)
          if (run.method == method) r.runs.push_back(std::move(run));
    compute_cross_seed(r);
    const json& first = parts_of[0][p];
    out_parts.push_back(results_json(first.at("config"), first.at("environment"), r));
    merged.ps.push_back(first.at("config").at("spurious").at("p").get<float>());
    merged.parts.push_back(std::move(r));
    if (p == 0)
      for (const ShardPart& sp : parts)
        shard_list.push_back({{"file", sp.file}, {"seed_range", {sp.begin, sp.end}}, {"environment", sp.environment}});
  }
  merged.doc = study_document(std::move(out_parts));
  merged.doc["shards"] = std::move(shard_list);
  merged.steps = config.at("steps");
  return merged;
}

}  // namespace sb
