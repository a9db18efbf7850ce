#pragma once
// A GGUF writer for tests: files with any metadata and tensors, byte offsets of every field (so a
// test can corrupt them), and a scratch directory to put them in.

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <system_error>
#include <vector>

#include "troupe/formats/gguf.hpp"

namespace troupe::test {

/// Writes GGUF bytes and remembers where interesting fields are, so a test can corrupt them.
class gguf_writer {
 public:
  explicit gguf_writer(uint32_t version = 3) : version_(version) {}

  template <class T>
  void kv(const std::string& key, troupe::gguf_value_type type, T value) {
    kvs_.push_back({key, type, troupe::gguf_value_type::u8, pod(value), 1});
  }
  void kv_string(const std::string& key, const std::string& value) {
    kvs_.push_back(
        {key, troupe::gguf_value_type::string, troupe::gguf_value_type::u8, str(value), 1});
  }
  template <class T>
  void kv_array(const std::string& key, troupe::gguf_value_type elem,
                const std::vector<T>& values) {
    std::string payload;
    for (const T& v : values) payload += pod(v);
    kvs_.push_back({key, troupe::gguf_value_type::array, elem, payload, values.size()});
  }
  void kv_string_array(const std::string& key, const std::vector<std::string>& values) {
    std::string payload;
    for (const auto& v : values) payload += str(v);
    kvs_.push_back({key, troupe::gguf_value_type::array, troupe::gguf_value_type::string, payload,
                    values.size()});
  }
  void tensor(const std::string& name, uint32_t type, std::vector<uint64_t> shape,
              std::string data) {
    tensors_.push_back({name, type, std::move(shape), std::move(data)});
  }
  void alignment(uint64_t a) { align_ = a; }

  /// The file bytes; `at` maps field names to their byte offsets.
  std::string bytes() {
    std::string out = "GGUF";
    out += pod(version_);
    at["tensor_count"] = out.size();
    out += pod(uint64_t(tensors_.size()));
    at["kv_count"] = out.size();
    out += pod(uint64_t(kvs_.size()));
    for (const auto& e : kvs_) {
      at["key:" + e.key] = out.size();
      out += str(e.key);
      at["type:" + e.key] = out.size();
      out += pod(uint32_t(e.type));
      if (e.type == troupe::gguf_value_type::array) {
        at["elem_type:" + e.key] = out.size();
        out += pod(uint32_t(e.elem));
        at["count:" + e.key] = out.size();
        out += pod(uint64_t(e.count));
      }
      at["value:" + e.key] = out.size();
      out += e.payload;
    }
    uint64_t offset = 0;
    std::vector<uint64_t> offsets;
    for (const auto& t : tensors_) {
      at["name:" + t.name] = out.size();
      out += str(t.name);
      at["n_dims:" + t.name] = out.size();
      out += pod(uint32_t(t.shape.size()));
      at["shape:" + t.name] = out.size();
      for (uint64_t d : t.shape) out += pod(d);
      at["ttype:" + t.name] = out.size();
      out += pod(t.type);
      at["offset:" + t.name] = out.size();
      out += pod(offset);
      offsets.push_back(offset);
      offset += (t.data.size() + align_ - 1) / align_ * align_;
    }
    while (out.size() % align_) out += '\0';
    at["data"] = out.size();
    for (size_t i = 0; i < tensors_.size(); ++i) {
      out += tensors_[i].data;
      if (i + 1 < tensors_.size())
        while ((out.size() - at["data"]) % align_) out += '\0';
    }
    return out;
  }

  std::map<std::string, size_t> at;

  template <class T>
  static std::string pod(const T& v) {
    return std::string(reinterpret_cast<const char*>(&v), sizeof v);
  }
  static std::string str(const std::string& s) { return pod(uint64_t(s.size())) + s; }

 private:
  struct kv_entry {
    std::string key;
    troupe::gguf_value_type type, elem;
    std::string payload;
    uint64_t count;
  };
  struct tensor_entry {
    std::string name;
    uint32_t type;
    std::vector<uint64_t> shape;
    std::string data;
  };
  uint32_t version_;
  uint64_t align_ = 32;
  std::vector<kv_entry> kvs_;
  std::vector<tensor_entry> tensors_;
};

/// A scratch directory removed at the end of each test.
struct scratch {
  scratch() {
    dir = std::filesystem::temp_directory_path() /
          ("troupe_test_gguf_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::create_directories(dir);
  }
  ~scratch() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  std::filesystem::path write(const std::string& bytes,
                              const std::string& name = "model.gguf") const {
    const std::filesystem::path p = dir / name;
    std::ofstream(p, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
    return p;
  }
  std::filesystem::path dir;
  static inline int counter = 0;
};

}  // namespace troupe::test
