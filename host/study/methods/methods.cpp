// The list of methods (study/methods/methods.h).
#include "study/methods/methods.h"

namespace sb {

const std::vector<Method>& study_methods() {
  static const std::vector<Method> methods = {
      {"erm-base", "ERM on D_base", run_erm_base},
      {"erm", "ERM on D_sp", run_erm},
      {"dfr", "last-layer retraining on D_base, the paper's variant", run_dfr},
      {"dfr-source", "last-layer retraining on D_base, the source's variant", run_dfr_source},
      {"afr", "automatic feature reweighting, the paper's variant", run_afr, true},
      {"afr-source", "automatic feature reweighting, the source's variant", run_afr_source},
  };
  return methods;
}

const Method* find_method(const std::string& name) {
  for (const Method& m : study_methods())
    if (m.name == name) return &m;
  return nullptr;
}

}  // namespace sb
