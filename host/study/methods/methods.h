// The study's methods (study.md §4), one file each: erm.cpp (erm-base, erm), dfr.cpp (dfr, dfr-source, and the
// probes probe-erm, probe-base), afr.cpp (afr, afr-source, and the bound afr-oracle), listed once in methods.cpp. The command line's help, the configuration's validation and
// run_study's dispatch all read that list. Each method is written against the stages of study/runner.h.
#pragma once
#include <string>
#include <vector>

#include "study/study.h"

namespace sb {

struct Study;

// One method's run over all seeds: what it reports into.
struct MethodRun {
  std::string name;   // as reported: the method's name, or afr@N in a stage-1 sweep
  std::string sweep;  // "@N" in a stage-1 sweep, else empty: afr@N and afr-oracle@N share stage 1 "afr@N"
  int stage1_steps;   // training steps of the method's own ERM (AFR: stage 1)
  std::vector<RunRecord>& records;  // (S), seed_index and method already set
  MethodSeedEvidence& evidence;  // what the seeds contribute to the cross-seed statistics
  MethodTiming& tm;
};

struct Method {
  std::string name;
  std::string summary;              // a few words for --help
  void (*run)(Study& study, MethodRun& run);
  bool stage1_sweep = false;        // --afr-stage1-steps N1,N2,... runs it once per N, as name@N
  // --save-features writes this method's features on its training set: the kept set its network trained on (a
  // method found finished in a run folder writes them again from its saved parameters).
  enum class Features { none, d_base, d_sp } features = Features::none;
};

// Every method, in the order the main job runs them.
const std::vector<Method>& study_methods();
// The method of that name, or null.
const Method* find_method(const std::string& name);

void run_erm_base(Study& study, MethodRun& run);  // erm.cpp
void run_erm(Study& study, MethodRun& run);
void run_dfr(Study& study, MethodRun& run);  // dfr.cpp
void run_dfr_source(Study& study, MethodRun& run);
void run_probe_erm(Study& study, MethodRun& run);
void run_probe_base(Study& study, MethodRun& run);
void run_afr(Study& study, MethodRun& run);  // afr.cpp
void run_afr_source(Study& study, MethodRun& run);
void run_afr_oracle(Study& study, MethodRun& run);

}  // namespace sb
