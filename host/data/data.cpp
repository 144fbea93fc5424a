#include "data/data.h"

#include <openssl/evp.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>

#include "core/file_util.h"
#include "data/npy.h"

extern "C" {
extern const unsigned char sb_embedded_x_train_f32[], sb_embedded_x_train_f32_end[];
extern const unsigned char sb_embedded_x_test_f32[], sb_embedded_x_test_f32_end[];
extern const unsigned char sb_embedded_y_train_i32[], sb_embedded_y_train_i32_end[];
extern const unsigned char sb_embedded_y_test_i32[], sb_embedded_y_test_i32_end[];
}

namespace sb {
namespace {

// sha256 of the canonical files (data/mnist1d/README.md and SHA256SUMS).
const std::map<std::string, std::string> kCanonicalSha256 = {
    {"x_train.f32", "d53506bddd12d3b72c7153b1ae7f34807724b1dd078a7273809bf9d0792319f6"},
    {"x_test.f32", "30addc43827c82aafa5db8bc97cea63349ca687e87db2f201cc4f5415d9a4ebd"},
    {"y_train.i32", "349d9015145a182689d6949b2af9d6466831b99f440cbdba8d682094f0de89d0"},
    {"y_test.i32", "6d4fabd193f078c2517ef7786d602c5a2ddb8b66b407873f4e14c97b935d6dbd"},
};

constexpr int kCanonicalLength = 40;

void check_sha256(const std::string& name, const std::string& bytes, const std::string& expected) {
  const std::string got = sha256_hex(bytes.data(), bytes.size());
  if (got != expected)
    throw std::runtime_error("data: checksum mismatch for " + name + " (expected sha256 " + expected + ", got " + got +
                             "): the file is corrupt or not the one listed");
}

template <class T>
std::vector<T> as_array(const std::string& name, const std::string& bytes, size_t row_elems) {
  const size_t row_bytes = row_elems * sizeof(T);
  if (bytes.empty()) throw std::runtime_error("data: " + name + " is empty");
  if (bytes.size() % row_bytes != 0)
    throw std::runtime_error("data: " + name + " has " + std::to_string(bytes.size()) +
                             " bytes, not a whole number of rows of " + std::to_string(row_bytes) + " bytes (truncated?)");
  std::vector<T> out(bytes.size() / sizeof(T));
  std::memcpy(out.data(), bytes.data(), bytes.size());
  return out;
}

Dataset assemble(const std::string& source, int length, const std::string& x_train_bytes,
                 const std::string& y_train_bytes, const std::string& x_test_bytes, const std::string& y_test_bytes) {
  Dataset d;
  d.source = source;
  d.length = length;
  d.y_train = as_array<int32_t>("y_train.i32", y_train_bytes, 1);
  d.y_test = as_array<int32_t>("y_test.i32", y_test_bytes, 1);
  d.x_train = as_array<float>("x_train.f32", x_train_bytes, length);
  d.x_test = as_array<float>("x_test.f32", x_test_bytes, length);
  d.n_train = static_cast<int>(d.y_train.size());
  d.n_test = static_cast<int>(d.y_test.size());
  if (d.x_train.size() != size_t(d.n_train) * length)
    throw std::runtime_error("data: x_train.f32 holds " + std::to_string(d.x_train.size() / length) +
                             " samples of length " + std::to_string(length) + " but y_train.i32 holds " +
                             std::to_string(d.n_train) + " labels");
  if (d.x_test.size() != size_t(d.n_test) * length)
    throw std::runtime_error("data: x_test.f32 holds " + std::to_string(d.x_test.size() / length) +
                             " samples of length " + std::to_string(length) + " but y_test.i32 holds " +
                             std::to_string(d.n_test) + " labels");
  class_counts(d.y_train, d.classes);
  class_counts(d.y_test, d.classes);
  for (float v : d.x_train)
    if (!std::isfinite(v)) throw std::runtime_error("data: x_train.f32 contains a non-finite value");
  for (float v : d.x_test)
    if (!std::isfinite(v)) throw std::runtime_error("data: x_test.f32 contains a non-finite value");
  return d;
}

std::string embedded(const unsigned char* begin, const unsigned char* end) {
  return std::string(reinterpret_cast<const char*>(begin), size_t(end - begin));
}

}  // namespace

std::string sha256_hex(const void* data, size_t size) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data, size, md, &len, EVP_sha256(), nullptr) != 1) throw std::runtime_error("sha256 failed");
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) {
    out += hex[md[i] >> 4];
    out += hex[md[i] & 15];
  }
  return out;
}

std::vector<int> class_counts(const std::vector<int32_t>& labels, int classes) {
  std::vector<int> counts(classes, 0);
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] < 0 || labels[i] >= classes)
      throw std::runtime_error("data: label " + std::to_string(labels[i]) + " at row " + std::to_string(i) +
                               " is outside [0, " + std::to_string(classes) + ")");
    ++counts[labels[i]];
  }
  return counts;
}

Dataset load_embedded_mnist1d() {
  const std::string xtr = embedded(sb_embedded_x_train_f32, sb_embedded_x_train_f32_end);
  const std::string ytr = embedded(sb_embedded_y_train_i32, sb_embedded_y_train_i32_end);
  const std::string xte = embedded(sb_embedded_x_test_f32, sb_embedded_x_test_f32_end);
  const std::string yte = embedded(sb_embedded_y_test_i32, sb_embedded_y_test_i32_end);
  check_sha256("embedded x_train.f32", xtr, kCanonicalSha256.at("x_train.f32"));
  check_sha256("embedded y_train.i32", ytr, kCanonicalSha256.at("y_train.i32"));
  check_sha256("embedded x_test.f32", xte, kCanonicalSha256.at("x_test.f32"));
  check_sha256("embedded y_test.i32", yte, kCanonicalSha256.at("y_test.i32"));
  return assemble("embedded", kCanonicalLength, xtr, ytr, xte, yte);
}

