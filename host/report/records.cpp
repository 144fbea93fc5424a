#include "report/records.h"

#include <cmath>
#include <stdexcept>

#include "core/text_util.h"

namespace sb {
namespace {

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

class Rows {
 public:
  Rows(RecordFormat f, std::string p) : format_(f), p_(std::move(p)) {}
  // The key of the rows that follow.
  void key(int seed, const std::string& method, const std::string& set, const char* point, int step) {
    if (format_ == RecordFormat::csv) {
      prefix_ = strprintf("%s,%d,%s,%s,%s,%d,", p_.c_str(), seed, method.c_str(), set.c_str(), point, step);
    } else {
      prefix_ = strprintf("{\"p\":%s,\"seed_index\":%d,\"method\":\"%s\",\"set\":\"%s\",\"point\":\"%s\",\"step\":%d,",
                          p_.c_str(), seed, method.c_str(), set.c_str(), point, step);
    }
  }
  void row(const char* metric, const std::string& group, double v) {
    out_ += prefix_;
    const std::string value = std::isfinite(v) ? strprintf("%.9g", v) : "";
    if (format_ == RecordFormat::csv) {
      out_ += strprintf("%s,%s,%s\n", metric, group.c_str(), value.c_str());
    } else {
      out_ += strprintf("\"metric\":\"%s\",\"group\":\"%s\",\"value\":%s}\n", metric, group.c_str(),
                        value.empty() ? "null" : value.c_str());
    }
  }
  void metrics(const SetMetrics& m) {
    row("accuracy", "all", m.accuracy);
    for (size_t k = 0; k < m.per_group_accuracy.size(); ++k) row("accuracy", std::to_string(k), m.per_group_accuracy[k]);
    row("worst_group_accuracy", "all", m.worst_group_accuracy);
    row("loss", "all", m.loss);
  }
  std::string& text() { return out_; }

 private:
  RecordFormat format_;
  std::string p_, prefix_, out_;
};

}  // namespace

RecordFormat record_format_of(const std::string& path) {
  if (ends_with(path, ".csv")) return RecordFormat::csv;
  if (ends_with(path, ".jsonl")) return RecordFormat::jsonl;
  throw std::invalid_argument("--records " + path + ": the name must end in .csv or .jsonl (the format)");
}

std::string records_text(float p, int steps, const StudyResult& result, RecordFormat format, bool header) {
  Rows rows(format, float_text(p));
  if (header && format == RecordFormat::csv) rows.text() = "p,seed_index,method,set,point,step,metric,group,value\n";
  for (const RunRecord& r : result.runs) {
    for (const CurvePoint& c : r.curves)
      for (const std::string& set : study_sets()) {
        rows.key(r.seed_index, r.method, set, "curve", c.step);
        rows.metrics(c.sets.at(set));
      }
    // The final model after its ERM training's steps (AFR: stage 1's) and, for DFR and AFR, the head's refit.
    const int final_step = r.has_afr ? r.afr_stage1_steps : steps;
    for (const std::string& set : study_sets()) {
      rows.key(r.seed_index, r.method, set, "final", final_step);
      rows.metrics(r.metrics.at(set));
      auto it = r.shortcut_reliance.find(set);
      if (it != r.shortcut_reliance.end()) rows.row("shortcut_reliance", "all", it->second);
    }
  }
  return std::move(rows.text());
}

}  // namespace sb
