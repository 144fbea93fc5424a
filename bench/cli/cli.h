// The bench_spurious command line. Library code throws; this layer turns errors into one line on
// stderr and a non-zero exit status.
#pragma once

namespace sb {
int run_cli(int argc, char** argv);
}
