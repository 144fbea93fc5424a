// NumPy .npy files: round trips, the header layout of the spec (64-byte aligned, '\n'-terminated), clear
// errors for bad files, and, where python3 has numpy, that NumPy itself loads what we write.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "data/npy.h"

namespace fs = std::filesystem;
using namespace sb;

namespace {

// A fresh scratch folder per test, removed at the end.
struct Scratch {
  fs::path dir;
  Scratch() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir = fs::temp_directory_path() /
          ("sb_npy_test_" + std::to_string(::getpid()) + "_" + info->test_suite_name() + "_" + info->name());
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  std::string file(const std::string& name) const { return (dir / name).string(); }
};

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void spit(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), std::streamsize(bytes.size()));
}

// A hand-made v1.0 file: magic, version, header (padded like NumPy), raw data bytes.
std::string make_npy(const std::string& dict, const std::string& data, int major = 1) {
  std::string header = dict;
  const size_t prefix = major == 1 ? 10 : 12;
  while ((prefix + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string f = "\x93NUMPY";
  f += char(major);
  f += char(0);
  const size_t n = header.size();
  f += char(n & 0xff);
  f += char((n >> 8) & 0xff);
  if (major != 1) {
    f += char((n >> 16) & 0xff);
    f += char((n >> 24) & 0xff);
  }
  return f + header + data;
}

template <class T>
std::string bytes_of(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

void expect_read_error(const std::string& path, const std::string& fragment) {
  try {
    read_npy(path);
    FAIL() << "no error for " << fragment;
  } catch (const std::runtime_error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find(fragment), std::string::npos) << m;
    EXPECT_NE(m.find(path), std::string::npos) << "the message names the file: " << m;
  }
}

bool have_numpy() { return std::system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") == 0; }

}  // namespace

TEST(Npy, FloatRoundTrip) {
  Scratch s;
  std::vector<float> v(3 * 40);
  for (size_t i = 0; i < v.size(); ++i) v[i] = float(i) * 0.25f - 7.0f;
  v[5] = std::numeric_limits<float>::infinity();
  v[6] = -0.0f;
  write_npy(s.file("a.npy"), v.data(), {3, 40});
  const NpyArray a = read_npy(s.file("a.npy"));
  EXPECT_EQ(a.descr, "<f4");
  EXPECT_TRUE(a.is_float());
  EXPECT_EQ(a.shape, (std::vector<size_t>{3, 40}));
  EXPECT_EQ(a.size(), v.size());
  ASSERT_EQ(a.f32.size(), v.size());
  EXPECT_EQ(std::memcmp(a.f32.data(), v.data(), v.size() * sizeof(float)), 0);  // bit-exact
  EXPECT_TRUE(a.i32.empty());
  const auto t = read_npy_float(s.file("a.npy"));
  EXPECT_EQ(t.shape, a.shape);
  EXPECT_EQ(t.data, a.f32);
}

TEST(Npy, Int32RoundTripAndShapes) {
  Scratch s;
  const std::vector<int32_t> v = {0, -1, 7, std::numeric_limits<int32_t>::max(), std::numeric_limits<int32_t>::min(), 9};
  for (const auto& shape : {std::vector<size_t>{6}, std::vector<size_t>{2, 3}, std::vector<size_t>{1, 2, 1, 3}}) {
    write_npy(s.file("b.npy"), v.data(), shape);
    const auto a = read_npy_int32(s.file("b.npy"));
    EXPECT_EQ(a.shape, shape);
    EXPECT_EQ(a.data, v);
  }
  // 0-d (one value) and empty arrays.
  write_npy(s.file("c.npy"), v.data() + 2, {});
  auto c = read_npy_int32(s.file("c.npy"));
  EXPECT_TRUE(c.shape.empty());
  EXPECT_EQ(c.data, std::vector<int32_t>{7});
  write_npy(s.file("d.npy"), static_cast<const int32_t*>(nullptr), {0, 40});
  auto d = read_npy_int32(s.file("d.npy"));
  EXPECT_EQ(d.shape, (std::vector<size_t>{0, 40}));
  EXPECT_TRUE(d.data.empty());
}

TEST(Npy, HeaderFollowsTheSpec) {
  Scratch s;
  const std::vector<float> v(4000 * 40, 1.5f);
  for (const auto& shape : {std::vector<size_t>{4000, 40}, std::vector<size_t>{4000}, std::vector<size_t>{}}) {
    write_npy(s.file("h.npy"), v.data(), shape);
    const std::string f = slurp(s.file("h.npy"));
    ASSERT_GE(f.size(), 10u);
    EXPECT_EQ(f.substr(0, 6), std::string("\x93NUMPY"));
    EXPECT_EQ(f[6], '\x01');
    EXPECT_EQ(f[7], '\x00');
    const size_t hlen = size_t(uint8_t(f[8])) | size_t(uint8_t(f[9])) << 8;
    const size_t data_start = 10 + hlen;
    EXPECT_EQ(data_start % 64, 0u) << "data must start on a 64-byte boundary";
    EXPECT_EQ(f[data_start - 1], '\n');
    const std::string header = f.substr(10, hlen);
    EXPECT_EQ(header.rfind("{'descr': '<f4', 'fortran_order': False, 'shape': ", 0), 0u) << header;
    size_t count = 1;
    for (size_t d : shape) count *= d;
    EXPECT_EQ(f.size(), data_start + 4 * count);
  }
  write_npy(s.file("h.npy"), v.data(), {4000, 40});
  EXPECT_NE(slurp(s.file("h.npy")).find("'shape': (4000, 40), }"), std::string::npos);
  write_npy(s.file("h.npy"), v.data(), {4000});
  EXPECT_NE(slurp(s.file("h.npy")).find("'shape': (4000,), }"), std::string::npos);  // one-element tuple
  write_npy(s.file("h.npy"), reinterpret_cast<const int32_t*>(v.data()), {7});
  EXPECT_NE(slurp(s.file("h.npy")).find("'descr': '<i4'"), std::string::npos);
}

TEST(Npy, ReadsFloat64AndInt64AndOtherVersions) {
  Scratch s;
  const std::vector<double> d = {0.1, -2.5, 1e30, 3.0};
  spit(s.file("f8.npy"), make_npy("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }", bytes_of(d)));
  const auto f = read_npy_float(s.file("f8.npy"));
  EXPECT_EQ(f.shape, (std::vector<size_t>{2, 2}));
  ASSERT_EQ(f.data.size(), 4u);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(f.data[i], float(d[i]));

  const std::vector<int64_t> l = {5, -3, 2147483647, -2147483648LL};
  spit(s.file("i8.npy"), make_npy("{'descr': '<i8', 'fortran_order': False, 'shape': (4,), }", bytes_of(l)));
  EXPECT_EQ(read_npy_int32(s.file("i8.npy")).data, (std::vector<int32_t>{5, -3, 2147483647, -2147483647 - 1}));

  // Version 2.0 (4-byte header length) and double-quoted keys are read too.
  const std::vector<int32_t> i = {1, 2, 3};
  spit(s.file("v2.npy"),
       make_npy("{\"descr\": \"<i4\", \"fortran_order\": False, \"shape\": (3,)}", bytes_of(i), 2));
  EXPECT_EQ(read_npy_int32(s.file("v2.npy")).data, i);
}

TEST(Npy, ClearErrors) {
  Scratch s;
  expect_read_error(s.file("missing.npy"), "cannot open");

  spit(s.file("magic.npy"), "PK\x03\x04 this is a zip, not an npy file....................");
  expect_read_error(s.file("magic.npy"), "bad magic");

  spit(s.file("short.npy"), "\x93NU");
  expect_read_error(s.file("short.npy"), "too short");

  const std::vector<int32_t> i = {1, 2, 3, 4};
  spit(s.file("dtype.npy"), make_npy("{'descr': '>i4', 'fortran_order': False, 'shape': (4,), }", bytes_of(i)));
  expect_read_error(s.file("dtype.npy"), "unsupported dtype '>i4'");
  spit(s.file("u1.npy"), make_npy("{'descr': '|u1', 'fortran_order': False, 'shape': (4,), }", "abcd"));
  expect_read_error(s.file("u1.npy"), "unsupported dtype");

  spit(s.file("fortran.npy"), make_npy("{'descr': '<i4', 'fortran_order': True, 'shape': (2, 2), }", bytes_of(i)));
  expect_read_error(s.file("fortran.npy"), "fortran_order True");

  spit(s.file("trunc.npy"),
       make_npy("{'descr': '<i4', 'fortran_order': False, 'shape': (5,), }", bytes_of(i)));  // 16 of 20 bytes
  expect_read_error(s.file("trunc.npy"), "truncated data");
  std::string whole = make_npy("{'descr': '<i4', 'fortran_order': False, 'shape': (4,), }", bytes_of(i));
  spit(s.file("trunch.npy"), whole.substr(0, 30));
  expect_read_error(s.file("trunch.npy"), "truncated header");

  spit(s.file("version.npy"), std::string("\x93NUMPY\x04\x00", 8) + "\x10\x00");
  expect_read_error(s.file("version.npy"), "unsupported format version 4.0");

  spit(s.file("noshape.npy"), make_npy("{'descr': '<i4', 'fortran_order': False, }", bytes_of(i)));
  expect_read_error(s.file("noshape.npy"), "'shape'");
  spit(s.file("badshape.npy"), make_npy("{'descr': '<i4', 'fortran_order': False, 'shape': (4x,), }", bytes_of(i)));
  expect_read_error(s.file("badshape.npy"), "malformed shape");

  const std::vector<int64_t> big = {int64_t(1) << 40};
  spit(s.file("big.npy"), make_npy("{'descr': '<i8', 'fortran_order': False, 'shape': (1,), }", bytes_of(big)));
  expect_read_error(s.file("big.npy"), "does not fit in int32");

  // The typed readers refuse the other kind.
  write_npy(s.file("f.npy"), std::vector<float>{1.0f}.data(), {1});
  EXPECT_THROW(read_npy_int32(s.file("f.npy")), std::runtime_error);
  write_npy(s.file("i.npy"), i.data(), {4});
  EXPECT_THROW(read_npy_float(s.file("i.npy")), std::runtime_error);
}

TEST(Npy, WriteErrorsNameThePathAndTheCause) {
  Scratch s;
  const float v = 1.0f;
  const std::string path = s.file("no/such/folder/x.npy");
  try {
    write_npy(path, &v, {1});
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find(path), std::string::npos) << m;
    EXPECT_NE(m.find(std::strerror(ENOENT)), std::string::npos) << m;
  }
  if (fs::exists("/dev/full")) {  // a full disk: the error surfaces at fwrite or fclose, never silently
    std::vector<float> big(1 << 16, 1.0f);
    EXPECT_THROW(write_npy("/dev/full", big.data(), {big.size()}), std::runtime_error);
  }
}

TEST(Npy, NumpyLoadsWhatWeWrite) {
  if (!have_numpy()) GTEST_SKIP() << "/usr/bin/python3 with numpy is not available";
  Scratch s;
  std::vector<float> x(7 * 5);
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(i) / 8.0f - 1.0f;
  const std::vector<int32_t> y = {3, -1, 4, 1, 5, 9, 2};
  write_npy(s.file("x.npy"), x.data(), {7, 5});
  write_npy(s.file("y.npy"), y.data(), {7});
  write_npy(s.file("z.npy"), y.data(), {});
  const std::string script =
      "import numpy as np, sys\n"
      "d = sys.argv[1]\n"
      "x = np.load(d + '/x.npy'); y = np.load(d + '/y.npy'); z = np.load(d + '/z.npy')\n"
      "assert x.dtype == np.float32 and x.shape == (7, 5) and x.flags.c_contiguous, (x.dtype, x.shape)\n"
      "assert (x.ravel() == np.arange(35, dtype=np.float32) / 8 - 1).all()\n"
      "assert y.dtype == np.int32 and y.shape == (7,) and y.tolist() == [3, -1, 4, 1, 5, 9, 2]\n"
      "assert z.shape == () and int(z) == 3\n"
      "np.save(d + '/from_numpy_f8.npy', np.arange(6, dtype=np.float64).reshape(2, 3) / 4)\n"
      "np.save(d + '/from_numpy_i8.npy', np.array([7, -8, 9], dtype=np.int64))\n"
      "np.save(d + '/from_numpy_f4.npy', np.ones((3, 40, 2), dtype=np.float32))\n"
      "np.save(d + '/fortran.npy', np.asfortranarray(np.ones((2, 3), dtype=np.float32)))\n";
  spit(s.file("check.py"), script);
  ASSERT_EQ(std::system(("/usr/bin/python3 " + s.file("check.py") + " " + s.dir.string()).c_str()), 0);
  // And we read what NumPy writes.
  const auto f8 = read_npy_float(s.file("from_numpy_f8.npy"));
  EXPECT_EQ(f8.shape, (std::vector<size_t>{2, 3}));
  EXPECT_EQ(f8.data, (std::vector<float>{0.0f, 0.25f, 0.5f, 0.75f, 1.0f, 1.25f}));
  EXPECT_EQ(read_npy_int32(s.file("from_numpy_i8.npy")).data, (std::vector<int32_t>{7, -8, 9}));
  const auto f4 = read_npy_float(s.file("from_numpy_f4.npy"));
  EXPECT_EQ(f4.shape, (std::vector<size_t>{3, 40, 2}));
  EXPECT_EQ(f4.data, std::vector<float>(240, 1.0f));
  expect_read_error(s.file("fortran.npy"), "fortran_order True");
}
