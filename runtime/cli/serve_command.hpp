#pragma once
/// `troupe serve`: an OpenAI-compatible HTTP server (troupe/openai_server.hpp) over the local
/// engine, until SIGINT or SIGTERM.

#include <cstdint>
#include <string>

#include "CLI/CLI.hpp"

namespace troupe::cli {

struct serve_options {
  std::string model = "smollm2";  ///< "smollm2" (the embedded default) or a path to a .gguf file.
  std::string name;               ///< Model id clients must send; default: derived from `model`.
  std::string host = "127.0.0.1";
  int port = 8080;  ///< 0: any free port.
  int threads = 2;
  int context = 2048;
  std::string kv_type = "f32";  ///< --kv-type: f32 or f16
  bool no_prefix_cache = false;  ///< --no-prefix-cache
  int max_batch = 32;
  int kv_budget_mib = 1024;
  int max_tokens = 512;  ///< When a request gives no max_tokens.
  int io_threads = 1;
  int max_request_mib = 8;
  double timeout_s = 600;
};

/// Adds the `serve` subcommand to `app`, filling `opts`.
CLI::App* add_serve_command(CLI::App& app, serve_options& opts);

/// Returns the exit code: 0 after a clean stop, 2 bad arguments, an unusable model file or an
/// address that cannot be bound.
int serve_command(const serve_options& opts);

}  // namespace troupe::cli
