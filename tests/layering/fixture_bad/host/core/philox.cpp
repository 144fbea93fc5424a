#include "core/philox.h"
// #include "cpu/conv_cpu.h"  (a commented-out include is not read)
