#include "report/safetensors.h"

#include <nlohmann/json.hpp>
#include <stdexcept>

#include "report/report.h"

namespace sb {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors stores little-endian data, written as is");

void SafetensorsWriter::add_raw(const std::string& name, const char* dtype, size_t elem, const void* data,
                                const std::vector<int64_t>& shape) {
  if (name.empty() || name == "__metadata__") throw std::invalid_argument("safetensors: bad tensor name '" + name + "'");
  for (const Tensor& t : tensors_)
    if (t.name == name) throw std::invalid_argument("safetensors: tensor '" + name + "' added twice");
  size_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) throw std::invalid_argument("safetensors: negative dimension in '" + name + "'");
    n *= size_t(d);
  }
  tensors_.push_back({name, dtype, shape, data, n * elem});
}

void SafetensorsWriter::add(const std::string& name, const float* data, const std::vector<int64_t>& shape) {
  add_raw(name, "F32", sizeof(float), data, shape);
}
void SafetensorsWriter::add(const std::string& name, const int32_t* data, const std::vector<int64_t>& shape) {
  add_raw(name, "I32", sizeof(int32_t), data, shape);
}
void SafetensorsWriter::add(const std::string& name, const uint8_t* data, const std::vector<int64_t>& shape) {
  add_raw(name, "U8", 1, data, shape);
}

std::string SafetensorsWriter::header() const {
  nlohmann::json h = nlohmann::json::object();
  if (!metadata_.empty()) h["__metadata__"] = metadata_;
  size_t offset = 0;
  for (const Tensor& t : tensors_) {  // back to back, in the order added
    h[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.bytes}}};
    offset += t.bytes;
  }
  std::string json = h.dump();
  json.append((8 - json.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = char((uint64_t(json.size()) >> (8 * i)) & 0xff);
  return out + json;
}

void SafetensorsWriter::write(const std::string& path) const {
  const std::string head = header();
  std::vector<FilePart> parts = {{head.data(), head.size()}};
  for (const Tensor& t : tensors_) parts.push_back({t.data, t.bytes});
  write_file_atomic(path, parts);
}

}  // namespace sb
