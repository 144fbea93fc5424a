// Loader: the embedded and shipped copies match the canonical values; clear errors for bad folders.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>

#include "data.h"

namespace fs = std::filesystem;
using namespace sb;

namespace {

const std::string kShipped = std::string(SB_SOURCE_DIR) + "/data/mnist1d";

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
