#include "core/philox.h"
#include <CLI/CLI.hpp>
