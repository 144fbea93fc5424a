#include "cli/generate_cli.h"

#include <cstdio>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "data/npy.h"
#include "report/report.h"
#include "report/staged_dir.h"
#include "sb_git_commit.h"  // generated at build time: SB_GIT_COMMIT

namespace sb {
namespace {

nlohmann::json generator_json(const GeneratedSet& set) {
  const GeneratorConfig& c = set.cfg;
  return {{"schema", "spurious-bench/generator/v1"},
          {"generator", "MNIST-1D (Greydanus & Kobak), numpy legacy RandomState port (docs/mnist1d-generator.md)"},
          {"version", SB_VERSION},
          {"git_commit", SB_GIT_COMMIT},
          {"params",
           {{"seed", c.seed},
            {"num_samples", c.num_samples},
            {"train_split", c.train_split},
            {"template_len", c.template_len},
            {"padding_min", c.padding_min},
            {"padding_max", c.padding_max},
            {"scale_coeff", c.scale_coeff},
            {"max_translation", c.max_translation},
            {"corr_noise_scale", c.corr_noise_scale},
            {"iid_noise_scale", c.iid_noise_scale},
            {"shear_scale", c.shear_scale},
            {"shuffle_seq", c.shuffle_seq},
            {"final_seq_length", c.final_seq_length}}},
          {"n_train", set.n_train},
          {"n_test", set.n_test},
          {"length", set.length},
          {"norm_mean", set.norm_mean},
          {"norm_std", set.norm_std},
          {"files",
           {{"x_train.npy", "training inputs (float64, n_train x length), normalised over the whole set"},
            {"y_train.npy", "training labels (int32, 0..9)"},
            {"x_test.npy", "test inputs (float64, n_test x length)"},
            {"y_test.npy", "test labels (int32, 0..9)"},
            {"t.npy", "x axis for plots (float64, length)"}}}};
}

}  // namespace

std::shared_ptr<GenerateCommand> add_generate_command(CLI::App& app) {
  auto cmd = std::make_shared<GenerateCommand>();
  GeneratorConfig& c = cmd->cfg;
  CLI::App* sub = app.add_subcommand(
      "generate",
      "Generate an MNIST-1D variant with the original generator's random draws, as .npy files; the defaults "
      "reproduce the canonical set. Train on it with --data DIR");
  sub->add_option("--out", cmd->out, "Output folder (written all-or-nothing)")->required();
  sub->add_option("--seed", c.seed, "numpy legacy seed, 0 .. 2^32-1")->capture_default_str();
  sub->add_option("--num-samples", c.num_samples, "Train + test samples, a multiple of 10")->capture_default_str();
  sub->add_option("--train-split", c.train_split, "Fraction of rows in the train set, in (0, 1)")
      ->capture_default_str();
  sub->add_option("--template-len", c.template_len, "Working length is template-len + padding-max")
      ->capture_default_str();
  sub->add_option("--padding-min", c.padding_min, "Fewest zeros appended to a template")->capture_default_str();
  sub->add_option("--padding-max", c.padding_max, "Most zeros appended to a template")->capture_default_str();
  sub->add_option("--scale-coeff", c.scale_coeff, "Amplitude factor is 1 + scale-coeff * (u - 0.5)")
      ->capture_default_str();
  sub->add_option("--max-translation", c.max_translation, "Circular shift uniform in [0, max-translation)")
      ->capture_default_str();
  sub->add_option("--corr-noise-scale", c.corr_noise_scale, "Scale of the smoothed background noise")
      ->capture_default_str();
  sub->add_option("--iid-noise-scale", c.iid_noise_scale, "Scale of the per-point noise")->capture_default_str();
  sub->add_option("--shear-scale", c.shear_scale, "Shear coefficient is shear-scale * (u - 0.5)")
      ->capture_default_str();
  sub->add_flag("--shuffle-seq", c.shuffle_seq, "Also permute the positions (one permutation for the whole set)");
  sub->add_option("--final-seq-length", c.final_seq_length, "Length of every output sample")->capture_default_str();
  cmd->app = sub;
  return cmd;
}

bool generate_parsed(const GenerateCommand& cmd) { return cmd.app && cmd.app->parsed(); }

void write_generated_set(const GeneratedSet& set, StagedDir& out) {
  const size_t NT = set.n_train, NE = set.n_test, L = set.length;
  write_npy(out.path("x_train.npy"), set.x.data(), {NT, L});
  write_npy(out.path("x_test.npy"), set.x.data() + NT * L, {NE, L});
  write_npy(out.path("y_train.npy"), set.y.data(), {NT});
  write_npy(out.path("y_test.npy"), set.y.data() + NT, {NE});
  write_npy(out.path("t.npy"), set.t.data(), {L});
  write_file_atomic(out.path("generator.json"), generator_json(set).dump(1) + "\n");
  out.commit();
}

int run_generate(GenerateCommand& cmd) {
  validate(cmd.cfg);
  StagedDir out(cmd.out, false);  // checked before generating
  const GeneratedSet set = generate_mnist1d(cmd.cfg);
  write_generated_set(set, out);
  std::printf("wrote MNIST-1D (%d train / %d test, length %d, seed %lld) to %s\n", set.n_train, set.n_test,
              set.length, static_cast<long long>(cmd.cfg.seed), cmd.out.c_str());
  return 0;
}

}  // namespace sb
