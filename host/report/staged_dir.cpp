#include "report/staged_dir.h"

#include <unistd.h>

#include <filesystem>
#include <stdexcept>
#include <system_error>

namespace sb {

namespace fs = std::filesystem;

namespace {

fs::path folder_path(const std::string& dir) {
  if (dir.empty()) throw std::invalid_argument("an output folder name is empty");
  fs::path out = fs::path(dir).lexically_normal();
  if (!out.has_filename()) out = out.parent_path();  // "out/" -> "out"
  return out;
}

}  // namespace

StagedDir::StagedDir(const std::string& dir, bool must_be_new) : dir_(dir) {
  const fs::path out = folder_path(dir);
  std::error_code ec;
  if (fs::exists(out, ec)) {
    if (!fs::is_directory(out, ec)) throw std::runtime_error("cannot write " + dir + ": it exists and is not a folder");
    if (must_be_new && !fs::is_empty(out, ec))
      throw std::runtime_error("cannot write " + dir + ": the folder exists and is not empty (name a new one)");
  }
  staging_ = out.string() + ".tmp." + std::to_string(::getpid());
  fs::remove_all(staging_, ec);
  // Not create_directories: a missing parent is an error to report, not a tree to make (and leave behind).
  if (!fs::create_directory(staging_, ec) && ec) throw std::runtime_error("cannot write " + dir + ": " + ec.message());
}

StagedDir::~StagedDir() {
  if (committed_) return;
  std::error_code ec;
  fs::remove_all(staging_, ec);
}

std::string StagedDir::path(const std::string& file) const { return (fs::path(staging_) / file).string(); }

void StagedDir::commit() {
  const fs::path out = folder_path(dir_);
  std::error_code ec;
  try {
    if (fs::exists(out, ec) && fs::is_directory(out, ec) && fs::is_empty(out, ec)) fs::remove(out);
    if (!fs::exists(out, ec)) {
      fs::rename(staging_, out);  // one step: the folder appears complete or not at all
    } else {
      for (const auto& entry : fs::directory_iterator(staging_)) fs::rename(entry.path(), out / entry.path().filename());
      fs::remove(staging_);
    }
  } catch (const fs::filesystem_error& e) {
    throw std::runtime_error("cannot write " + dir_ + ": " + e.code().message());
  }
  committed_ = true;
}

}  // namespace sb
