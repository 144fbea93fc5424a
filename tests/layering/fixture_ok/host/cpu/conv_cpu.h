#pragma once
#include "core/philox.h"
void conv_cpu();
