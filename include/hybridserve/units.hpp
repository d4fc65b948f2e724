// Byte sizes as people write them: 24GiB, 512MiB, 2G, 1e9, 1048576.
#pragma once
#include <cstdint>
#include <string>

#include "hybridserve/error.hpp"

namespace hs {

/// Parses a byte size: a number (decimal or with exponent) and an optional unit
/// (B, K/KB, M/MB, G/GB, T/TB = powers of 1000; KiB, MiB, GiB, TiB = powers of 1024).
result<int64_t> parse_bytes(const std::string& text);
/// 25769803776 -> "24.0 GiB".
std::string format_bytes(double bytes);

}  // namespace hs
