// bench_spurious: the spurious-correlation study on MNIST-1D, many seeds at once. See --help.
#include "cli/cli.h"

int main(int argc, char** argv) { return sb::run_cli(argc, argv); }
