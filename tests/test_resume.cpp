// A study stopped and run again with the same StudyStore goes on where it stopped, and its results are bitwise those
// of a run that never stopped: on the CPU backend, and on the device backends (Adam's moments and step cross the
// checkpoint; on a GPU, or on the CPU emulation of CUDA in tests/emu/).
#include <gtest/gtest.h>

#include <map>
#include <memory>

#include "cuda_test_util.h"
#include "data/data.h"
#include "report/report.h"
#include "study/backends.h"
#include "study/study.h"
#include "study_doubles.h"

namespace sb {
namespace {

using test_doubles::MemoryStore;


StudyConfig small_config() {
  StudyConfig cfg;
  cfg.seeds = 2, cfg.steps = 30, cfg.eval_every = 10, cfg.batch = 50;
  cfg.methods = {"erm-base", "erm", "dfr", "afr"};
  cfg.afr.epochs = 5, cfg.afr.gammas = {0, 4}, cfg.afr.lambdas = {0};
  cfg.dfr.subsamples = 2;
  cfg.saliency = true;
  return cfg;
}

// Everything of a result but its timing, as text.
std::string numbers_of(const StudyResult& r) {
  nlohmann::json j;
  for (const RunRecord& run : r.runs) j["runs"].push_back(run_record_json(run));
  for (const auto& [m, ev] : r.evidence) {
    for (const auto& [set, p] : ev.predictions) j["pred"][m][set] = p;
    for (const auto& [set, s] : ev.saliency_sums) j["sal"][m][set] = s;
    j["afr"][m] = ev.afr_p_counts;
  }
  return j.dump();
}

// Stops the study at each of `stops` (the n-th time it asks whether to stop, counted from its start), then runs it to
// the end; the result must equal an uninterrupted run's.
void expect_resume_exact(const std::string& backend_name, const std::vector<int>& stops,
                         const StudyConfig& cfg = small_config()) {
  const Dataset data = load_dataset("");
  std::unique_ptr<Backend> backend = make_backend(backend_name, 1);
  const std::string reference = numbers_of(run_study(cfg, data, *backend));
  for (int stop : stops) {
    MemoryStore store;
    store.stop_after = stop;
    EXPECT_THROW(run_study(cfg, data, *backend, {}, {}, {}, &store), StudyStopped) << "stop " << stop;
    store.stop_after = 0;
    const std::string resumed = numbers_of(run_study(cfg, data, *backend, {}, {}, {}, &store));
    EXPECT_EQ(resumed, reference) << backend_name << ": stopped at the " << stop << "-th question";
    EXPECT_GT(store.trainings_loaded + store.methods_loaded, 0) << "stop " << stop << ": nothing was resumed";
  }
}

// The study asks after every step but a training's last, and after every method: erm-base's steps 1..29 are the
// first 29 questions, the 30th follows erm-base, erm's steps are the 31st to 59th, and so on.
TEST(Resume, CpuBitwiseAtEveryKindOfStop) { expect_resume_exact("cpu", {5, 14, 29, 30, 45, 60, 61, 75, 90}); }

// --save-features hands out erm-base's and erm's features once per method, also when the method was finished in the
// store before the stop (then from its saved parameters): the same bytes as an uninterrupted run's.
TEST(Resume, FeaturesOfMethodsFinishedBeforeTheStop) {
  const Dataset data = load_dataset("");
  std::unique_ptr<Backend> backend = make_backend("cpu", 1);
  StudyConfig cfg = small_config();
  cfg.methods = {"erm-base", "erm", "dfr"};
  using Features = std::map<std::string, std::vector<float>>;  // "method set" -> z
  const size_t F = ConvBaseShape{cfg.channels, data.length, data.classes}.feature_dim();
  auto collect = [F](Features& into) {
    StudySinks sinks;
    sinks.features = [&into, F](const std::string& method, const std::vector<FeatureSetOut>& sets) {
      for (const FeatureSetOut& f : sets) {
        std::vector<float>& z = into[method + " " + f.name];
        ASSERT_TRUE(z.empty()) << method << " " << f.name << " handed out twice";
        z.assign(f.z, f.z + size_t(2) * f.n * F);
      }
    };
    return sinks;
  };
  Features reference;
  run_study(cfg, data, *backend, {}, {}, collect(reference));
  ASSERT_EQ(reference.size(), 8u);
  for (int stop : {30, 45}) {  // after erm-base; inside erm's training
    MemoryStore store;
    store.stop_after = stop;
    Features first, second;
    EXPECT_THROW(run_study(cfg, data, *backend, {}, {}, collect(first), &store), StudyStopped);
    store.stop_after = 0;
    run_study(cfg, data, *backend, {}, {}, collect(second), &store);
    EXPECT_EQ(second, reference) << "stop " << stop;
  }
}

// The device backends: one training stopped half-way (what crosses the checkpoint is the backend's Adam state), small
// enough for the CPU emulation of CUDA.
StudyConfig device_config() {
  StudyConfig cfg = small_config();
  cfg.methods = {"erm"}, cfg.steps = 20, cfg.saliency = false;
  return cfg;
}

TEST(Resume, CudaBitwise) {
  SB_SKIP_WITHOUT_CUDA("resuming the cuda backend is");
  expect_resume_exact("cuda", {9}, device_config());
}

TEST(Resume, CudnnBitwise) {
  SB_SKIP_WITHOUT_CUDA("resuming the cudnn backend is");
  expect_resume_exact("cudnn", {9}, device_config());
}

TEST(Resume, CheckpointsEveryNSteps) {
  const Dataset data = load_dataset("");
  StudyConfig cfg = small_config();
  cfg.methods = {"erm"};
  std::unique_ptr<Backend> backend = make_backend("cpu", 1);
  MemoryStore store;
  run_study(cfg, data, *backend, {}, {}, {}, &store);
  EXPECT_EQ(store.trainings_saved, 4);  // steps 7, 14, 21, 28 of 30 (none at the end: the method is saved)
}

}  // namespace
}  // namespace sb
