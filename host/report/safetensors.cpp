#include "report/safetensors.h"

#include <nlohmann/json.hpp>
#include <cstring>
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

SafetensorsFile parse_safetensors(std::string bytes, const std::string& what) {
  auto bad = [&](const std::string& why) { return std::runtime_error(what + " is damaged: " + why); };
  if (bytes.size() < 8) throw bad("shorter than a safetensors header");
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t(uint8_t(bytes[i])) << (8 * i);
  if (n > bytes.size() - 8) throw bad("the header claims more bytes than the file has");
  SafetensorsFile f;
  try {
    const nlohmann::json h = nlohmann::json::parse(bytes.substr(8, n));
    const size_t data_size = bytes.size() - 8 - n;
    for (const auto& [name, t] : h.items()) {
      if (name == "__metadata__") {
        f.metadata = t.get<std::map<std::string, std::string>>();
        continue;
      }
      SafetensorsFile::Tensor tensor;
      tensor.dtype = t.at("dtype");
      tensor.shape = t.at("shape").get<std::vector<int64_t>>();
      tensor.begin = t.at("data_offsets").at(0), tensor.end = t.at("data_offsets").at(1);
      const size_t elem = tensor.dtype == "F32" || tensor.dtype == "I32" ? 4 : tensor.dtype == "U8" ? 1 : 0;
      if (!elem) throw bad("tensor '" + name + "' has dtype " + tensor.dtype);
      size_t count = 1;
      for (int64_t d : tensor.shape) {
        if (d < 0) throw bad("tensor '" + name + "' has a negative dimension");
        count *= size_t(d);
      }
      if (tensor.begin > tensor.end || tensor.end > data_size || tensor.end - tensor.begin != count * elem)
        throw bad("tensor '" + name + "' does not fit its byte range or the file");
      f.tensors[name] = tensor;
    }
  } catch (const nlohmann::json::exception& e) {
    throw bad(std::string("header: ") + e.what());
  }
  f.data = bytes.substr(8 + n);
  return f;
}

std::vector<float> SafetensorsFile::f32(const std::string& name, size_t count) const {
  auto it = tensors.find(name);
  if (it == tensors.end() || it->second.dtype != "F32" || it->second.end - it->second.begin != count * sizeof(float))
    throw std::runtime_error("safetensors: no F32 tensor '" + name + "' of " + std::to_string(count) + " values");
  std::vector<float> v(count);
  std::memcpy(v.data(), data.data() + it->second.begin, count * sizeof(float));
  return v;
}

}  // namespace sb
