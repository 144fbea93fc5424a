// Test doubles of the study's collaborators: a StudyStore in memory (that can ask the study to stop), and a backend
// that poisons one seed with NaN (to make it diverge). Used by test_resume.cpp and test_diverged.cpp.
#pragma once
#include <algorithm>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "study/backends.h"
#include "study/study.h"

namespace sb::test_doubles {

// Keeps everything in memory; asks the study to stop at the `stop_after`-th time it asks (0: never).
class MemoryStore final : public StudyStore {
 public:
  int stop_after = 0, trainings_saved = 0, trainings_loaded = 0, methods_loaded = 0;
  int checkpoint_every() const override { return 7; }
  bool stop_requested() const override { return stop_after > 0 && ++asked == stop_after; }
  mutable int asked = 0;
  void save_training(const std::string& k, const TrainingCheckpoint& c) override { training[k] = c, ++trainings_saved; }
  bool load_training(const std::string& k, TrainingCheckpoint& c) override {
    auto it = training.find(k);
    if (it == training.end()) return false;
    c = it->second, ++trainings_loaded;
    return true;
  }
  void save_method(const std::string& k, const MethodOutputs& m) override { methods[k] = m; }
  bool load_method(const std::string& k, MethodOutputs& m) override {
    auto it = methods.find(k);
    if (it == methods.end()) return false;
    m = it->second, ++methods_loaded;
    return true;
  }
  void save_model(const std::string& k, const SavedModel& m) override { models[k] = m; }
  bool load_model(const std::string& k, SavedModel& m) override {
    auto it = models.find(k);
    if (it == models.end()) return false;
    m = it->second;
    return true;
  }

 private:
  std::map<std::string, TrainingCheckpoint> training;
  std::map<std::string, MethodOutputs> methods;
  std::map<std::string, SavedModel> models;
};

// The CPU backend, except that at its `poison_step`-th training step of a training it sets seed `seed`'s parameters
// to NaN (the other seeds' parameters and Adam state restored exactly).
class PoisoningBackend final : public Backend {
 public:
  PoisoningBackend(int seed, int poison_step) : inner_(make_backend("cpu", 1)), seed_(seed), poison_step_(poison_step) {}
  std::string name() const override { return inner_->name(); }
  std::string device() const override { return inner_->device(); }
  int threads() const override { return inner_->threads(); }
  void reset(const ConvBaseShape& shape, int S, const float* params, const AdamConfig& adam) override {
    shape_ = shape, S_ = S, steps_ = 0;
    inner_->reset(shape, S, params, adam);
  }
  void load_params(const float* params) override { steps_ = 0, inner_->load_params(params); }
  void get_params(float* params) const override { inner_->get_params(params); }
  void get_adam_state(float* m, float* v, int* step) const override { inner_->get_adam_state(m, v, step); }
  void set_adam_state(const float* m, const float* v, int step) override { inner_->set_adam_state(m, v, step); }
  int add_set(const float* x, const int32_t* labels, int N, bool per_seed) override {
    return inner_->add_set(x, labels, N, per_seed);
  }
  int add_spurious_set(SpuriousSetKind kind, const SpuriousConfig& cfg, int clean, uint64_t base_seed, uint32_t seed0,
                       int32_t* planted) override {
    return inner_->add_spurious_set(kind, cfg, clean, base_seed, seed0, planted);
  }
  void train_on(int set) override { inner_->train_on(set); }
  void train_step(const int32_t* batch_index, int B, float lr, float* loss) override {
    if (++steps_ == poison_step_) {
      const size_t P = shape_.num_params();
      std::vector<float> p(size_t(S_) * P), m(p.size()), v(p.size());
      int t = 0;
      inner_->get_params(p.data());
      inner_->get_adam_state(m.data(), v.data(), &t);
      std::fill_n(p.begin() + size_t(seed_) * P, P, std::numeric_limits<float>::quiet_NaN());
      inner_->load_params(p.data());
      inner_->set_adam_state(m.data(), v.data(), t);
    }
    inner_->train_step(batch_index, B, lr, loss);
  }
  void evaluate_set(int id, SetMetrics* out, int8_t* pred) override { inner_->evaluate_set(id, out, pred); }
  void set_features(int id, float* z) override { inner_->set_features(id, z); }
  void set_saliency(int id, float* sal) override { inner_->set_saliency(id, sal); }
  void predict(const float* x, int N, bool per_seed, float* logits) override { inner_->predict(x, N, per_seed, logits); }
  void features(const float* x, int N, bool per_seed, float* z) override { inner_->features(x, N, per_seed, z); }
  void saliency(const float* x, const int32_t* labels, int N, bool per_seed, float* sal) override {
    inner_->saliency(x, labels, N, per_seed, sal);
  }

 private:
  std::unique_ptr<Backend> inner_;
  int seed_, poison_step_, S_ = 0, steps_ = 0;
  ConvBaseShape shape_{};
};

}  // namespace sb::test_doubles
