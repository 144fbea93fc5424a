// `bench_spurious toy`: the regression toy (host/study/toy.h) from the command line. bench/cli/cli.cpp adds the
// subcommand and runs it when parsed; errors are exceptions it prints as one line.
#pragma once
#include <memory>

namespace CLI {
class App;
}

namespace sb {

struct ToyCommand;
std::shared_ptr<ToyCommand> add_toy_command(CLI::App& app);  // adds the subcommand `toy` with all its flags
bool toy_parsed(const ToyCommand& cmd);
int run_toy(ToyCommand& cmd);  // may throw std::exception

}  // namespace sb
