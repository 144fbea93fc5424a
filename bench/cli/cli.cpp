#include "cli/cli.h"

#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <climits>
#include <exception>
#include <csignal>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <type_traits>

#include "cli/generate_cli.h"
#include "cli/merge_cli.h"
#include "cli/toy_cli.h"
#include "core/backend.h"
#include "core/text_util.h"
#include "data/data.h"
#include "data/npy.h"
#include "report/artifacts.h"
#include "report/records.h"
#include "report/report.h"
#include "report/seed_dataset.h"
#include "report/staged_dir.h"
#include "scale/mpi_job.h"
#include "scale/run_dir.h"
#include "scale/shard.h"
#include "study/backends.h"
#include "study/methods/methods.h"
#include "study/study.h"

namespace sb {
namespace {

namespace fs = std::filesystem;

// Options shared by the main command and `dataset`: what the spurious transform does.
struct SpuriousFlags {
  std::string noise_draw = "class";
  void add(CLI::App& app, SpuriousConfig& sp, bool with_p = true) {
    if (with_p)
      app.add_option("--p", sp.p, "Fraction of each class that gets the planted feature, in [0, 1]")
          ->capture_default_str();
    app.add_option("--noise-mean", sp.mean, "Mean of the truncated normal noise (>= 0 part kept)")
        ->capture_default_str();
    app.add_option("--noise-sd", sp.sd, "Standard deviation of the truncated normal noise")->capture_default_str();
    app.add_option("--block-stride", sp.stride, "Block of class k starts at feature k*stride")->capture_default_str();
    app.add_option("--block-width", sp.width, "Features per block (clipped at the sequence end)")
        ->capture_default_str();
    app.add_option("--noise-draw", noise_draw,
                   "class: one value per class and seed; sample: one per planted sample; element: one per feature")
        ->capture_default_str();
  }
};

void print_progress(const std::string& method, int step, int steps, double clean, double loss, double rate) {
  std::fprintf(stderr, "[%s] step %d/%d  train loss %.4f  clean test acc %.4f  %.0f seed-steps/s\n", method.c_str(),
               step, steps, loss, clean, rate);
  std::fflush(stderr);
}

void print_note(const std::string& method, const std::string& what) {
  std::fprintf(stderr, "[%s] %s\n", method.c_str(), what.c_str());
  std::fflush(stderr);
}

// Numbers of a comma-separated list, with the flag named in the error.
template <class T>
std::vector<T> parse_list(const std::string& flag, const std::string& text) {
  std::vector<T> out;
  for (const std::string& item : split_list(text, flag)) {
    const double v = parse_number(item, flag);
    if (!std::isfinite(v)) throw std::invalid_argument(flag + ": '" + item + "' is not a number");
    if (std::is_integral<T>::value && v != std::floor(v))
      throw std::invalid_argument(flag + ": '" + item + "' is not an integer");
    if (std::find(out.begin(), out.end(), T(v)) != out.end())
      throw std::invalid_argument(flag + ": " + item + " is listed twice in '" + text + "'");
    out.push_back(T(v));
  }
  return out;
}

// Where the main job writes, besides the terminal.
struct Outputs {
  std::string json, csv, records, models, features;
};

double available_memory_bytes() {
  std::ifstream meminfo("/proc/meminfo");  // "MemAvailable:   20123456 kB"
  std::string line;
  while (std::getline(meminfo, line))
    if (line.rfind("MemAvailable:", 0) == 0) return std::strtod(line.c_str() + 13, nullptr) * 1024;
  return std::numeric_limits<double>::infinity();  // unknown: do not refuse
}

std::string gib(double bytes) { return strprintf("%.1f GiB", bytes / double(1 << 30)); }

// Refuses a run that cannot fit, before it starts, naming the flag that shrinks it.
void check_resources(const StudyConfig& cfg, const Dataset& data, const Outputs& out, size_t n_p) {
  const MemoryEstimate m = estimate_memory(cfg, data, !out.features.empty());
  const double available = available_memory_bytes();
  if (m.total() > available)
    throw std::invalid_argument(strprintf("this run needs about %s of memory, %s is available: lower %s",
                                          gib(m.total()).c_str(), gib(available).c_str(),
                                          m.model_bytes > m.data_bytes ? "--channels (or --seeds)" : "--seeds"));
  if (out.features.empty()) return;
  const double per_model = features_bytes(cfg, data);
  int models = 0;
  for (const std::string& mth : cfg.methods) models += mth == "erm" || mth == "erm-base";
  const double need = per_model * models * n_p;
  std::error_code ec;
  fs::path where = fs::absolute(fs::path(out.features), ec).parent_path();
  const fs::space_info space = fs::space(where, ec);
  if (!ec && need > double(space.available))
    throw std::runtime_error(strprintf("--save-features needs about %s on %s, %s is free", gib(need).c_str(),
                                       where.string().c_str(), gib(double(space.available)).c_str()));
}

// The study's tables for the terminal (one p).
void print_tables(const StudyConfig& cfg, const Dataset& data, const StudyResult& result) {
  std::cout << summary_table(result);
  std::fputs(cross_seed_table(result).c_str(), stdout);
  std::fputs(timing_table(result, ConvBaseShape{cfg.channels, data.length, data.classes}, cfg.batch).c_str(), stdout);
  std::fflush(stdout);
}

// What the main job runs as: one process, a --seed-range shard, or one rank of an MPI job (job set).
struct RunMode {
  bool shard = false;
  bool device_given = false;  // --device on the command line (else an MPI rank takes its local rank's GPU)
  MpiJob* job = nullptr;
  std::string run_dir;        // --run-dir or --resume: checkpoints and the journal of finished methods
  bool resume = false;
  int checkpoint_every = 0;
  std::vector<std::string> command;  // this process's arguments, saved in a new run folder
};

// An argument as the shell reads it back.
std::string shell_quoted(const std::string& a) {
  if (!a.empty() && a.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.,:/=@%+") ==
                        std::string::npos)
    return a;
  std::string q = "'";
  for (char c : a) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// The command that continues a run: the one that started it, with --resume in place of --run-dir.
std::string resume_command(const std::vector<std::string>& command, int mpi_ranks) {
  std::string out = mpi_ranks > 0 ? "mpirun -np " + std::to_string(mpi_ranks) + " " : "";
  for (size_t i = 0; i < command.size(); ++i) {
    std::string a = command[i];
    if (a == "--run-dir") a = "--resume";
    if (a.rfind("--run-dir=", 0) == 0) a = "--resume=" + a.substr(10);
    out += (i ? " " : "") + shell_quoted(a);
  }
  return out;
}

// Thrown on every rank of an MPI job when one rank's setup failed; that rank has said why.
struct JobSetupFailed {
  int code;
};

// Every rank learns whether a rank's setup failed; the first that did prints its reason (once, whether one rank or
// all failed), and all throw JobSetupFailed with the exit status (2 for a command line that cannot run, else 1).
void agree_on_setup(const MpiJob& job, std::exception_ptr error) {
  std::string message;
  int code = 0;
  if (error) try {
      std::rethrow_exception(error);
    } catch (const std::invalid_argument& e) {
      message = e.what(), code = 2;
    } catch (const std::exception& e) {
      message = e.what(), code = 1;
    }
  const int first = job.min_over_ranks(code ? job.rank() : INT_MAX);
  if (first == INT_MAX) return;
  const int all_code = job.max_over_ranks(code);
  const bool everyone = job.min_over_ranks(code ? 1 : 0) == 1;
  if (job.rank() == first)
    std::fprintf(stderr, "bench_spurious: error: %s%s\n",
                 everyone ? "" : strprintf("MPI rank %d of %d: ", job.rank(), job.size()).c_str(), message.c_str());
  throw JobSetupFailed{all_code};
}

int run_study_job(StudyConfig& cfg, const std::vector<float>& ps, const std::string& backend_name,
                  BackendOptions backend_options, const std::string& data_dir, const Outputs& out, bool quiet,
                  const RunMode& mode) {
  MpiJob* job = mode.job;
  const bool root = !job || job->rank() == 0;
  // Setup: everything that can be refused before training. In an MPI job a rank can fail here alone (its node's
  // memory, its run folder), so the ranks agree on whether one failed before any waits for the others.
  Dataset data;
  RecordFormat record_format = RecordFormat::csv;
  std::unique_ptr<RunDir> run_dir;
  std::unique_ptr<StagedDir> models, features;
  std::unique_ptr<Backend> backend;
  std::exception_ptr setup_error;
  try {
    data = load_dataset(data_dir);
    for (float p : ps) {
      cfg.spurious.p = p;
      validate(cfg, data);
    }
    if (job) {
      if (mode.shard) throw std::invalid_argument("--seed-range does not apply to an MPI job: mpirun splits --seeds");
      if (!out.models.empty() || !out.features.empty())
        throw std::invalid_argument("--save-models and --save-features are not available in an MPI job yet: run "
                                    "--seed-range shards instead (docs/scaling.md)");
      if (job->size() > cfg.seeds)
        throw std::invalid_argument(strprintf("%d MPI ranks for %d seeds: give every rank at least one seed",
                                              job->size(), cfg.seeds));
      std::tie(cfg.seed_begin, cfg.seed_end) = mpi_share(0, cfg.seeds, job->rank(), job->size());
      if (backend_name != "cpu" && !mode.device_given && cuda_device_count() > 0)
        backend_options.device = job->local_rank() % cuda_device_count();
      if (backend_options.threads == 0)  // the node's cores shared by its ranks, not all of them each
        backend_options.threads = std::max(1, int(std::thread::hardware_concurrency()) / job->local_size());
    }
    check_resources(cfg, data, out, ps.size());
    // The run folder: its configuration is everything that decides the numbers (a resume must match it).
    if (!mode.run_dir.empty()) {
      nlohmann::json run_config = config_json(cfg, data);
      run_config["spurious"]["p"] = floats_json(ps);
      run_config["seed_range"] = {cfg.seed_begin, cfg.last_seed()};
      run_config["backend"] = backend_name == "cudnn" ? "cudnn " + backend_options.cudnn_conv : backend_name;
      run_config["mpi_ranks"] = job ? job->size() : 0;
      std::string dir = mode.run_dir;
      if (job) {  // every rank its own folder inside
        std::error_code ec;
        if (!mode.resume) fs::create_directory(dir, ec);
        dir += "/rank-" + std::to_string(job->rank());
      }
      run_dir = std::make_unique<RunDir>(dir, mode.resume, run_config, mode.command, mode.checkpoint_every);
      if (job)
        run_dir->set_agreement([job](int v) { return job->min_over_ranks(v); },
                               [job](int v) { return job->max_over_ranks(v); });
      if (mode.resume && root && !quiet)
        std::fprintf(stderr, "bench_spurious: resuming %s (%d saved units)\n", mode.run_dir.c_str(), run_dir->units());
      install_stop_signals();
    }
    // Every output is checked before training: files can be created, folders are new (or empty) and staged.
    if (root)
      for (const std::string& f : {out.json, out.csv, out.records})
        if (!f.empty()) check_writable(f);
    record_format = out.records.empty() ? RecordFormat::csv : record_format_of(out.records);
    if (!out.models.empty()) models = std::make_unique<StagedDir>(out.models, true);
    if (!out.features.empty()) features = std::make_unique<StagedDir>(out.features, true);
    backend = make_backend(backend_name, backend_options);
  } catch (...) {
    setup_error = std::current_exception();
  }
  if (job) agree_on_setup(*job, setup_error);
  else if (setup_error) std::rethrow_exception(setup_error);
  RunEnvironment env{backend->name(), backend->device(), backend->threads()};

  StudySinks sinks;
  if (models)
    sinks.model = [&](const std::string& method, const std::vector<float>& params) {
      write_model_file(models->path(model_file_name(method, cfg.spurious.p)), cfg, data, method, params);
    };
  if (features)
    sinks.features = [&](const std::string& method, const std::vector<FeatureSetOut>& sets) {
      write_features_file(features->path(features_file_name(method, cfg.spurious.p)), cfg, data, method, sets);
    };
  // Progress: an MPI job's rank 0 prints the whole job's (every rank's numbers summed at each evaluation).
  ProgressFn progress = quiet ? ProgressFn{} : ProgressFn{print_progress};
  if (job && !quiet)
    progress = [&](const std::string& method, int step, int steps, double clean, double loss, double rate) {
      const double S = cfg.local_seeds();
      const std::vector<double> sum = job->sum_at_root({clean * S, loss * S, rate, S});
      if (root) print_progress(method, step, steps, sum[0] / sum[3], sum[1] / sum[3], sum[2]);
    };
  const NoteFn note = quiet || !root ? NoteFn{} : NoteFn{print_note};
  if (const char* r = std::getenv("SB_TEST_FAIL_RANK"); job && r && std::atoi(r) == job->rank())
    throw std::runtime_error("failure injected by SB_TEST_FAIL_RANK (a test of rank failures)");

  std::vector<nlohmann::json> parts;
  std::string csv, records;
  for (size_t i = 0; i < ps.size(); ++i) {
    cfg.spurious.p = ps[i];
    if (!quiet && root) {
      const std::string who = job ? strprintf("%d seeds over %d MPI ranks", cfg.seeds, job->size())
                              : mode.shard ? strprintf("seeds %d..%d of %d", cfg.seed_begin, cfg.last_seed() - 1, cfg.seeds)
                                           : strprintf("%d seeds", cfg.seeds);
      std::fprintf(stderr, "bench_spurious: %s x %d steps, methods %s, p %.3g%s, C %d, backend %s (%s, %d threads)\n",
                   who.c_str(), cfg.steps, CLI::detail::join(cfg.methods, ",").c_str(), cfg.spurious.p,
                   ps.size() > 1 ? (" (" + std::to_string(i + 1) + " of " + std::to_string(ps.size()) + ")").c_str() : "",
                   cfg.channels, backend->name().c_str(), backend->device().c_str(), backend->threads());
    }
    if (run_dir) run_dir->set_prefix("p" + float_text(ps[i]) + "/");
    StudyResult result;
    try {
      result = run_study(cfg, data, *backend, progress, note, sinks, run_dir.get());
    } catch (const StudyStopped& stopped) {
      if (root)
        std::fprintf(stderr, "bench_spurious: %s received, %s and saved in %s; resume with:\n  %s\n",
                     stop_signal() == SIGINT ? "SIGINT" : "SIGTERM", stopped.what(), mode.run_dir.c_str(),
                     resume_command(run_dir->command(), job ? job->size() : 0).c_str());
      return 128 + stop_signal();
    }
    if (job || mode.shard) {
      parts.push_back(shard_part(cfg, data, env, result));
    } else {
      parts.push_back(results_json(cfg, data, env, result));
    }
    if (job) continue;  // rank 0 prints and writes the merged study below
    if (ps.size() > 1) std::printf("== p = %g\n", ps[i]);
    print_tables(cfg, data, result);
    csv += results_csv(result, ps[i], i == 0);
    if (!out.records.empty()) records += records_text(ps[i], cfg.steps, result, record_format, i == 0);
  }
  nlohmann::json doc = study_document(std::move(parts));
  if (job) {
    std::optional<MergedStudy> merged = job->gather_and_merge(doc);
    if (!merged) return 0;  // not rank 0
    for (size_t i = 0; i < merged->parts.size(); ++i) {
      if (ps.size() > 1) std::printf("== p = %g\n", ps[i]);
      print_tables(cfg, data, merged->parts[i]);
      csv += results_csv(merged->parts[i], ps[i], i == 0);
      if (!out.records.empty()) records += records_text(ps[i], cfg.steps, merged->parts[i], record_format, i == 0);
    }
    doc = std::move(merged->doc);
  }
  if (!out.json.empty()) write_file_atomic(out.json, doc.dump(1) + "\n");
  if (!out.csv.empty()) write_file_atomic(out.csv, csv);
  if (!out.records.empty()) write_file_atomic(out.records, records);
  if (models) models->commit();
  if (features) features->commit();
  return 0;
}

// The main job; started by mpirun, one rank of an MPI job. A rank's failure stops every rank: an error every rank
// meets alike (a setting that cannot run) is reported once, by rank 0; one of this rank's alone, by this rank, which
// then aborts the job so that no rank waits for it.
int run_main(StudyConfig& cfg, const std::vector<float>& ps, const std::string& backend_name,
             const BackendOptions& backend_options, const std::string& data_dir, const Outputs& out, bool quiet,
             RunMode mode) {
  if (!mpi_launched()) return run_study_job(cfg, ps, backend_name, backend_options, data_dir, out, quiet, mode);
  MpiJob job;
  mode.job = &job;
  try {
    return run_study_job(cfg, ps, backend_name, backend_options, data_dir, out, quiet, mode);
  } catch (const JobSetupFailed& failed) {  // reported by the rank that failed; every rank returns
    return failed.code;
  } catch (const std::exception& e) {  // after setup, a rank fails alone: stop the others
    job.abort(e.what(), 1);
  }
}

// Writes every array into a staging folder, then moves them into place, so a failure leaves no partial set.
int run_dataset(StudyConfig& cfg, uint32_t seed_index, const std::string& data_dir, const std::string& out_dir) {
  const Dataset data = load_dataset(data_dir);
  write_seed_dataset(cfg, data, seed_index, out_dir);
  std::printf("wrote D_sp of seed index %u (base seed %llu, p %.3g) to %s\n", seed_index,
              static_cast<unsigned long long>(cfg.seed), cfg.spurious.p, out_dir.c_str());
  return 0;
}

}  // namespace

int run_cli(int argc, char** argv) {
  CLI::App app{
      "spurious-bench: trains many seeds of the MNIST-1D CNN at once on data with a planted spurious feature and "
      "reports accuracy and worst-group accuracy per method and test set (clean, aligned, conflicting)."};
  app.set_help_all_flag("--help-all", "Help for every subcommand");

  StudyConfig cfg;
  SpuriousFlags spurious_flags;
  std::string methods = CLI::detail::join(cfg.methods, ","), backend = "cpu", data_dir;
  Outputs outputs;
  std::string p_list = "0.9", l1_grid = CLI::detail::join(cfg.dfr.l1_grid, ","), gammas = CLI::detail::join(cfg.afr.gammas, ","),
              lambdas = CLI::detail::join(cfg.afr.lambdas, ","), stage1_steps;
  bool no_saliency = false;
  BackendOptions backend_options;
  bool no_graphs = false;
  bool quiet = false;
  app.add_option("--seeds", cfg.seeds, "Number of seeds trained in parallel")->capture_default_str();
  std::string seed_range, run_dir, resume_dir;
  int checkpoint_every = 500;
  app.add_option("--seed-range", seed_range,
                 "A:B trains only the global seed indices A <= i < B of the --seeds study and writes a shard; "
                 "`bench_spurious merge` makes the full results from the shards (docs/scaling.md)");
  app.add_option("--steps", cfg.steps, "Training steps per seed")->capture_default_str();
  spurious_flags.add(app, cfg.spurious, false);
  app.add_option("--p", p_list,
                 "Fraction of each class that gets the planted feature, in [0, 1]; a comma-separated list runs a sweep")
      ->capture_default_str();
  std::string methods_help = "Comma-separated methods:";
  for (const Method& m : study_methods()) methods_help += " " + m.name + " (" + m.summary + "),";
  methods_help.back() = '.';
  app.add_option("--methods", methods, methods_help)->capture_default_str();
  app.add_option("--channels", cfg.channels, "Channels C of the ConvBase conv layers")->capture_default_str();
  app.add_option("--lr", cfg.lr, "Adam learning rate")->capture_default_str();
  app.add_option("--batch", cfg.batch, "Batch size")->capture_default_str();
  app.add_option("--seed", cfg.seed, "Base seed of every random stream")->capture_default_str();
  app.add_option("--eval-every", cfg.eval_every, "Evaluate (and record curves) every N steps")->capture_default_str();
  app.add_flag("--fixed-order", cfg.fixed_order, "Use the reference's fixed batch order instead of reshuffling");
  app.add_option("--threads", backend_options.threads, "CPU threads (0 = all)")->capture_default_str();
  CLI::Option* device_opt =
      app.add_option("--device", backend_options.device,
                     "cuda, cudnn: the GPU to run on (default 0; in an MPI job each rank takes its node-local rank "
                     "modulo the GPU count)");
  app.add_option("--backend", backend, "Backend: cpu, cuda (our kernels), cudnn (the cuDNN/cuBLAS baseline)")
      ->capture_default_str();
  CLI::Option* streams_opt =
      app.add_option("--streams", backend_options.streams,
                     "cuda: split the seeds into this many groups, each trained on its own CUDA stream")
          ->capture_default_str();
  CLI::Option* per_seed_opt =
      app.add_flag("--stream-per-seed", backend_options.stream_per_seed,
                   "cuda: one stream per seed, no batching across seeds (shows what batching buys)")
          ->excludes(streams_opt);
  CLI::Option* no_graphs_opt =
      app.add_flag("--no-graphs", no_graphs, "cuda: launch every kernel of a step instead of replaying a CUDA graph");
  CLI::Option* cudnn_conv_opt =
      app.add_option("--cudnn-conv", backend_options.cudnn_conv,
                     "cudnn: 'grouped' (one grouped convolution over all seeds) or 'per-seed' (one per seed)")
          ->check(CLI::IsMember({"grouped", "per-seed"}))
          ->capture_default_str();
  app.add_option("--data", data_dir,
                 "Folder with x_train.npy, y_train.npy, x_test.npy, y_test.npy (as `generate` writes) or the raw x_train.f32, "
                 "y_train.i32, x_test.f32, y_test.i32 (default: the embedded MNIST-1D)");
  app.add_option("--out", outputs.json, "Write results JSON here (written atomically)");
  app.add_option("--csv", outputs.csv, "Write per-seed final metrics CSV here (written atomically)");
  app.add_option("--records", outputs.records,
                 "Write long-format records here, .csv or .jsonl: one row per (p, seed, method, set, step, metric, "
                 "group) for every evaluation and the final model (docs/results-format.md)");
  app.add_option("--save-models", outputs.models,
                 "Save every method's models into this new folder: one .safetensors per (p, method), PyTorch ConvBase "
                 "names, seed first (docs/python.md)");
  app.add_option("--save-features", outputs.features,
                 "Save erm's and erm-base's penultimate features on the training and test sets, with labels and the "
                 "planted mask, into this new folder (about 3.5 MB per seed and model at C 25)");
  app.add_flag("-q,--quiet", quiet, "No progress on stderr");
  CLI::Option* run_dir_opt = app.add_option(
      "--run-dir", run_dir,
      "Keep checkpoints and finished methods in this new folder, so that a killed or preempted run can go on with "
      "--resume (default: none, nothing is saved; docs/scaling.md)");
  app.add_option("--resume", resume_dir,
                 "Continue the run in this folder where it stopped (the same command, with --resume in place of "
                 "--run-dir): per-seed results equal an uninterrupted run's")
      ->excludes(run_dir_opt);
  app.add_option("--checkpoint-every", checkpoint_every, "With --run-dir: steps between training checkpoints")
      ->capture_default_str();
  app.add_option("--dfr-fraction", cfg.dfr_fraction, "DFR: share of D_base the head is refit on")->capture_default_str();
  app.add_option("--dfr-subsamples", cfg.dfr.subsamples, "DFR: class-balanced subsamples whose heads are averaged")
      ->capture_default_str();
  app.add_option("--dfr-l1-grid", l1_grid, "DFR: L1 strengths tried (chosen by worst-group accuracy on a tuning half)")
      ->capture_default_str();
  app.add_option("--afr-stage1-fraction", cfg.afr_stage1_fraction, "AFR: share of D_sp stage 1 trains on")
      ->capture_default_str();
  app.add_option("--afr-stage1-steps", stage1_steps,
                 "AFR: stage-1 training steps (default: --steps); a comma-separated list runs afr@N for each");
  app.add_option("--afr-gammas", gammas, "AFR: gamma grid")->capture_default_str();
  app.add_option("--afr-lambdas", lambdas, "AFR: lambda grid")->capture_default_str();
  app.add_option("--afr-epochs", cfg.afr.epochs, "AFR: full-batch epochs of stage 2")->capture_default_str();
  app.add_flag("--no-saliency", no_saliency, "Skip the saliency maps and shortcut-reliance numbers");

  CLI::App* dataset = app.add_subcommand(
      "dataset", "Write the exact D_sp training set and the three test sets one seed sees, as .npy files");
  StudyConfig ds_cfg;
  SpuriousFlags ds_flags;
  uint32_t seed_index = 0;
  std::string ds_out, ds_data;
  ds_flags.add(*dataset, ds_cfg.spurious);
  dataset->add_option("--seed", ds_cfg.seed, "Base seed")->capture_default_str();
  dataset->add_option("--seed-index", seed_index, "Seed index within the run")->capture_default_str();
  dataset->add_option("--data", ds_data, "Input folder (default: the embedded MNIST-1D)");
  dataset->add_option("--out", ds_out, "Output folder")->required();

  auto generate = add_generate_command(app);
  auto toy = add_toy_command(app);
  auto merge = add_merge_command(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << app.help();
    return 0;
  } catch (const CLI::CallForAllHelp&) {
    std::cout << app.help("", CLI::AppFormatMode::All);
    return 0;
  } catch (const CLI::ParseError& e) {
    if (mpi_launch_rank() == 0) std::fprintf(stderr, "bench_spurious: error: %s (see --help)\n", e.what());
    return 2;
  }

  try {
    if (generate_parsed(*generate)) return run_generate(*generate);
    if (toy_parsed(*toy)) return run_toy(*toy);
    if (merge_parsed(*merge)) return run_merge(*merge);
    if (dataset->parsed()) {
      ds_cfg.spurious.draw = parse_noise_draw(ds_flags.noise_draw);
      return run_dataset(ds_cfg, seed_index, ds_data, ds_out);
    }
    cfg.spurious.draw = parse_noise_draw(spurious_flags.noise_draw);
    cfg.methods = split_list(methods, "--methods");
    cfg.dfr.l1_grid = parse_list<float>("--dfr-l1-grid", l1_grid);
    cfg.afr.gammas = parse_list<float>("--afr-gammas", gammas);
    cfg.afr.lambdas = parse_list<float>("--afr-lambdas", lambdas);
    if (!stage1_steps.empty()) cfg.afr_stage1_steps = parse_list<int>("--afr-stage1-steps", stage1_steps);
    cfg.saliency = !no_saliency;
    const std::vector<float> ps = parse_list<float>("--p", p_list);
    if (backend_options.threads < 0) throw std::invalid_argument("--threads must be 0 (all) or a positive integer");
    if (backend_options.streams < 1) throw std::invalid_argument("--streams must be a positive integer");
    if (backend_options.device < 0) throw std::invalid_argument("--device must be 0 or a positive integer");
    if (device_opt->count() > 0 && backend == "cpu") throw std::invalid_argument("--device applies to --backend cuda and cudnn");
    for (const CLI::Option* o : {streams_opt, per_seed_opt, no_graphs_opt})
      if (o->count() > 0 && backend != "cuda")
        throw std::invalid_argument(o->get_name() + " applies to --backend cuda only");
    if (cudnn_conv_opt->count() > 0 && backend != "cudnn")
      throw std::invalid_argument("--cudnn-conv applies to --backend cudnn only");
    backend_options.graphs = !no_graphs;
    if (!seed_range.empty()) std::tie(cfg.seed_begin, cfg.seed_end) = parse_seed_range(seed_range);
    RunMode mode;
    mode.shard = !seed_range.empty();
    mode.device_given = device_opt->count() > 0;
    mode.run_dir = resume_dir.empty() ? run_dir : resume_dir;
    mode.resume = !resume_dir.empty();
    mode.checkpoint_every = checkpoint_every;
    if (checkpoint_every < 1) throw std::invalid_argument("--checkpoint-every must be a positive integer");
    mode.command.assign(argv, argv + argc);
    mode.command[0] = "bench_spurious";
    if (argv[0] && std::strchr(argv[0], '/')) mode.command[0] = argv[0];
    return run_main(cfg, ps, backend, backend_options, data_dir, outputs, quiet, mode);
  } catch (const std::invalid_argument& e) {  // the command line asks for something that cannot run
    if (mpi_launch_rank() == 0) std::fprintf(stderr, "bench_spurious: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {  // it could not be done: data, files, devices
    if (mpi_launch_rank() == 0) std::fprintf(stderr, "bench_spurious: error: %s\n", e.what());
    return 1;
  }
}

}  // namespace sb