Dataset load_npy_dir(const std::string& dir) {
  const std::string p = dir + "/";
  NpyData<float> xtr = read_npy_float(p + "x_train.npy"), xte = read_npy_float(p + "x_test.npy");
  NpyData<int32_t> ytr = read_npy_int32(p + "y_train.npy"), yte = read_npy_int32(p + "y_test.npy");
  auto fail = [&](const std::string& m) { throw std::runtime_error("data: " + p + m); };
  auto shape_str = [](const std::vector<size_t>& s) {
    std::string out = "(";
    for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
    return out + ")";
  };
  if (xtr.shape.size() != 2) fail("x_train.npy has shape " + shape_str(xtr.shape) + ", expected (samples, length)");
  if (xte.shape.size() != 2) fail("x_test.npy has shape " + shape_str(xte.shape) + ", expected (samples, length)");
  if (ytr.shape.size() != 1) fail("y_train.npy has shape " + shape_str(ytr.shape) + ", expected (samples,)");
  if (yte.shape.size() != 1) fail("y_test.npy has shape " + shape_str(yte.shape) + ", expected (samples,)");
  if (xtr.shape[1] != xte.shape[1])
    fail("x_train.npy has length " + std::to_string(xtr.shape[1]) + " but x_test.npy has length " +
         std::to_string(xte.shape[1]));
  if (xtr.shape[0] != ytr.shape[0])
    fail("x_train.npy holds " + std::to_string(xtr.shape[0]) + " samples but y_train.npy holds " +
         std::to_string(ytr.shape[0]) + " labels");
  if (xte.shape[0] != yte.shape[0])
    fail("x_test.npy holds " + std::to_string(xte.shape[0]) + " samples but y_test.npy holds " +
         std::to_string(yte.shape[0]) + " labels");
  if (xtr.shape[0] == 0 || xte.shape[0] == 0 || xtr.shape[1] == 0) fail("x_train.npy or x_test.npy is empty");
  if (xtr.shape[0] > size_t(INT32_MAX) || xte.shape[0] > size_t(INT32_MAX) || xtr.shape[1] > size_t(INT32_MAX))
    fail("x_train.npy or x_test.npy is too large");

  Dataset d;
  d.source = dir;
  d.length = int(xtr.shape[1]);
  d.n_train = int(xtr.shape[0]);
  d.n_test = int(xte.shape[0]);
  d.x_train = std::move(xtr.data);
  d.x_test = std::move(xte.data);
  d.y_train = std::move(ytr.data);
  d.y_test = std::move(yte.data);
  auto check_labels = [&](const std::vector<int32_t>& y, const char* name) {
    for (size_t i = 0; i < y.size(); ++i)
      if (y[i] < 0 || y[i] >= d.classes)
        fail(std::string(name) + ": label " + std::to_string(y[i]) + " at row " + std::to_string(i) +
             " is outside [0, " + std::to_string(d.classes) + ")");
  };
  check_labels(d.y_train, "y_train.npy");
  check_labels(d.y_test, "y_test.npy");
  for (float v : d.x_train)
    if (!std::isfinite(v)) fail("x_train.npy contains a non-finite value (or one too large for float32)");
  for (float v : d.x_test)
    if (!std::isfinite(v)) fail("x_test.npy contains a non-finite value (or one too large for float32)");
  return d;
}

Dataset load_mnist1d_dir(const std::string& dir) {
  std::error_code ec;
  if (std::filesystem::exists(dir + "/x_train.npy", ec)) return load_npy_dir(dir);
  const char* names[] = {"x_train.f32", "y_train.i32", "x_test.f32", "y_test.i32"};
  std::map<std::string, std::string> bytes;
  for (const char* n : names) bytes[n] = read_file(dir + "/" + n);

  std::ifstream sums(dir + "/SHA256SUMS");
  if (sums) {  // verify every file listed (the shipped folder lists all of its files)
    std::string line;
    while (std::getline(sums, line)) {
      std::istringstream ls(line);
      std::string digest, name;
      if (!(ls >> digest >> name)) continue;
      if (!name.empty() && name[0] == '*') name = name.substr(1);
      auto it = bytes.find(name);
      check_sha256(dir + "/" + name, it != bytes.end() ? it->second : read_file(dir + "/" + name), digest);
    }
  }
  // The raw layout has no shape header: the length follows from the byte counts.
  const size_t n_train = bytes["y_train.i32"].size() / 4;
  if (n_train == 0) throw std::runtime_error("data: " + dir + "/y_train.i32 is empty");
  const size_t xtr_floats = bytes["x_train.f32"].size() / 4;
  if (xtr_floats == 0 || xtr_floats % n_train != 0)
    throw std::runtime_error("data: " + dir + "/x_train.f32 has " + std::to_string(bytes["x_train.f32"].size()) +
                             " bytes, not a whole number of rows for " + std::to_string(n_train) + " labels");
  const int length = static_cast<int>(xtr_floats / n_train);
  return assemble(dir, length, bytes["x_train.f32"], bytes["y_train.i32"], bytes["x_test.f32"], bytes["y_test.i32"]);
}

Dataset load_dataset(const std::string& dir_or_empty) {
  if (dir_or_empty.empty() || dir_or_empty == "embedded") return load_embedded_mnist1d();
  return load_mnist1d_dir(dir_or_empty);
}

}  // namespace sb
