#include "scale/mpi_job.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#ifdef SB_HAVE_MPI
#include <mpi.h>
#endif

namespace sb {
bool mpi_available() {
#ifdef SB_HAVE_MPI
  return true;
#else
  return false;
#endif
}

bool mpi_launched() {
  // Open MPI's mpirun sets OMPI_COMM_WORLD_SIZE; PMI-2 launchers (srun --mpi=pmi2, MPICH) PMI_SIZE; a PMIx srun only
  // PMIX_RANK, with Slurm's task count beside it. A cluster whose srun speaks PMIx by default sets these for every
  // program, so one task (a --seed-range shard of a job array) is not an MPI job.
  auto more_than_one = [](const char* name) {
    const char* v = std::getenv(name);
    return v && std::atoi(v) > 1;
  };
  return more_than_one("OMPI_COMM_WORLD_SIZE") || more_than_one("PMI_SIZE") ||
         (std::getenv("PMIX_RANK") && more_than_one("SLURM_STEP_NUM_TASKS"));
}

int mpi_launch_rank() {
  for (const char* name : {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"})
    if (const char* v = std::getenv(name)) return std::atoi(v);
  return 0;
}

std::pair<int, int> mpi_share(int begin, int end, int rank, int size) {
  const int n = end - begin, base = n / size, extra = n % size;  // the first `extra` ranks take one seed more
  const int first = begin + rank * base + std::min(rank, extra);
  return {first, first + base + (rank < extra ? 1 : 0)};
}

#ifdef SB_HAVE_MPI

MpiJob::MpiJob() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) MPI_Init(nullptr, nullptr);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  MPI_Comm node;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node);
  MPI_Comm_rank(node, &local_rank_);
  MPI_Comm_size(node, &local_size_);
  MPI_Comm_free(&node);
}

MpiJob::~MpiJob() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

std::vector<double> MpiJob::sum_at_root(const std::vector<double>& v) const {
  std::vector<double> sum(v.size(), 0.0);
  MPI_Reduce(v.data(), sum.data(), int(v.size()), MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
  return sum;
}

int MpiJob::min_over_ranks(int v) const {
  int out = v;
  MPI_Allreduce(&v, &out, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  return out;
}

int MpiJob::max_over_ranks(int v) const {
  int out = v;
  MPI_Allreduce(&v, &out, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return out;
}

std::optional<MergedStudy> MpiJob::gather_and_merge(const nlohmann::json& shard_doc) const {
  const std::string text = shard_doc.dump();
  const int n = int(text.size());
  std::vector<int> sizes(size_), offsets(size_);
  MPI_Gather(&n, 1, MPI_INT, sizes.data(), 1, MPI_INT, 0, MPI_COMM_WORLD);
  std::string all;
  if (rank_ == 0) {
    size_t total = 0;
    for (int r = 0; r < size_; ++r) offsets[r] = int(total), total += size_t(sizes[r]);
    all.resize(total);
  }
  MPI_Gatherv(text.data(), n, MPI_CHAR, all.data(), sizes.data(), offsets.data(), MPI_CHAR, 0, MPI_COMM_WORLD);
  if (rank_ != 0) return std::nullopt;
  std::vector<ShardFile> shards;
  for (int r = 0; r < size_; ++r)
    shards.push_back({"rank " + std::to_string(r), nlohmann::json::parse(all.substr(offsets[r], sizes[r]))});
  return merge_shards(shards);
}

void MpiJob::abort(const std::string& message, int code) const {
  std::fprintf(stderr, "bench_spurious: error: MPI rank %d of %d: %s\n", rank_, size_, message.c_str());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, code);
  std::exit(code);  // MPI_Abort does not return; for the compiler
}

#else  // a build without MPI

MpiJob::MpiJob() {
  throw std::runtime_error(
      "this process was started by mpirun, but this build has no MPI support: install libopenmpi-dev (Debian) and "
      "rebuild, or run shards with --seed-range (docs/scaling.md)");
}
MpiJob::~MpiJob() = default;
std::vector<double> MpiJob::sum_at_root(const std::vector<double>& v) const { return v; }
int MpiJob::min_over_ranks(int v) const { return v; }
int MpiJob::max_over_ranks(int v) const { return v; }
std::optional<MergedStudy> MpiJob::gather_and_merge(const nlohmann::json&) const { return std::nullopt; }
void MpiJob::abort(const std::string& message, int code) const {
  std::fprintf(stderr, "bench_spurious: error: %s\n", message.c_str());
  std::exit(code);
}

#endif

}  // namespace sb
