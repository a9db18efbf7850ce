#pragma once
// Shared by the llama tests: where the model and the llama.cpp fixture are.

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "troupe/json.hpp"

namespace troupe::llama::test {

/// $TROUPE_MODEL_DIR/SmolLM2-135M-Instruct.Q4_1.gguf, else ~/.cache/troupe/models/... (where
/// scripts/install-deps puts it). Empty when the file is absent.
inline std::filesystem::path smollm2_path() {
  std::filesystem::path dir;
  if (const char* d = std::getenv("TROUPE_MODEL_DIR"); d != nullptr && *d != 0) {
    dir = d;
  } else if (const char* home = std::getenv("HOME"); home != nullptr) {
    dir = std::filesystem::path(home) / ".cache/troupe/models";
  }
  auto p = dir / "SmolLM2-135M-Instruct.Q4_1.gguf";
  return std::filesystem::exists(p) ? p : std::filesystem::path();
}

/// tests/fixtures/llama/`name`, parsed.
inline json::value llama_fixture(const std::string& name) {
  const std::filesystem::path p = std::filesystem::path(TROUPE_SOURCE_DIR) / "tests/fixtures/llama" / name;
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return json::parse(ss.str(), p.string());
}

/// tests/fixtures/llama/smollm2_reference.json, written by tools/reference/llama_cpp_reference.py
/// (llama.cpp with an f32 KV cache), or with `f16_kv` smollm2_reference_f16_kv.json (its
/// --kv-type f16: llama.cpp's default f16 cache).
inline json::value reference_fixture(bool f16_kv = false) {
  return llama_fixture(f16_kv ? "smollm2_reference_f16_kv.json" : "smollm2_reference.json");
}

inline std::vector<int32_t> ids_of(const json::value& v) {
  std::vector<int32_t> out;
  for (const json::value& x : v.as_array()) out.push_back(static_cast<int32_t>(x.as_int()));
  return out;
}

}  // namespace troupe::llama::test
