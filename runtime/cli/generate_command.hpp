#pragma once
/// `troupe generate`: one completion from a local GGUF model, streamed to stdout.

#include <string>

#include "CLI/CLI.hpp"
#include "troupe/llama/sampler.hpp"

namespace troupe::cli {

struct generate_options {
  std::string model = "smollm2";  ///< "smollm2" (the embedded default) or a path to a .gguf file.
  std::string prompt;
  llama::sampler_params sampling;
  int max_tokens = 128;
  int threads = 2;
  int context = 2048;
  bool raw = false;  ///< No chat template: continue the prompt text as is.
};

/// Adds the `generate` subcommand to `app`, filling `opts`.
CLI::App* add_generate_command(CLI::App& app, generate_options& opts);

/// Returns the exit code: 0 done, 1 the model failed, 2 bad arguments or an unusable model file.
int generate_command(const generate_options& opts);

}  // namespace troupe::cli
