#include "cli/generate_cli.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "data/npy.h"
#include "report/report.h"
#include "sb_git_commit.h"  // generated at build time: SB_GIT_COMMIT

namespace sb {
namespace {

namespace fs = std::filesystem;

// "dir/" and "dir" name the same folder; the staging folder must sit next to it, not inside.
fs::path folder_path(const std::string& out_dir) {
  if (out_dir.empty()) throw std::invalid_argument("generate: --out is empty");
  fs::path out = fs::path(out_dir).lexically_normal();
  if (!out.has_filename()) out = out.parent_path();
  return out;
}

void check_output_folder(const std::string& out_dir) {
  const fs::path out = folder_path(out_dir);
  std::error_code ec;
  if (fs::exists(out, ec) && !fs::is_directory(out, ec))
    throw std::runtime_error("cannot write " + out_dir + ": it exists and is not a folder");
}

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

void write_generated_set(const GeneratedSet& set, const std::string& out_dir) {
  const fs::path out = folder_path(out_dir);
  check_output_folder(out_dir);
  std::error_code ec;
  const fs::path staging = fs::path(out.string() + ".tmp." + std::to_string(::getpid()));
  fs::remove_all(staging, ec);
  if (!fs::create_directories(staging, ec) && ec) throw std::runtime_error("cannot write " + out_dir + ": " + ec.message());
  try {
    const size_t NT = set.n_train, NE = set.n_test, L = set.length;
    write_npy((staging / "x_train.npy").string(), set.x.data(), {NT, L});
    write_npy((staging / "x_test.npy").string(), set.x.data() + NT * L, {NE, L});
    write_npy((staging / "y_train.npy").string(), set.y.data(), {NT});
    write_npy((staging / "y_test.npy").string(), set.y.data() + NT, {NE});
    write_npy((staging / "t.npy").string(), set.t.data(), {L});
    write_file_atomic((staging / "generator.json").string(), generator_json(set).dump(1) + "\n");
    if (!fs::exists(out, ec)) {
      fs::rename(staging, out);  // one step: the folder appears complete or not at all
    } else {
      for (const auto& entry : fs::directory_iterator(staging)) fs::rename(entry.path(), out / entry.path().filename());
      fs::remove(staging);
    }
  } catch (const fs::filesystem_error& e) {
    fs::remove_all(staging, ec);
    throw std::runtime_error("cannot write " + out_dir + ": " + e.code().message());
  } catch (...) {
    fs::remove_all(staging, ec);
    throw;
  }
}

int run_generate(GenerateCommand& cmd) {
  validate(cmd.cfg);
  check_output_folder(cmd.out);
  const GeneratedSet set = generate_mnist1d(cmd.cfg);
  write_generated_set(set, cmd.out);
  std::printf("wrote MNIST-1D (%d train / %d test, length %d, seed %lld) to %s\n", set.n_train, set.n_test,
              set.length, static_cast<long long>(cmd.cfg.seed), cmd.out.c_str());
  return 0;
}

}  // namespace sb
