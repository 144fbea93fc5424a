#include "report/artifacts.h"

#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>

#include "core/model.h"
#include "core/text_util.h"
#include "report/report.h"
#include "report/safetensors.h"

namespace sb {
namespace {

// Metadata every file of a study carries (safetensors metadata values are strings).
void describe(SafetensorsWriter& w, const char* schema, const StudyConfig& cfg, const Dataset& data,
              const std::string& method) {
  nlohmann::json seeds = nlohmann::json::array();
  for (int s = cfg.seed_begin; s < cfg.last_seed(); ++s) seeds.push_back(s);
  w.metadata("format", "pt");  // what transformers-style loaders look for; the tensors load into PyTorch as they are
  w.metadata("schema", schema);
  w.metadata("method", method);
  w.metadata("p", float_text(cfg.spurious.p));
  w.metadata("seed_indices", seeds.dump());
  w.metadata("config", config_json(cfg, data).dump());
  w.metadata("git_commit", git_commit());
}

}  // namespace

std::string model_file_name(const std::string& method, float p) { return method + ".p" + float_text(p) + ".safetensors"; }

std::string features_file_name(const std::string& method, float p) {
  return method + ".p" + float_text(p) + ".features.safetensors";
}

void write_model_file(const std::string& path, const StudyConfig& cfg, const Dataset& data, const std::string& method,
                      const std::vector<float>& params) {
  const ConvBaseShape sh{cfg.channels, data.length, data.classes};
  const int64_t S = cfg.local_seeds(), C = sh.channels, K = sh.classes, F = sh.feature_dim();
  const size_t P = sh.num_params();
  struct Piece {
    const char* name;
    size_t offset;
    std::vector<int64_t> shape;  // without the seed dimension
  };
  const std::vector<Piece> pieces = {
      {"conv1.weight", sh.off_w1(), {C, 1, ConvBaseShape::k1}}, {"conv1.bias", sh.off_b1(), {C}},
      {"conv2.weight", sh.off_w2(), {C, C, ConvBaseShape::k2}}, {"conv2.bias", sh.off_b2(), {C}},
      {"conv3.weight", sh.off_w3(), {C, C, ConvBaseShape::k3}}, {"conv3.bias", sh.off_b3(), {C}},
      {"linear.weight", sh.off_wh(), {K, F}},                   {"linear.bias", sh.off_bh(), {K}},
  };
  // One seed's parameters are one flat buffer in state_dict order; a tensor of all seeds is a strided gather.
  std::vector<std::vector<float>> stacked;
  SafetensorsWriter w;
  describe(w, "spurious-bench/model/v1", cfg, data, method);
  for (const Piece& piece : pieces) {
    size_t n = 1;
    for (int64_t d : piece.shape) n *= size_t(d);
    std::vector<float> t(size_t(S) * n);
    for (int64_t s = 0; s < S; ++s)
      std::copy_n(params.data() + size_t(s) * P + piece.offset, n, t.data() + size_t(s) * n);
    std::vector<int64_t> shape = {S};
    shape.insert(shape.end(), piece.shape.begin(), piece.shape.end());
    stacked.push_back(std::move(t));
    w.add(piece.name, stacked.back().data(), shape);
  }
  w.write(path);
}

void write_features_file(const std::string& path, const StudyConfig& cfg, const Dataset& data,
                         const std::string& method, const std::vector<FeatureSetOut>& sets) {
  const ConvBaseShape sh{cfg.channels, data.length, data.classes};
  const int64_t S = cfg.local_seeds(), F = sh.feature_dim();
  std::map<std::string, std::vector<uint8_t>> masks;
  std::map<std::string, std::vector<int32_t>> none;  // planted_class of a set with nothing planted
  SafetensorsWriter w;
  describe(w, "spurious-bench/features/v1", cfg, data, method);
  w.metadata("features", "flattened conv3 output after ReLU (the head's input), index c * L3 + l, as PyTorch's "
                         "h.flatten(1)");
  for (const FeatureSetOut& set : sets) {
    const size_t rows = size_t(S) * set.n;
    const int32_t* planted = set.planted_class;
    if (!planted) {
      none[set.name].assign(rows, -1);
      planted = none[set.name].data();
    }
    std::vector<uint8_t>& mask = masks[set.name];
    mask.resize(rows);
    for (size_t i = 0; i < rows; ++i) mask[i] = planted[i] >= 0;
    w.add(set.name + ".features", set.z, {S, set.n, F});
    w.add(set.name + ".labels", set.labels, {set.n});
    w.add(set.name + ".planted", mask.data(), {S, set.n});
    w.add(set.name + ".planted_class", planted, {S, set.n});
  }
  w.write(path);
}

}  // namespace sb
