// An MPI job: `mpirun -np N bench_spurious ...` runs N ranks; each trains a contiguous share of the study's seeds
// (share()), rank 0 gathers the ranks' shard documents and merges them (shard.h), so it writes exactly what one
// process would. Open MPI is optional: a build without it (SB_HAVE_MPI unset) still knows when it was started by
// mpirun, and refuses to run as N copies of the whole study.
#pragma once
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "scale/shard.h"

namespace sb {

// Whether this build can run MPI jobs.
bool mpi_available();

// Whether an MPI launcher (Open MPI's mpirun, or a PMI launcher such as srun) started this process as one of several
// ranks; read from the environment, before MPI is initialised. A launch of one rank runs as a plain process.
bool mpi_launched();

// This process's rank as the launcher's environment says (0 when not launched by MPI): before MPI is initialised,
// to let only rank 0 report an error every rank meets alike (a bad flag).
int mpi_launch_rank();

// Rank `rank` of `size`'s share of the seeds [begin, end): contiguous, in rank order, sizes differing by at most one.
std::pair<int, int> mpi_share(int begin, int end, int rank, int size);

class MpiJob {
 public:
  MpiJob();  // MPI_Init; std::runtime_error in a build without MPI
  ~MpiJob();  // MPI_Finalize
  MpiJob(const MpiJob&) = delete;
  MpiJob& operator=(const MpiJob&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  int local_rank() const { return local_rank_; }  // rank among the ranks on this node (which GPU it takes)
  int local_size() const { return local_size_; }  // ranks on this node (how many share its cores)

  // Sums v over the ranks; the sum arrives at rank 0 (a collective: every rank calls it as often, in the same order).
  std::vector<double> sum_at_root(const std::vector<double>& v) const;

  // The least and the greatest of v over the ranks, at every rank (collectives, as sum_at_root).
  int min_over_ranks(int v) const;
  int max_over_ranks(int v) const;

  // Every rank's shard document, gathered at rank 0 and merged there (merge_shards); the other ranks get nothing.
  std::optional<MergedStudy> gather_and_merge(const nlohmann::json& shard_doc) const;

  // Stops every rank of the job (MPI_Abort) after printing this rank's message: for a failure that happened on this
  // rank only, so that no rank waits forever for it.
  [[noreturn]] void abort(const std::string& message, int code) const;

 private:
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
};

}  // namespace sb
