#pragma once
/// `troupe chat`: an interactive conversation with a local GGUF model through the engine actor
/// (the same scheduler agents use), answers streamed as they are generated. One user message per
/// line on stdin; `/reset` forgets the conversation, `/exit` or end of input quits. A prompt
/// ("> ") is shown only when stdin is a terminal, so the command also works in pipelines.

#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace troupe::cli {

struct chat_options {
  std::string model = "smollm2";  ///< "smollm2" (the embedded default) or a path to a .gguf file.
  std::string system;             ///< A system prompt; empty: the model's default.
  float temperature = 0.0f;
  float top_p = 1.0f;
  float frequency_penalty = 0.0f;
  float presence_penalty = 0.0f;
  std::vector<std::string> stop;  ///< --stop: each answer ends before the first of these.
  uint64_t seed = 0;
  int max_tokens = 512;
  int threads = 2;
  int context = 2048;
  std::string kv_type = "f32";  ///< --kv-type: f32 or f16
  bool no_prefix_cache = false;  ///< --no-prefix-cache
};

/// Adds the `chat` subcommand to `app`, filling `opts`.
CLI::App* add_chat_command(CLI::App& app, chat_options& opts);

/// Returns the exit code: 0 done, 1 the model failed mid-conversation, 2 an unusable model.
int chat_command(const chat_options& opts);

}  // namespace troupe::cli
