// Loader: the embedded and shipped copies match the canonical values; clear errors for bad folders.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>

#include "data/data.h"
#include "data/npy.h"
#include "test_paths.h"

namespace fs = std::filesystem;
using namespace sb;

namespace {

const std::string kShipped = sb_source_dir() + "/data/mnist1d";

// A scratch copy of the shipped raw files, removed at the end of the test.
struct ScratchDir {
  fs::path path;
  explicit ScratchDir(bool with_sums) {
    path = fs::temp_directory_path() / ("sb_data_test_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
                                        "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(path);
    fs::create_directories(path);
    for (const char* n : {"x_train.f32", "y_train.i32", "x_test.f32", "y_test.i32"}) fs::copy_file(kShipped + "/" + n, path / n);
    if (with_sums) {
      std::ifstream in(kShipped + "/SHA256SUMS");
      std::ofstream out(path / "SHA256SUMS");
      std::string line;
      while (std::getline(in, line))
        if (line.find(".f32") != std::string::npos || line.find(".i32") != std::string::npos)
          if (line.find("x_t") != std::string::npos || line.find("y_t") != std::string::npos) out << line << "\n";
    }
  }
  ~ScratchDir() { fs::remove_all(path); }
  std::string str() const { return path.string(); }
};

void expect_error(const std::string& dir, const std::string& fragment) {
  try {
    load_mnist1d_dir(dir);
    FAIL() << "no error for " << dir;
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(Data, EmbeddedMatchesCanonicalValues) {
  Dataset d = load_embedded_mnist1d();
  ASSERT_EQ(d.n_train, 4000);
  ASSERT_EQ(d.n_test, 1000);
  ASSERT_EQ(d.length, 40);
  EXPECT_EQ(class_counts(d.y_train, 10), (std::vector<int>{398, 396, 411, 394, 394, 402, 401, 404, 402, 398}));
  EXPECT_EQ(class_counts(d.y_test, 10), (std::vector<int>{102, 104, 89, 106, 106, 98, 99, 96, 98, 102}));
  EXPECT_EQ(std::accumulate(d.y_train.begin(), d.y_train.end(), 0), 18018);
  EXPECT_EQ(std::accumulate(d.y_test.begin(), d.y_test.end(), 0), 4482);
  EXPECT_FLOAT_EQ(d.x_train[0], -0.33200567960739136f);
  EXPECT_FLOAT_EQ(d.x_train[4], -0.8823525905609131f);
  EXPECT_NEAR(d.x_test[999 * 40 + 39], 1.193151836835276, 1e-6);
  EXPECT_EQ(d.source, "embedded");
}

TEST(Data, ShippedFolderEqualsEmbedded) {
  Dataset a = load_embedded_mnist1d(), b = load_mnist1d_dir(kShipped);
  EXPECT_EQ(a.x_train, b.x_train);
  EXPECT_EQ(a.y_train, b.y_train);
  EXPECT_EQ(a.x_test, b.x_test);
  EXPECT_EQ(a.y_test, b.y_test);
}

TEST(Data, Sha256KnownAnswer) {
  EXPECT_EQ(sha256_hex("abc", 3), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Data, MissingFolderOrFile) {
  expect_error("/nonexistent/sb", "cannot open /nonexistent/sb/x_train.f32");
  ScratchDir dir(false);
  fs::remove(dir.path / "y_test.i32");
  expect_error(dir.str(), "y_test.i32");
}

TEST(Data, ShortFileIsReported) {
  ScratchDir dir(false);
  fs::resize_file(dir.path / "x_test.f32", 1000 * 40 * 4 - 6);
  expect_error(dir.str(), "x_test.f32");
}

TEST(Data, InconsistentCountsAreReported) {
  ScratchDir dir(false);
  fs::resize_file(dir.path / "y_test.i32", 999 * 4);
  expect_error(dir.str(), "y_test.i32 holds 999 labels");
}

TEST(Data, CorruptFileFailsChecksum) {
  ScratchDir dir(true);
  EXPECT_NO_THROW(load_mnist1d_dir(dir.str()));
  {
    std::fstream f(dir.path / "x_train.f32", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(1234);
    f.put('\x7f');
  }
  expect_error(dir.str(), "checksum mismatch");
}

TEST(Data, LabelOutOfRange) {
  ScratchDir dir(false);
  {
    std::fstream f(dir.path / "y_train.i32", std::ios::in | std::ios::out | std::ios::binary);
    const int32_t bad = 10;
    f.seekp(4 * 7);
    f.write(reinterpret_cast<const char*>(&bad), 4);
  }
  expect_error(dir.str(), "label 10 at row 7");
}

// ---------------------------------------------------------------------------------------------------
// .npy folders (as `bench_spurious generate` writes them)

namespace {

// A folder of x_train/x_test (n x len) and y_train/y_test .npy files with labels i % 10.
struct NpyDir {
  fs::path path;
  NpyDir() {
    path = fs::temp_directory_path() / ("sb_data_npy_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~NpyDir() { fs::remove_all(path); }
  std::string file(const char* name) const { return (path / name).string(); }
  void write_x(const char* name, size_t n, size_t len, bool f64 = true) const {
    std::vector<double> d(n * len);
    for (size_t i = 0; i < d.size(); ++i) d[i] = 0.001 * double(i) - 1.0;
    if (f64) {
      write_npy(file(name), d.data(), {n, len});
    } else {
      std::vector<float> f(d.begin(), d.end());
      write_npy(file(name), f.data(), {n, len});
    }
  }
  void write_y(const char* name, size_t n, int32_t bad_at = -1) const {
    std::vector<int32_t> y(n);
    for (size_t i = 0; i < n; ++i) y[i] = int32_t(i % 10);
    if (bad_at >= 0) y[bad_at] = 10;
    write_npy(file(name), y.data(), {n});
  }
  // int64 labels, as np.save writes an int64 array.
  void write_y_i64(const char* name, size_t n) const {
    std::string header = "{'descr': '<i8', 'fortran_order': False, 'shape': (" + std::to_string(n) + ",), }";
    header.append(64 - (10 + header.size() + 1) % 64, ' ');
    header += '\n';
    std::ofstream f(file(name), std::ios::binary);
    f.write("\x93NUMPY\x01\x00", 8);
    f.put(char(header.size() & 0xff));
    f.put(char(header.size() >> 8));
    f << header;
    for (size_t i = 0; i < n; ++i) {
      const int64_t v = int64_t(i % 10);
      f.write(reinterpret_cast<const char*>(&v), 8);
    }
  }
  void write_all(size_t n_train, size_t n_test, size_t len) const {
    write_x("x_train.npy", n_train, len);
    write_x("x_test.npy", n_test, len);
    write_y("y_train.npy", n_train);
    write_y("y_test.npy", n_test);
  }
};

void expect_npy_error(const NpyDir& dir, const std::string& fragment) {
  try {
    load_dataset(dir.path.string());
    FAIL() << "no error for " << fragment;
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(Data, NpyFolderAnyLengthFloat64AndInt32) {
  NpyDir dir;
  dir.write_all(30, 20, 60);
  const Dataset d = load_dataset(dir.path.string());
  EXPECT_EQ(d.length, 60);
  EXPECT_EQ(d.n_train, 30);
  EXPECT_EQ(d.n_test, 20);
  ASSERT_EQ(d.x_train.size(), 30u * 60);
  EXPECT_EQ(d.x_train[7], float(0.001 * 7 - 1.0));
  EXPECT_EQ(d.y_test[13], 3);
  EXPECT_EQ(d.source, dir.path.string());
}

TEST(Data, NpyFolderFloat32AndInt64) {
  NpyDir dir;
  dir.write_x("x_train.npy", 10, 12, false);
  dir.write_x("x_test.npy", 10, 12, false);
  dir.write_y_i64("y_train.npy", 10);
  dir.write_y_i64("y_test.npy", 10);
  const Dataset d = load_mnist1d_dir(dir.path.string());
  EXPECT_EQ(d.length, 12);
  EXPECT_EQ(d.y_train[9], 9);
  EXPECT_EQ(d.x_test[5], float(0.001 * 5 - 1.0));
}

TEST(Data, NpyFolderShapeErrors) {
  {
    NpyDir dir;
    dir.write_all(30, 20, 60);
    dir.write_x("x_test.npy", 20, 40);
    expect_npy_error(dir, "x_train.npy has length 60 but x_test.npy has length 40");
  }
  {
    NpyDir dir;
    dir.write_all(30, 20, 60);
    dir.write_y("y_train.npy", 29);
    expect_npy_error(dir, "x_train.npy holds 30 samples but y_train.npy holds 29 labels");
  }
  {
    NpyDir dir;
    dir.write_all(30, 20, 60);
    std::vector<double> flat(600, 0.5);
    write_npy(dir.file("x_test.npy"), flat.data(), {600});
    expect_npy_error(dir, "x_test.npy has shape (600), expected (samples, length)");
  }
  {
    NpyDir dir;
    dir.write_all(30, 20, 60);
    std::vector<int32_t> y2(20, 1);
    write_npy(dir.file("y_test.npy"), y2.data(), {10, 2});
    expect_npy_error(dir, "y_test.npy has shape (10, 2)");
  }
  {
    NpyDir dir;
    dir.write_all(30, 20, 60);
    fs::remove(dir.path / "y_test.npy");
    expect_npy_error(dir, "y_test.npy");
  }
  {
    NpyDir dir;
    dir.write_all(30, 20, 60);
    std::vector<int32_t> y(20, 0);
    write_npy(dir.file("y_test.npy"), reinterpret_cast<const float*>(y.data()), {20});  // float labels
    expect_npy_error(dir, "not an integer type");
  }
}

TEST(Data, NpyFolderLabelAndValueErrors) {
  {
    NpyDir dir;
    dir.write_all(30, 20, 60);
    dir.write_y("y_train.npy", 30, 17);
    expect_npy_error(dir, "y_train.npy: label 10 at row 17");
  }
  {
    NpyDir dir;
    dir.write_all(30, 20, 60);
    std::vector<double> x(20 * 60, 0.0);
    x[77] = 1e300;  // not representable in float32
    write_npy(dir.file("x_test.npy"), x.data(), {20, 60});
    expect_npy_error(dir, "x_test.npy contains a non-finite value");
  }
}
