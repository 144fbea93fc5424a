// A run folder (--run-dir DIR, --resume DIR): what lets a study survive preemption or a crash. It holds
//   run.json        the configuration that must match on resume, and the command that started the run;
//   journal.jsonl   one line per saved unit (a training checkpoint, a finished method, the erm model), each line
//                   ending in the sha256 of its text and naming its file and that file's sha256;
//   *.safetensors   the units' files: parameters, Adam moments and the step of a training; a finished method's
//                   parameters with its runs, evidence and timing as metadata (readable by any safetensors reader).
// Files are written atomically (temporary name, fsync, rename) before their journal line is appended and synced, so
// a kill at any moment leaves the last good state. On load a damaged line or file (its checksum) is reported and the
// previous good one used, never silently loaded. The two newest checkpoints of each training are kept.
#pragma once
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "study/study.h"

namespace sb {

// SIGINT and SIGTERM (Slurm's preemption signal) from now on only set a flag that stop_signal() reads, so a study
// with a run folder can finish its step, checkpoint and exit 128 + the signal.
void install_stop_signals();
int stop_signal();  // the signal received, or 0

class RunDir final : public StudyStore {
 public:
  // A new run in dir (which must not exist, or be empty), or (resume) the run there, whose configuration must equal
  // `config` (else std::invalid_argument naming the differing settings). command: the arguments that started it.
  RunDir(const std::string& dir, bool resume, const nlohmann::json& config, const std::vector<std::string>& command,
         int checkpoint_every);

  const std::string& dir() const { return dir_; }
  const std::vector<std::string>& command() const { return command_; }  // as saved by the run that made the folder
  int units() const { return int(journal_.size()); }  // journal entries (for "resuming: N saved units")

  // Keys of the study that runs next get this prefix (one per p of a sweep: "p0.9/").
  void set_prefix(const std::string& prefix) { prefix_ = prefix; }
  // An MPI job's ranks agree on what to load and when to stop (every rank calls these alike): min and max over ranks.
  void set_agreement(std::function<int(int)> min_all, std::function<int(int)> max_all) {
    min_all_ = std::move(min_all), max_all_ = std::move(max_all);
  }
  // Where damaged lines and files are reported (default: stderr).
  void set_warn(std::function<void(const std::string&)> warn) { warn_ = std::move(warn); }

  int checkpoint_every() const override { return every_; }
  bool stop_requested() const override;
  void save_training(const std::string& key, const TrainingCheckpoint& c) override;
  bool load_training(const std::string& key, TrainingCheckpoint& c) override;
  void save_method(const std::string& key, const MethodOutputs& m) override;
  bool load_method(const std::string& key, MethodOutputs& m) override;
  void save_model(const std::string& key, const SavedModel& m) override;
  bool load_model(const std::string& key, SavedModel& m) override;

 private:
  struct Entry {
    std::string key, kind, file, sha256;
    int step = 0;
  };
  // The file's bytes if its checksum matches the entry's, else reported and empty.
  bool read_checked(const Entry& e, std::string& bytes) const;
  void append(const Entry& e);
  // Writes a unit's file, then its journal line.
  void save_unit(const std::string& key, const std::string& kind, int step, const std::string& bytes);
  // The newest good file of a (key, kind) unit; false when there is none (or, in an MPI job, a rank has none).
  bool load_unit(const std::string& key, const std::string& kind, std::string& bytes) const;
  void keep_newest(const std::string& key, const std::string& kind, size_t n);
  std::string file_name(const std::string& key, const std::string& kind, int step) const;

  std::string dir_;
  nlohmann::json config_;  // the run's configuration (equal to run.json's): the data's sizes for a method's evidence
  std::vector<std::string> command_;
  int every_;
  std::string prefix_;
  std::vector<Entry> journal_;
  std::function<int(int)> min_all_ = [](int v) { return v; }, max_all_ = [](int v) { return v; };
  std::function<void(const std::string&)> warn_;
};

}  // namespace sb
