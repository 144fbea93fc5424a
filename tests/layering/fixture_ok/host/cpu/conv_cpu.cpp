#include "cpu/conv_cpu.h"
#include "core/philox.h"
#include "sb_git_commit.h"
#include <vector>
void conv_cpu() {}
