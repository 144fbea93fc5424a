#pragma once
#include <CLI/CLI.hpp>
