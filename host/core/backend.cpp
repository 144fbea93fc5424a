// The argument checks every backend makes (core/backend.h).
#include "core/backend.h"

#include <stdexcept>
#include <string>

namespace sb {

void check_set(const std::string& who, const float* x, const int32_t* labels, int N, int classes) {
  if (N < 1) throw std::invalid_argument(who + ": the set is empty");
  if (!x || !labels) throw std::invalid_argument(who + ": null set data");
  for (int i = 0; i < N; ++i)
    if (labels[i] < 0 || labels[i] >= classes)
      throw std::invalid_argument(who + ": label " + std::to_string(labels[i]) + " of sample " + std::to_string(i) +
                                  " outside [0, " + std::to_string(classes) + ")");
}

void check_spurious_source(const std::string& who, bool per_seed, const int32_t* labels, int N,
                           const SpuriousConfig& cfg, int length, int classes) {
  if (per_seed) throw std::invalid_argument(who + ": the spurious transform starts from a shared set");
  validate(cfg, length);
  for (int i = 0; i < N; ++i)
    if (labels[i] < 0 || labels[i] >= cfg.classes || labels[i] >= classes)
      throw std::invalid_argument(who + ": label " + std::to_string(labels[i]) + " of sample " + std::to_string(i) +
                                  " outside the spurious transform's " + std::to_string(cfg.classes) + " classes");
}

void check_set_id(const std::string& who, int id, size_t sets, bool have_train_set) {
  if (id == Backend::kTrainingSet) {
    if (!have_train_set) throw std::logic_error(who + ": the training set is used before there is one (train_on)");
    return;
  }
  if (id < 0 || size_t(id) >= sets)
    throw std::out_of_range(who + ": no kept set " + std::to_string(id) + " (" + std::to_string(sets) +
                            " added since the last reset)");
}

void check_train_step(const std::string& who, const int32_t* batch_index, int S, int B, int N) {
  if (N == 0) throw std::logic_error(who + ": train_step before a training set (train_on or set_train_data)");
  if (B < 1 || B > N)
    throw std::invalid_argument(who + ": batch of " + std::to_string(B) + " from a training set of " +
                                std::to_string(N));
  if (!batch_index) throw std::invalid_argument(who + ": null batch rows");
  for (size_t i = 0; i < size_t(S) * B; ++i)
    if (batch_index[i] < 0 || batch_index[i] >= N)
      throw std::out_of_range(who + ": batch row " + std::to_string(batch_index[i]) + " outside [0, " +
                              std::to_string(N) + ")");
}

}  // namespace sb
