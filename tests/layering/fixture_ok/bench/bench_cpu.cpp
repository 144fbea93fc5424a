#include "cli/cli.h"
#include "cpu/conv_cpu.h"
int main() { conv_cpu(); }
