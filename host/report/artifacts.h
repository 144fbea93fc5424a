// The study's models and features as safetensors files (report/safetensors.h) that PyTorch and numpy load
// (docs/python.md), one file per (p, method), every tensor with the seed as its leading dimension:
//   --save-models DIR:   DIR/<method>.p<p>.safetensors           PyTorch ConvBase state_dict names and layouts
//   --save-features DIR: DIR/<method>.p<p>.features.safetensors  the head's inputs on the training and test sets
#pragma once
#include <string>
#include <vector>

#include "data/data.h"
#include "study/study.h"

namespace sb {

// "erm.p0.9.safetensors", "erm.p0.9.features.safetensors" (p as the decimal the user typed).
std::string model_file_name(const std::string& method, float p);
std::string features_file_name(const std::string& method, float p);

// params (S, P) of seeds 0..S-1 as conv1.weight [S, C, 1, 5], conv1.bias [S, C], conv2.weight [S, C, C, 3],
// conv2.bias, conv3.weight [S, C, C, 3], conv3.bias, linear.weight [S, K, C * L3], linear.bias [S, K] (a DFR or AFR
// head is the linear.* it replaces); metadata: schema, method, p, seed_indices, config (JSON), git_commit.
void write_model_file(const std::string& path, const StudyConfig& cfg, const Dataset& data, const std::string& method,
                      const std::vector<float>& params);

// Per set <name>: <name>.features [S, n, F] (F32), <name>.labels [n] (I32), <name>.planted [S, n] (U8: 1 where the
// spurious block was planted), <name>.planted_class [S, n] (I32: the planted block's class, -1 none).
void write_features_file(const std::string& path, const StudyConfig& cfg, const Dataset& data,
                         const std::string& method, const std::vector<FeatureSetOut>& sets);

}  // namespace sb
