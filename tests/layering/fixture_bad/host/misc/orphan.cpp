#include "core/philox.h"
