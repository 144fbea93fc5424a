// Reading a whole file, for every floor that reads one (data, run folders, shard merging).
#pragma once
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>

namespace sb {

// The file's bytes; throws std::runtime_error "cannot open PATH: reason" when it cannot be opened.
inline std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path + ": " + std::strerror(errno));
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// The file's bytes, or an empty string when it cannot be opened (for files that may be absent).
inline std::string read_file_if_present(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return {};
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

}  // namespace sb
