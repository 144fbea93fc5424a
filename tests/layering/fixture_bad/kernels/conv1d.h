#pragma once
#include "core/philox.h"
void conv1d_cuda();
