// `bench_spurious dataset`'s writer (report/seed_dataset.h).
#include "report/seed_dataset.h"

#include <nlohmann/json.hpp>
#include <stdexcept>

#include "core/spurious_config.h"
#include "core/text_util.h"
#include "data/npy.h"
#include "report/report.h"
#include "report/staged_dir.h"

namespace sb {

void write_seed_dataset(const StudyConfig& cfg, const Dataset& data, uint32_t seed_index, const std::string& out_dir) {
  validate(cfg.spurious, data.length);
  SeedData sd = make_seed_data(cfg, data, seed_index);

  StagedDir out(out_dir, false);
  const size_t N = data.n_train, NT = data.n_test, L = data.length;
  write_npy(out.path("x_train.npy"), sd.train.data(), {N, L});
  write_npy(out.path("y_train.npy"), data.y_train.data(), {N});
  write_npy(out.path("planted_train.npy"), sd.planted_train.data(), {N});
  write_npy(out.path("x_test_clean.npy"), data.x_test.data(), {NT, L});
  write_npy(out.path("x_test_aligned.npy"), sd.test_aligned.data(), {NT, L});
  write_npy(out.path("x_test_conflicting.npy"), sd.test_conflicting.data(), {NT, L});
  write_npy(out.path("planted_test_conflicting.npy"), sd.planted_conflicting.data(), {NT});
  write_npy(out.path("y_test.npy"), data.y_test.data(), {NT});
  nlohmann::json meta = {{"schema", "spurious-bench/dataset/v1"},
                         {"seed", cfg.seed},
                         {"seed_index", seed_index},
                         {"p", float_setting(cfg.spurious.p)},
                         {"noise_mean", float_setting(cfg.spurious.mean)},
                         {"noise_sd", float_setting(cfg.spurious.sd)},
                         {"block_stride", cfg.spurious.stride},
                         {"block_width", cfg.spurious.width},
                         {"noise_draw", to_string(cfg.spurious.draw)},
                         {"class_noise_values", class_noise_values(cfg.spurious, cfg.seed, seed_index)},
                         {"data_source", data.source},
                         {"files",
                          {{"x_train.npy", "D_sp training inputs (float32, N x L)"},
                           {"y_train.npy", "training labels (int32)"},
                           {"planted_train.npy", "class whose block was planted in each training sample, -1 if none"},
                           {"x_test_clean.npy", "clean test inputs"},
                           {"x_test_aligned.npy", "test inputs with the training transform at p = 1"},
                           {"x_test_conflicting.npy", "test inputs with another class's block planted"},
                           {"planted_test_conflicting.npy", "class whose block was planted in each conflicting sample"},
                           {"y_test.npy", "test labels (int32)"}}}};
  write_file_atomic(out.path("dataset.json"), meta.dump(1) + "\n");
  out.commit();
}

}  // namespace sb
