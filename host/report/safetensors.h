// A writer for the safetensors format (https://huggingface.co/docs/safetensors), the file PyTorch's
// `safetensors.torch.load_file` and numpy's `safetensors.numpy.load_file` read: an 8-byte little-endian header
// length, a JSON header naming each tensor's dtype, shape and byte range (plus a string-to-string __metadata__), then
// the tensors' raw little-endian bytes back to back. Our own small writer rather than a library: no C++ safetensors
// library is packaged for Debian 12, and the format is one JSON header, which nlohmann_json already writes.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace sb {

class SafetensorsWriter {
 public:
  void metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }
  // The data is not copied: it must stay alive and unchanged until write() returns.
  void add(const std::string& name, const float* data, const std::vector<int64_t>& shape);
  void add(const std::string& name, const int32_t* data, const std::vector<int64_t>& shape);
  void add(const std::string& name, const uint8_t* data, const std::vector<int64_t>& shape);
  // The header alone: 8-byte length, JSON padded with spaces to a multiple of 8 bytes (so every tensor is aligned).
  std::string header() const;
  // The whole file, written atomically (a temporary name, fsync, rename): readers never see a partial file.
  void write(const std::string& path) const;

 private:
  struct Tensor {
    std::string name, dtype;
    std::vector<int64_t> shape;
    const void* data;
    size_t bytes;
  };
  void add_raw(const std::string& name, const char* dtype, size_t elem, const void* data,
               const std::vector<int64_t>& shape);
  std::vector<Tensor> tensors_;
  std::map<std::string, std::string> metadata_;
};

// A safetensors file read back (our checkpoints, host/scale/run_dir.h): every header field checked against the bytes
// there are, so a truncated file or a lying header is std::runtime_error naming `what`, never data read out of range.
struct SafetensorsFile {
  struct Tensor {
    std::string dtype;
    std::vector<int64_t> shape;
    size_t begin = 0, end = 0;  // byte range in data
  };
  std::map<std::string, std::string> metadata;
  std::map<std::string, Tensor> tensors;
  std::string data;  // the bytes after the header

  // The F32 tensor `name` with `count` elements, or std::runtime_error.
  std::vector<float> f32(const std::string& name, size_t count) const;
};
SafetensorsFile parse_safetensors(std::string bytes, const std::string& what);

}  // namespace sb
