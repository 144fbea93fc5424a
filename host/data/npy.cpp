// NumPy .npy v1.0 writer and reader (see npy.h and numpy.lib.format).
#include "data/npy.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <stdexcept>
#include <utility>

namespace sb {

namespace {

// The values are written with their in-memory byte order, which must then be little-endian.
#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__)
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "npy.cpp assumes a little-endian host");
#endif

constexpr char kMagic[] = "\x93NUMPY";  // 6 bytes, then major and minor version
constexpr size_t kMagicLen = 6;
constexpr size_t kAlign = 64;

struct FileCloser {
  void operator()(std::FILE* f) const {
    if (f) std::fclose(f);
  }
};
using File = std::unique_ptr<std::FILE, FileCloser>;

[[noreturn]] void sys_fail(const std::string& what, const std::string& path, int err) {
  throw std::runtime_error(what + " " + path + ": " + std::strerror(err));
}
[[noreturn]] void format_fail(const std::string& path, const std::string& msg) {
  throw std::runtime_error("cannot read " + path + " as .npy: " + msg);
}

std::string shape_tuple(const std::vector<size_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  if (shape.size() == 1) s += ",";  // Python's one-element tuple
  return s + ")";
}

void write_any(const std::string& path, const void* data, size_t itemsize, const char* descr,
               const std::vector<size_t>& shape) {
  size_t count = 1;
  for (size_t d : shape) {
    if (d != 0 && count > std::numeric_limits<size_t>::max() / itemsize / d)
      throw std::runtime_error("cannot write " + path + ": shape " + shape_tuple(shape) + " is too large");
    count *= d;
  }
  if (count > 0 && data == nullptr) throw std::runtime_error("cannot write " + path + ": null data");

  std::string header =
      std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': " + shape_tuple(shape) + ", }";
  // Pad with spaces so that magic (6) + version (2) + length (2) + header, ending in '\n', is a multiple of 64.
  const size_t prefix = kMagicLen + 2 + 2;
  const size_t total = (prefix + header.size() + 1 + kAlign - 1) / kAlign * kAlign;
  header.append(total - prefix - header.size() - 1, ' ');
  header.push_back('\n');
  if (header.size() > 65535)
    throw std::runtime_error("cannot write " + path + ": header too long for .npy version 1.0");

  std::string head(kMagic, kMagicLen);
  head.push_back('\x01');
  head.push_back('\x00');
  head.push_back(static_cast<char>(header.size() & 0xff));
  head.push_back(static_cast<char>(header.size() >> 8));
  head += header;

  errno = 0;
  File f(std::fopen(path.c_str(), "wb"));
  if (!f) sys_fail("cannot open", path, errno);
  if (std::fwrite(head.data(), 1, head.size(), f.get()) != head.size()) sys_fail("cannot write", path, errno);
  if (count > 0 && std::fwrite(data, itemsize, count, f.get()) != count) sys_fail("cannot write", path, errno);
  std::FILE* raw = f.release();
  if (std::fclose(raw) != 0) sys_fail("cannot write", path, errno);  // a full disk shows up here
}

// Value of key `key` in the header dict, as raw text up to the matching end (a quoted string, a
// parenthesised tuple or a bare word). Accepts single or double quotes around the key.
std::string header_value(const std::string& header, const std::string& key, const std::string& path) {
  size_t pos = std::string::npos;
  for (char q : {'\'', '"'}) {
    pos = header.find(std::string(1, q) + key + std::string(1, q));
    if (pos != std::string::npos) {
      pos += key.size() + 2;
      break;
    }
  }
  if (pos == std::string::npos) format_fail(path, "header has no '" + key + "' entry: " + header);
  pos = header.find_first_not_of(" \t", pos);
  if (pos == std::string::npos || header[pos] != ':') format_fail(path, "malformed header: " + header);
  pos = header.find_first_not_of(" \t", pos + 1);
  if (pos == std::string::npos) format_fail(path, "malformed header: " + header);
  const char c = header[pos];
  size_t end;
  if (c == '\'' || c == '"') {
    end = header.find(c, pos + 1);
    if (end == std::string::npos) format_fail(path, "malformed header: " + header);
    return header.substr(pos + 1, end - pos - 1);
  }
  if (c == '(') {
    end = header.find(')', pos);
    if (end == std::string::npos) format_fail(path, "malformed header: " + header);
    return header.substr(pos, end - pos + 1);
  }
  end = header.find_first_of(",}", pos);
  if (end == std::string::npos) format_fail(path, "malformed header: " + header);
  std::string v = header.substr(pos, end - pos);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.pop_back();
  return v;
}

std::vector<size_t> parse_shape(const std::string& tuple, const std::string& path) {
  // tuple is "(...)": comma-separated non-negative integers, optional trailing comma, "()" for 0-d.
  std::vector<size_t> shape;
  size_t i = 1;
  const size_t end = tuple.size() - 1;
  while (i < end) {
    while (i < end && (tuple[i] == ' ' || tuple[i] == ',')) ++i;
    if (i >= end) break;
    if (tuple[i] < '0' || tuple[i] > '9') format_fail(path, "malformed shape " + tuple);
    size_t v = 0;
    while (i < end && tuple[i] >= '0' && tuple[i] <= '9') {
      const size_t digit = size_t(tuple[i] - '0');
      if (v > (std::numeric_limits<size_t>::max() - digit) / 10) format_fail(path, "shape too large " + tuple);
      v = v * 10 + digit;
      ++i;
    }
    if (i < end && tuple[i] == 'L') ++i;  // Python 2 long suffix
    if (i < end && tuple[i] != ',' && tuple[i] != ' ') format_fail(path, "malformed shape " + tuple);
    shape.push_back(v);
  }
  return shape;
}

}  // namespace

