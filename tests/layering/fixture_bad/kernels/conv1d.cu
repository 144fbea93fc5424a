#include "kernels/conv1d.h"
void conv1d_cuda() {}
