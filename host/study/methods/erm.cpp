// ERM (study.md §4.1): the ConvBase trained from the PyTorch-default initialisation, on D_base (erm-base, the
// shortcut-free reference) or on D_sp (erm, the model the head-only fixes start from).
#include "study/methods/methods.h"
#include "study/runner.h"

namespace sb {

void run_erm_base(Study& st, MethodRun& run) {
  const std::vector<float>& params = st.erm_base_model(run.name, run.tm, run.records);  // one D_base for all seeds
  st.finish(run.name, params, st.base_set, run.records, run.evidence, run.tm);
}

void run_erm(Study& st, MethodRun& run) {
  const std::vector<float>& params = st.erm_model(run.name, run.tm, run.records);
  st.finish(run.name, params, st.sp_set, run.records, run.evidence, run.tm);
}

}  // namespace sb
