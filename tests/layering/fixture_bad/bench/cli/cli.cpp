#include "cli/cli.h"
#include "cpu/conv_cpu.h"
#include "kernels/conv1d.h"
