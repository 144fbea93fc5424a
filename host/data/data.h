// MNIST-1D data: the canonical arrays embedded in the binary, or a folder in the shipped raw layout.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace sb {

struct Dataset {
  int length = 0;                 // features per sample (40 for MNIST-1D)
  int classes = 10;
  int n_train = 0, n_test = 0;
  std::vector<float> x_train;     // (n_train, length)
  std::vector<int32_t> y_train;   // (n_train)
  std::vector<float> x_test;      // (n_test, length)
  std::vector<int32_t> y_test;    // (n_test)
  std::string source;             // "embedded" or the folder it came from
};

// The canonical MNIST-1D (4000 train / 1000 test, 40 features), embedded at build time.
// Its sha256 is checked on every load, like a folder's.
Dataset load_embedded_mnist1d();

// A folder of MNIST-1D data: .npy files if it has x_train.npy (load_npy_dir), else the shipped raw
// layout: x_train.f32, y_train.i32, x_test.f32, y_test.i32 (little-endian, row-major, no header).
// If a raw folder has a SHA256SUMS file (as data/mnist1d/ does), every file it lists is verified.
// Throws std::runtime_error naming the file for a missing, short, inconsistent or corrupt file, or
// labels outside [0, classes).
Dataset load_mnist1d_dir(const std::string& dir);

// A folder as `bench_spurious generate` writes it: x_train.npy, x_test.npy ((N, L), float64 or float32,
// converted to float32), y_train.npy, y_test.npy ((N,), int32 or int64). Any length L >= 1 and sample
// count; throws std::runtime_error naming the file for a wrong shape, lengths that differ between
// train and test, a row count that differs from the label count, a label outside [0, classes) or a
// value that is not finite in float32.
Dataset load_npy_dir(const std::string& dir);

// "" or "embedded" -> load_embedded_mnist1d(), anything else -> load_mnist1d_dir().
Dataset load_dataset(const std::string& dir_or_empty);

std::string sha256_hex(const void* data, size_t size);

// Count of samples per class; throws if a label is outside [0, classes).
std::vector<int> class_counts(const std::vector<int32_t>& labels, int classes);

}  // namespace sb