void write_npy(const std::string& path, const float* data, std::vector<size_t> shape) {
  write_any(path, data, sizeof(float), "<f4", shape);
}

void write_npy(const std::string& path, const int32_t* data, std::vector<size_t> shape) {
  write_any(path, data, sizeof(int32_t), "<i4", shape);
}

void write_npy(const std::string& path, const double* data, std::vector<size_t> shape) {
  write_any(path, data, sizeof(double), "<f8", shape);
}

namespace {

// Header (shape and descr into a) and the raw little-endian values of a .npy file.
std::vector<unsigned char> read_raw(const std::string& path, NpyArray& a) {
  errno = 0;
  File f(std::fopen(path.c_str(), "rb"));
  if (!f) sys_fail("cannot open", path, errno);

  unsigned char pre[kMagicLen + 2];
  if (std::fread(pre, 1, sizeof pre, f.get()) != sizeof pre) format_fail(path, "file too short for the magic");
  if (std::memcmp(pre, kMagic, kMagicLen) != 0) format_fail(path, "bad magic (not a .npy file)");
  const int major = pre[kMagicLen], minor = pre[kMagicLen + 1];
  size_t header_len = 0;
  if (major == 1) {
    unsigned char b[2];
    if (std::fread(b, 1, 2, f.get()) != 2) format_fail(path, "truncated header length");
    header_len = size_t(b[0]) | size_t(b[1]) << 8;
  } else if (major == 2 || major == 3) {
    unsigned char b[4];
    if (std::fread(b, 1, 4, f.get()) != 4) format_fail(path, "truncated header length");
    header_len = size_t(b[0]) | size_t(b[1]) << 8 | size_t(b[2]) << 16 | size_t(b[3]) << 24;
  } else {
    format_fail(path, "unsupported format version " + std::to_string(major) + "." + std::to_string(minor));
  }
  std::string header(header_len, '\0');
  if (header_len > 0 && std::fread(&header[0], 1, header_len, f.get()) != header_len)
    format_fail(path, "truncated header (expected " + std::to_string(header_len) + " bytes)");

  a.descr = header_value(header, "descr", path);
  const std::string fortran = header_value(header, "fortran_order", path);
  if (fortran == "True") format_fail(path, "fortran_order True is not supported (save a C-ordered array)");
  if (fortran != "False") format_fail(path, "malformed fortran_order '" + fortran + "'");
  a.shape = parse_shape(header_value(header, "shape", path), path);

  size_t itemsize;
  if (a.descr == "<f4" || a.descr == "<i4") {
    itemsize = 4;
  } else if (a.descr == "<f8" || a.descr == "<i8") {
    itemsize = 8;
  } else {
    format_fail(path, "unsupported dtype '" + a.descr + "' (supported: <f4, <f8, <i4, <i8)");
  }
  size_t count = 1;
  for (size_t d : a.shape) {
    if (d != 0 && count > std::numeric_limits<size_t>::max() / itemsize / d) format_fail(path, "shape too large");
    count *= d;
  }

  std::vector<unsigned char> raw(count * itemsize);
  const size_t got = raw.empty() ? 0 : std::fread(raw.data(), 1, raw.size(), f.get());
  if (got != raw.size())
    format_fail(path, "truncated data: expected " + std::to_string(raw.size()) + " bytes for shape " +
                          shape_tuple(a.shape) + ", found " + std::to_string(got));
  return raw;
}

}  // namespace

