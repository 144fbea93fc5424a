// The list of methods (study/methods/methods.h).
#include "study/methods/methods.h"

namespace sb {

const std::vector<Method>& study_methods() {
  static const std::vector<Method> methods = {
      {"erm-base", "ERM on D_base", run_erm_base, false, Method::Features::d_base},
      {"erm", "ERM on D_sp", run_erm, false, Method::Features::d_sp},
      {"dfr", "last-layer retraining on D_base, the paper's variant", run_dfr},
      {"dfr-source", "last-layer retraining on D_base, the source's variant", run_dfr_source},
      {"afr", "automatic feature reweighting, the paper's variant", run_afr, true},
      {"afr-source", "automatic feature reweighting, the source's variant", run_afr_source},
      // Not methods but measurements (issue 14; not in the default list): what a head-only fix could get at best.
      {"probe-erm", "linear probe on erm's frozen features fitted on all of D_base: DFR's upper bound", run_probe_erm},
      {"probe-base", "linear probe on erm-base's frozen features fitted on all of D_base", run_probe_base},
      {"afr-oracle", "AFR with its grid point and epoch chosen on the clean test set: an upper bound, not a method",
       run_afr_oracle, true},
  };
  return methods;
}

const Method* find_method(const std::string& name) {
  for (const Method& m : study_methods())
    if (m.name == name) return &m;
  return nullptr;
}

}  // namespace sb
