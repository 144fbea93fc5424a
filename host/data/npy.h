// Minimal NumPy .npy files (format spec: numpy.lib.format), so users load what spurious-bench writes
// with a plain np.load(), and tests can read reference arrays written by NumPy.
//
// Writer: version 1.0, little-endian '<f4' / '<f8' / '<i4', C order; the header is padded with spaces and ends
// in '\n' so that the data starts at a multiple of 64 bytes (as NumPy itself writes it).
// Reader: versions 1.0, 2.0 and 3.0; dtypes '<f4' and '<f8' (as float), '<i4' and '<i8' (as int32,
// throwing if an int64 value does not fit); C order only.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace sb {

// Writes data (prod(shape) values, C order) to path. shape {} writes a 0-d array of one value.
// Throws std::runtime_error naming the path and the system error on failure.
void write_npy(const std::string& path, const float* data, std::vector<size_t> shape);
void write_npy(const std::string& path, const int32_t* data, std::vector<size_t> shape);
void write_npy(const std::string& path, const double* data, std::vector<size_t> shape);  // '<f8'

struct NpyArray {
  std::vector<size_t> shape;
  std::string descr;            // dtype as stored in the file: "<f4", "<f8", "<i4" or "<i8"
  std::vector<float> f32;       // the values of a float file ("<f4" / "<f8"), C order; empty otherwise
  std::vector<int32_t> i32;     // the values of an integer file ("<i4" / "<i8"), C order; empty otherwise
  bool is_float() const { return descr == "<f4" || descr == "<f8"; }
  size_t size() const {         // number of values, prod(shape)
    size_t n = 1;
    for (size_t d : shape) n *= d;
    return n;
  }
};

// Reads a .npy file of any supported dtype. Throws std::runtime_error naming the path for: a missing or unreadable file, bad
// magic, an unsupported version or dtype, fortran_order True, a malformed header, a truncated file,
// or an int64 value outside the int32 range.
NpyArray read_npy(const std::string& path);

// Typed readers: shape and values of a file whose dtype is of the asked kind; a float file asked
// for as int32 (or the reverse) is an error naming the dtype found.
template <class T>
struct NpyData {
  std::vector<size_t> shape;
  std::vector<T> data;  // C order
};
NpyData<float> read_npy_float(const std::string& path);    // '<f4' or '<f8'
NpyData<int32_t> read_npy_int32(const std::string& path);  // '<i4' or '<i8'
NpyData<double> read_npy_double(const std::string& path);  // '<f4' or '<f8', without rounding to float

}  // namespace sb
