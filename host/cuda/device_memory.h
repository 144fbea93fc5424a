// Device memory for plain C++ code (tests, benchmarks): allocation, copies and synchronisation behind functions
// that throw std::runtime_error with file:line, and DeviceArray<T>, an owning device buffer. No CUDA headers.
#pragma once
#include <cstddef>
#include <stdexcept>
#include <utility>
#include <vector>

namespace sb::gpu {

void* device_alloc(size_t bytes);          // nullptr for 0 bytes
void device_free(void* p) noexcept;        // ignores errors (used in destructors)
void copy_to_device(void* dst, const void* src, size_t bytes);  // complete on return
void copy_to_host(void* dst, const void* src, size_t bytes);  // waits for all device work first
void fill_device_bytes(void* p, int byte, size_t bytes);      // byte 0xff: every float NaN, every int32 -1
void device_synchronize();                 // waits for all device work; surfaces asynchronous errors

template <class T>
class DeviceArray {
 public:
  DeviceArray() = default;
  explicit DeviceArray(size_t n) : n_(n), p_(static_cast<T*>(device_alloc(n * sizeof(T)))) {}
  explicit DeviceArray(const std::vector<T>& host) : DeviceArray(host.size()) { upload(host); }
  ~DeviceArray() { device_free(p_); }
  DeviceArray(DeviceArray&& o) noexcept : n_(std::exchange(o.n_, 0)), p_(std::exchange(o.p_, nullptr)) {}
  DeviceArray& operator=(DeviceArray&& o) noexcept {
    std::swap(n_, o.n_);
    std::swap(p_, o.p_);
    return *this;
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;

  T* data() { return p_; }
  const T* data() const { return p_; }
  size_t size() const { return n_; }
  void upload(const std::vector<T>& host) {
    if (host.size() != n_) throw std::invalid_argument("DeviceArray::upload: size mismatch");
    copy_to_device(p_, host.data(), n_ * sizeof(T));
  }
  std::vector<T> download() const {
    std::vector<T> host(n_);
    copy_to_host(host.data(), p_, n_ * sizeof(T));
    return host;
  }
  void poison() { fill_device_bytes(p_, 0xff, n_ * sizeof(T)); }  // NaN floats, -1 ints

 private:
  size_t n_ = 0;
  T* p_ = nullptr;
};

}  // namespace sb::gpu
