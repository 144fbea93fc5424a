// Results of a study as JSON (docs/results-format.md), per-seed CSV and a summary table.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "study/study.h"

namespace sb {

struct RunEnvironment {
  std::string backend, device;
  int threads = 0;
};

// The configuration block of every file a study writes (results JSON, the safetensors files' metadata).
nlohmann::json config_json(const StudyConfig& cfg, const Dataset& data);
// Float settings as the decimals the user typed (core/text_util.h float_setting), e.g. a run's p values.
nlohmann::json floats_json(const std::vector<float>& v);
// The commit this binary was built from (with -dirty when the tree had changes).
const char* git_commit();

// The whole results document of one p, schema "spurious-bench/results/v1".
nlohmann::json results_json(const StudyConfig& cfg, const Dataset& data, const RunEnvironment& env,
                            const StudyResult& result);
// The same from the blocks it is made of (a merge has the configuration only as JSON).
nlohmann::json results_json(const nlohmann::json& config, const nlohmann::json& environment, const StudyResult& result);
nlohmann::json environment_json(const RunEnvironment& env);

// One run's record (results_json's "runs" entries) and one method's timing ("timing" entries, without the FLOP
// figures), and their inverses (std::runtime_error naming the first missing or mistyped field).
nlohmann::json run_record_json(const RunRecord& r);
RunRecord run_record_from_json(const nlohmann::json& j);
nlohmann::json timing_json(const MethodTiming& t);
nlohmann::json curves_json(const std::vector<CurvePoint>& points);  // a record's "curves"
std::vector<CurvePoint> curves_from_json(const nlohmann::json& j);
MethodTiming timing_from_json(const nlohmann::json& j);

// The document of a study over one p (that p's results_json) or a sweep over several: one configuration with
// spurious.p_sweep and a "sweep" entry per p. Each part's extra top-level blocks (a shard's "shard") go along.
nlohmann::json study_document(std::vector<nlohmann::json> parts);
// Its inverse: one results_json-shaped part per p.
std::vector<nlohmann::json> study_parts(const nlohmann::json& doc);

// The runs, the methods (in the order run) and the timing of one part, read back as results_json wrote them; the
// cross-seed statistics are not read (compute_cross_seed makes them from the seeds' evidence). Throws
// std::runtime_error naming the first missing or mistyped field.
StudyResult study_result_from_json(const nlohmann::json& part);

// One row per (seed_index, method, set) with the final metrics, p first (sweeps append blocks).
std::string results_csv(const StudyResult& result, double p, bool header = true);

// Mean ± std [min, max] per method and set, for the terminal.
std::string summary_table(const StudyResult& result);

// Writes through a temporary file in the same folder, fsync and rename(), so readers never see a partial file.
void write_file_atomic(const std::string& path, const std::string& content);
// The same for a file made of several pieces of memory (not copied), written in order.
struct FilePart {
  const void* data;
  size_t size;
};
void write_file_atomic(const std::string& path, const std::vector<FilePart>& parts);

// Fails early (before hours of training) if `path` cannot be created: throws with the reason.
void check_writable(const std::string& path);

// The cross-seed table of the main job's terminal output: underspecification, disagreement, how often a method beats
// erm, shortcut reliance.
std::string cross_seed_table(const StudyResult& result);
// One line per method: wall time, training rate and the seconds of every stage.
std::string timing_table(const StudyResult& result, const ConvBaseShape& shape, int batch);

}  // namespace sb
