#pragma once
/// `troupe generate`: one completion from a local GGUF model, streamed to stdout.

#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "troupe/llama/sampler.hpp"

namespace troupe::cli {

struct generate_options {
  /// "smollm2" (the embedded default), a .gguf path, or a DeepSeek-V3/Kimi checkpoint directory.
  std::string model = "smollm2";
  std::string prompt;
  llama::sampler_params sampling;
  std::vector<std::string> stop;  ///< --stop: the output ends before the first of these.
  int max_tokens = 128;
  int threads = 2;
  int context = 2048;
  std::string kv_type = "f32";  ///< --kv-type: f32 or f16
  bool raw = false;  ///< No chat template: continue the prompt text as is.
  /// DeepSeek-V3/Kimi checkpoints: expert-shard actors for the routed experts (0: the kernels'
  /// own threads).
  int expert_shards = 2;
};

/// Adds the `generate` subcommand to `app`, filling `opts`.
CLI::App* add_generate_command(CLI::App& app, generate_options& opts);

/// Returns the exit code: 0 done, 1 the model failed, 2 bad arguments or an unusable model file.
int generate_command(const generate_options& opts);

}  // namespace troupe::cli
