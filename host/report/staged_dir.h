// An output folder written through a staging folder next to it (DIR.tmp.<pid>) and moved into place by commit(): a
// failure, an exception or an interrupted run never leaves a half-written DIR. Used by every writer of a folder
// (`generate`, `dataset`, --save-models, --save-features).
#pragma once
#include <string>

namespace sb {

class StagedDir {
 public:
  // Checks DIR at once, before any work: it must not be a file, and with must_be_new not a folder with files in it
  // (an empty one is fine); its parent must be writable (the staging folder is made now). Throws with the reason.
  StagedDir(const std::string& dir, bool must_be_new);
  ~StagedDir();  // removes the staging folder unless committed
  StagedDir(const StagedDir&) = delete;
  StagedDir& operator=(const StagedDir&) = delete;

  // Path of `file` inside the staging folder.
  std::string path(const std::string& file) const;
  // Moves the staged files into DIR: in one rename when DIR does not exist, else file by file (replacing same-named
  // files of an existing DIR, which must_be_new excludes).
  void commit();
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_, staging_;
  bool committed_ = false;
};

}  // namespace sb
