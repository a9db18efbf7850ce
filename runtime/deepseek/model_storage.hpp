#pragma once
// Private: what keeps a deepseek::model's weights alive — the mapped checkpoint (safetensors or
// GGUF) and the few matrices the loader had to rebuild in memory (kv_b from a GGUF's k_b/v_b).

#include <optional>
#include <vector>

#include "troupe/deepseek/model.hpp"
#include "troupe/formats/gguf.hpp"
#include "troupe/formats/safetensors.hpp"

namespace troupe::deepseek {

struct model::storage {
  std::optional<safetensors_checkpoint> checkpoint;  ///< set for a checkpoint directory
  std::optional<gguf_file> gguf;                     ///< set for a .gguf file
  std::vector<std::vector<float>> owned;             ///< rebuilt fp32 matrices weights point into
};

}  // namespace troupe::deepseek
