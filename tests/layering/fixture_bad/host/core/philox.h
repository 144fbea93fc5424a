#pragma once
#include <cstdint>
inline std::uint32_t philox(std::uint32_t x) { return x * 2654435761u; }
