// The writers of files other tools read: the safetensors header (PyPI's reader is in tests/artifacts), the staged
// output folder, the long-format records.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "report/records.h"
#include "report/safetensors.h"
#include "report/staged_dir.h"
#include "test_paths.h"

namespace fs = std::filesystem;
using nlohmann::json;

TEST(Safetensors, HeaderLengthPaddingOffsetsAndData) {
  const float f[6] = {1, 2, 3, 4, 5, 6};
  const int32_t i[3] = {7, -8, 9};
  const uint8_t u[5] = {1, 0, 1, 1, 0};
  sb::SafetensorsWriter w;
  w.metadata("method", "erm");
  w.add("a.weight", f, {2, 3});
  w.add("b", u, {5});
  w.add("c", i, {1, 3});
  const std::string h = w.header();
  uint64_t n = 0;
  for (int k = 0; k < 8; ++k) n |= uint64_t(uint8_t(h[k])) << (8 * k);
  ASSERT_EQ(n + 8, h.size());
  EXPECT_EQ(n % 8, 0u) << "header not padded to 8 bytes";
  const json j = json::parse(h.substr(8));
  EXPECT_EQ(j["__metadata__"]["method"], "erm");
  EXPECT_EQ(j["a.weight"]["dtype"], "F32");
  EXPECT_EQ(j["a.weight"]["shape"], json({2, 3}));
  EXPECT_EQ(j["a.weight"]["data_offsets"], json({0, 24}));
  EXPECT_EQ(j["b"]["dtype"], "U8");
  EXPECT_EQ(j["b"]["data_offsets"], json({24, 29}));
  EXPECT_EQ(j["c"]["dtype"], "I32");
  EXPECT_EQ(j["c"]["data_offsets"], json({29, 41}));

  const fs::path dir = sb_scratch_dir("sb_safetensors");
  w.write((dir / "t.safetensors").string());
  const std::string file = sb_slurp(dir / "t.safetensors");
  ASSERT_EQ(file.size(), h.size() + 41);
  EXPECT_EQ(file.substr(0, h.size()), h);
  EXPECT_EQ(std::memcmp(file.data() + h.size(), f, 24), 0);
  EXPECT_EQ(std::memcmp(file.data() + h.size() + 24, u, 5), 0);
  EXPECT_EQ(std::memcmp(file.data() + h.size() + 29, i, 12), 0);
  for (const auto& e : fs::directory_iterator(dir)) EXPECT_EQ(e.path().filename(), "t.safetensors");
  fs::remove_all(dir);
}

TEST(Safetensors, RefusesRepeatedOrReservedNames) {
  const float f[1] = {0};
  sb::SafetensorsWriter w;
  w.add("x", f, {1});
  EXPECT_THROW(w.add("x", f, {1}), std::invalid_argument);
  EXPECT_THROW(w.add("__metadata__", f, {1}), std::invalid_argument);
  EXPECT_THROW(w.add("y", f, {-1}), std::invalid_argument);
}

TEST(StagedDir, AppearsWholeOnCommitAndNotAtAllOtherwise) {
  const fs::path dir = sb_scratch_dir("sb_staged");
  const std::string out = (dir / "out").string();
  {
    sb::StagedDir staged(out, true);
    std::ofstream(staged.path("a.txt")) << "a";
    EXPECT_FALSE(fs::exists(out)) << "visible before commit";
  }  // an error before commit: nothing stays
  EXPECT_FALSE(fs::exists(out));
  for (const auto& e : fs::directory_iterator(dir)) ADD_FAILURE() << "left behind " << e.path();
  {
    sb::StagedDir staged(out + "/", true);  // "out/" names the same folder
    std::ofstream(staged.path("a.txt")) << "a";
    staged.commit();
  }
  EXPECT_EQ(sb_slurp(fs::path(out) / "a.txt"), "a");
  EXPECT_THROW(sb::StagedDir(out, true), std::runtime_error);  // exists with files in it
  sb::StagedDir again(out, false);                              // `dataset` and `generate` may add to a folder
  fs::create_directories(dir / "empty");
  sb::StagedDir empty((dir / "empty").string(), true);          // an empty folder is fine
  std::ofstream((dir / "file")) << "x";
  EXPECT_THROW(sb::StagedDir((dir / "file").string(), false), std::runtime_error);
  fs::remove_all(dir);
}

TEST(Records, FormatByExtension) {
  EXPECT_EQ(sb::record_format_of("r.csv"), sb::RecordFormat::csv);
  EXPECT_EQ(sb::record_format_of("dir/r.jsonl"), sb::RecordFormat::jsonl);
  EXPECT_THROW(sb::record_format_of("r.json"), std::invalid_argument);
  EXPECT_THROW(sb::record_format_of("csv"), std::invalid_argument);
}