NpyArray read_npy(const std::string& path) {
  NpyArray a;
  const std::vector<unsigned char> raw = read_raw(path, a);
  const size_t count = a.size();

  if (a.descr == "<f4") {
    a.f32.resize(count);
    if (count > 0) std::memcpy(a.f32.data(), raw.data(), raw.size());
  } else if (a.descr == "<f8") {
    a.f32.resize(count);
    for (size_t i = 0; i < count; ++i) {
      double v;
      std::memcpy(&v, &raw[i * 8], 8);
      a.f32[i] = static_cast<float>(v);
    }
  } else if (a.descr == "<i4") {
    a.i32.resize(count);
    if (count > 0) std::memcpy(a.i32.data(), raw.data(), raw.size());
  } else {
    a.i32.resize(count);
    for (size_t i = 0; i < count; ++i) {
      int64_t v;
      std::memcpy(&v, &raw[i * 8], 8);
      if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max())
        format_fail(path, "int64 value " + std::to_string(v) + " at index " + std::to_string(i) +
                              " does not fit in int32");
      a.i32[i] = static_cast<int32_t>(v);
    }
  }
  return a;
}

NpyData<float> read_npy_float(const std::string& path) {
  NpyArray a = read_npy(path);
  if (!a.is_float()) format_fail(path, "dtype '" + a.descr + "' is not a float type (expected <f4 or <f8)");
  return NpyData<float>{std::move(a.shape), std::move(a.f32)};
}

NpyData<double> read_npy_double(const std::string& path) {
  NpyArray a;
  const std::vector<unsigned char> raw = read_raw(path, a);
  if (!a.is_float()) format_fail(path, "dtype '" + a.descr + "' is not a float type (expected <f4 or <f8)");
  NpyData<double> d{a.shape, std::vector<double>(a.size())};
  for (size_t i = 0; i < d.data.size(); ++i) {
    if (a.descr == "<f8") {
      std::memcpy(&d.data[i], &raw[i * 8], 8);
    } else {
      float v;
      std::memcpy(&v, &raw[i * 4], 4);
      d.data[i] = v;
    }
  }
  return d;
}

NpyData<int32_t> read_npy_int32(const std::string& path) {
  NpyArray a = read_npy(path);
  if (a.is_float()) format_fail(path, "dtype '" + a.descr + "' is not an integer type (expected <i4 or <i8)");
  return NpyData<int32_t>{std::move(a.shape), std::move(a.i32)};
}

}  // namespace sb
