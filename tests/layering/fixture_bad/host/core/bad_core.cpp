// host/core is the ground floor: it may not look up.
#include "core/philox.h"
#include "cpu/conv_cpu.h"
