// Small text helpers shared by the command-line front ends and the reports.
#pragma once
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace sb {

// The entries of a comma-separated flag value ("erm,dfr"). An empty entry ("erm,,dfr", a leading or trailing comma)
// is refused with std::invalid_argument naming the flag, and so is a repeated one unless repeats mean something (a
// list of layer sizes, a pair A,B).
inline std::vector<std::string> split_list(const std::string& s, const std::string& flag, bool repeats_allowed = false) {
  std::vector<std::string> out;
  size_t begin = 0;
  while (true) {
    const size_t end = s.find(',', begin);
    const std::string item = s.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
    if (item.empty()) throw std::invalid_argument(flag + ": empty entry in '" + s + "'");
    if (!repeats_allowed)
      for (const std::string& seen : out)
        if (seen == item) throw std::invalid_argument(flag + ": '" + item + "' is listed twice in '" + s + "'");
    out.push_back(item);
    if (end == std::string::npos) break;
    begin = end + 1;
  }
  return out;
}

// The whole of s as a number, or std::invalid_argument naming the flag.
inline double parse_number(const std::string& s, const std::string& flag) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != s.size()) throw std::invalid_argument(flag + ": '" + s + "' is not a number");
  return v;
}

// printf into a std::string (terminal tables).
__attribute__((format(printf, 1, 2))) inline std::string strprintf(const char* fmt, ...) {
  va_list args, copy;
  va_start(args, fmt);
  va_copy(copy, args);
  const int n = std::vsnprintf(nullptr, 0, fmt, copy);
  va_end(copy);
  std::string out(n > 0 ? size_t(n) : 0, '\0');
  if (n > 0) std::vsnprintf(out.data(), out.size() + 1, fmt, args);
  va_end(args);
  return out;
}

// A float setting as the decimal the user typed ("0.01", not "0.009999999776"): 7 significant digits.
inline std::string float_text(float f) { return strprintf("%.7g", f); }
// The same as the double nearest that decimal, for JSON (0.9, not 0.8999999761581421).
inline double float_setting(float f) { return std::strtod(float_text(f).c_str(), nullptr); }

// Now as ISO 8601 UTC, e.g. 2026-11-25T14:58:11Z.
inline std::string utc_now() {
  char buf[32];
  const std::time_t t = std::time(nullptr);
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

}  // namespace sb
