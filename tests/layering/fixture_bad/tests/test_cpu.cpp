#include "test_paths.h"
#include "cpu/conv_cpu.h"
#include "cli/cli.h"
#include "kernels/conv1d.h"
