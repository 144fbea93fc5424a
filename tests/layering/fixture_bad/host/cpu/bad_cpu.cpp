#include "cpu/conv_cpu.h"
#include "cpu/missing.h"
// Bare same-folder include: must be spelled "cpu/conv_cpu.h".
#include "conv_cpu.h"
