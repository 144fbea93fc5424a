// Long-format records (docs/results-format.md): one row per (p, seed_index, method, set, point, step, metric, group)
// for every evaluation point of training (point "curve") and the final model (point "final"), groups being the
// classes and "all", so that pandas.read_csv and one groupby draw any curve with seed bands. --records FILE writes
// CSV or JSON Lines, by FILE's extension.
#pragma once
#include <string>

#include "study/study.h"

namespace sb {

enum class RecordFormat { csv, jsonl };

// By extension: .csv or .jsonl; std::invalid_argument otherwise.
RecordFormat record_format_of(const std::string& path);

// The rows of one study (one p, `steps` training steps); header: the CSV's column names first (a sweep appends blocks
// without).
std::string records_text(float p, int steps, const StudyResult& result, RecordFormat format, bool header);

}  // namespace sb
