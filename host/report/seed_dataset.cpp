// `bench_spurious dataset`'s writer (report/seed_dataset.h).
#include "report/seed_dataset.h"

#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <system_error>

#include "core/spurious_config.h"
#include "data/npy.h"
#include "report/report.h"

namespace sb {

namespace fs = std::filesystem;

void write_seed_dataset(const StudyConfig& cfg, const Dataset& data, uint32_t seed_index, const std::string& out_dir) {
  validate(cfg.spurious, data.length);
  SeedData sd = make_seed_data(cfg, data, seed_index);

  fs::path out(out_dir);
  std::error_code ec;
  if (fs::exists(out, ec) && !fs::is_directory(out, ec))
    throw std::runtime_error("cannot write " + out_dir + ": it exists and is not a folder");
  fs::path staging = fs::path(out_dir + ".tmp." + std::to_string(::getpid()));
  if (!fs::create_directories(staging, ec) && ec)
    throw std::runtime_error("cannot write " + out_dir + ": " + ec.message());
  try {
    const size_t N = data.n_train, NT = data.n_test, L = data.length;
    write_npy((staging / "x_train.npy").string(), sd.train.data(), {N, L});
    write_npy((staging / "y_train.npy").string(), data.y_train.data(), {N});
    write_npy((staging / "planted_train.npy").string(), sd.planted_train.data(), {N});
    write_npy((staging / "x_test_clean.npy").string(), data.x_test.data(), {NT, L});
    write_npy((staging / "x_test_aligned.npy").string(), sd.test_aligned.data(), {NT, L});
    write_npy((staging / "x_test_conflicting.npy").string(), sd.test_conflicting.data(), {NT, L});
    write_npy((staging / "planted_test_conflicting.npy").string(), sd.planted_conflicting.data(), {NT});
    write_npy((staging / "y_test.npy").string(), data.y_test.data(), {NT});
    nlohmann::json meta = {{"schema", "spurious-bench/dataset/v1"},
                           {"seed", cfg.seed},
                           {"seed_index", seed_index},
                           {"p", cfg.spurious.p},
                           {"noise_mean", cfg.spurious.mean},
                           {"noise_sd", cfg.spurious.sd},
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
    write_file_atomic((staging / "dataset.json").string(), meta.dump(1) + "\n");
    fs::create_directories(out, ec);
    if (ec) throw std::runtime_error("cannot write " + out_dir + ": " + ec.message());
    for (const auto& entry : fs::directory_iterator(staging)) fs::rename(entry.path(), out / entry.path().filename());
    fs::remove(staging);
  } catch (...) {
    fs::remove_all(staging, ec);
    throw;
  }
}

}  // namespace sb
