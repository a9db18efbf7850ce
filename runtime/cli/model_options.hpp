#pragma once
/// Options every command that runs a local model takes, spelled and checked the same way:
/// -m/--model, -t/--threads, -c/--context, --kv-type.

#include <CLI/CLI.hpp>
#include <string>

namespace troupe::cli {

/// Adds -m,--model (the embedded "smollm2" or a .gguf path), -t,--threads, -c,--context and
/// --kv-type to `cmd`; `context_help` describes what the context applies to.
inline void add_model_options(CLI::App* cmd, std::string& model, int& threads, int& context,
                              std::string& kv_type,
                              const char* context_help = "Context length (KV cache positions)") {
  cmd->add_option("-m,--model", model,
                  "smollm2 (the embedded default, installed by scripts/install-deps), a .gguf path, or a\n"
                  "DeepSeek-V3/Kimi checkpoint directory")
    ->capture_default_str();
  cmd->add_option("-t,--threads", threads, "Threads for the kernels")
    ->capture_default_str()
    ->check(CLI::Range(1, 256));
  cmd->add_option("-c,--context", context, context_help)
    ->capture_default_str()
    ->check(CLI::Range(16, 1 << 20));
  cmd->add_option("--kv-type", kv_type,
                  "KV cache element type of GGUF llama-family models: f32, or f16\n"
                  "(half the memory; as llama.cpp with -ctk f16 -ctv f16, its default)")
    ->capture_default_str()
    ->check(CLI::IsMember({"f32", "f16"}));
}

}  // namespace troupe::cli
