// `bench_spurious generate`: the MNIST-1D generator (generator.h) as a subcommand that writes
// x_train.npy, x_test.npy (float64), y_train.npy, y_test.npy (int32), t.npy and generator.json.
#pragma once
#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "data/generator.h"

namespace sb {

class StagedDir;

struct GenerateCommand {
  CLI::App* app = nullptr;  // the subcommand
  GeneratorConfig cfg;
  std::string out;
};

// Adds `generate` with a flag for every GeneratorConfig field to app. After app.parse():
//   if (generate_parsed(*cmd)) return run_generate(*cmd);
std::shared_ptr<GenerateCommand> add_generate_command(CLI::App& app);
bool generate_parsed(const GenerateCommand& cmd);

// Validates every parameter and the output path before generating anything, then writes the set.
// Throws std::invalid_argument / std::runtime_error with a one-line reason; on error nothing is written.
int run_generate(GenerateCommand& cmd);

// Writes the set's files into out's staging folder and commits it (report/staged_dir.h): a failure leaves no partial set.
void write_generated_set(const GeneratedSet& set, StagedDir& out);

}  // namespace sb
