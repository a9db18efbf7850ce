#include "generate_command.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "caf/actor_system.hpp"
#include "caf/actor_system_config.hpp"
#include "engine_backend.hpp"
#include "model_options.hpp"
#include "troupe/error.hpp"
#include "troupe/llama/batch_decoder.hpp"
#include "troupe/llama/sampler.hpp"
#include "troupe/llama/tokenizer.hpp"
#include "troupe/local_model.hpp"
#include "troupe/stop_strings.hpp"

namespace troupe::cli {

CLI::App* add_generate_command(CLI::App& app, generate_options& opts) {
  auto* cmd = app.add_subcommand(
    "generate",
    "Generate text with a local model, streamed to stdout: a GGUF file (llama, qwen2, phi3 or\n"
    "deepseek2 architecture) or a DeepSeek-V3 / Kimi K2 checkpoint directory (config.json,\n"
    "*.safetensors, tiktoken.model).\n"
    "The prompt is wrapped in the model's chat template unless --raw is given. Greedy at\n"
    "temperature 0 (the default): the same prompt always gives the same text.");
  cmd->add_option("prompt", opts.prompt, "The prompt (the user message)")->required();
  cmd->add_option("--temperature", opts.sampling.temperature, "0: greedy")->capture_default_str();
  cmd->add_option("--top-k", opts.sampling.top_k, "Keep the k most likely tokens; 0: off");
  cmd->add_option("--top-p", opts.sampling.top_p, "Nucleus sampling; 1: off");
  cmd->add_option("--min-p", opts.sampling.min_p, "Drop tokens below min-p x p(best); 0: off");
  cmd->add_option("--repeat-penalty", opts.sampling.repeat_penalty, "1: off");
  cmd->add_option("--frequency-penalty", opts.sampling.frequency_penalty,
                  "Minus this times a token's count so far in the output; 0: off")
    ->check(CLI::Range(-2.0, 2.0));
  cmd->add_option("--presence-penalty", opts.sampling.presence_penalty,
                  "Minus this for a token already in the output; 0: off")
    ->check(CLI::Range(-2.0, 2.0));
  cmd->add_option("--stop", opts.stop,
                  "End the output before this string (repeat for several; the first found wins)");
  cmd->add_option("--seed", opts.sampling.seed, "Seed of the sampler (reproducible runs)");
  cmd->add_option("-n,--max-tokens", opts.max_tokens, "Tokens to generate at most")
    ->capture_default_str()
    ->check(CLI::Range(1, 1 << 20));
  add_model_options(cmd, opts.model, opts.threads, opts.context, opts.kv_type);
  cmd->add_flag("--raw", opts.raw, "Continue the prompt text as is, without a chat template");
  cmd->add_option("--expert-shards", opts.expert_shards,
                  "DeepSeek/Kimi checkpoints: expert-shard actors for the routed experts (0: none)")
    ->capture_default_str()
    ->check(CLI::Range(0, 1024));
  return cmd;
}

namespace {

using clock = std::chrono::steady_clock;

void report(size_t prompt_tokens, int generated, clock::time_point t0, clock::time_point t1,
            clock::time_point t2) {
  const double prefill_s = std::chrono::duration<double>(t1 - t0).count();
  const double decode_s = std::chrono::duration<double>(t2 - t1).count();
  std::fprintf(stderr, "troupe generate: %zu prompt tokens (%.1f tok/s), %d generated (%.1f tok/s)\n",
               prompt_tokens, prompt_tokens / std::max(prefill_s, 1e-9), generated,
               generated / std::max(decode_s, 1e-9));
}

}  // namespace

int generate_command(const generate_options& opts) {
  const auto path = troupe::resolve_model_path(opts.model).string();
  if (opts.model == "smollm2" && !std::filesystem::exists(path)) {
    std::fprintf(stderr,
                 "troupe generate: the embedded model is not installed at %s; run "
                 "scripts/install-deps (or set TROUPE_MODEL_DIR)\n",
                 path.c_str());
    return 2;
  }
  try {
    // The engine's model families: a GGUF llama model (the chat template its metadata names) or a
    // DeepSeek-V3/Kimi checkpoint (Kimi template, routed experts on expert-shard actors).
    caf::actor_system_config cfg;
    caf::actor_system sys{cfg};
    auto model = engine_backend::load(path, sys, opts.threads, opts.expert_shards,
                                      llama::parse_kv_cache_type(opts.kv_type));
    std::vector<int32_t> prompt_tokens;
    if (opts.raw) {
      prompt_tokens = model->encode(opts.prompt);
    } else {
      chat_request req;
      req.messages.push_back(chat_message::user(opts.prompt));
      prompt_tokens = model->prompt(req);
    }
    if (prompt_tokens.empty()) throw error{errc::invalid_argument, "the prompt is empty"};
    if (static_cast<int64_t>(prompt_tokens.size()) + 1 > opts.context)
      throw error{errc::invalid_argument,
                  "the prompt is " + std::to_string(prompt_tokens.size()) +
                    " tokens long, more than the context of " + std::to_string(opts.context) +
                    "; shorten it or raise --context"};
    const uint32_t seq = model->open(opts.context);
    int64_t position = 0;
    auto decode = [&](std::span<const int32_t> tokens) {
      const engine_backend::chunk ch{seq, tokens};
      position += static_cast<int64_t>(tokens.size());
      return model->decode({&ch, 1});
    };
    llama::sampler sampler{opts.sampling};
    for (auto t : prompt_tokens) sampler.accept_prompt(t);
    stop_strings stops{opts.stop};
    const auto t0 = clock::now();
    auto logits = decode(prompt_tokens);
    const auto t1 = clock::now();
    int generated = 0;
    std::string pending;  // Bytes of an incomplete UTF-8 sequence wait for the next token.
    int32_t next = 0;
    while (generated < opts.max_tokens && position < opts.context) {
      next = sampler.sample(logits);
      if (model->is_end_of_generation(next)) break;
      sampler.accept(next);
      ++generated;
      pending += model->piece(next);
      // Print up to the last complete UTF-8 character (and before any possible stop string).
      const auto out = stops.feed(llama::take_complete_utf8(pending));
      std::fwrite(out.text.data(), 1, out.text.size(), stdout);
      std::fflush(stdout);
      if (out.stopped) break;
      if (generated < opts.max_tokens && position < opts.context)
        logits = decode(std::span<const int32_t>{&next, 1});
    }
    if (!stops.stopped()) {
      const auto out = stops.feed(pending);
      const std::string rest = out.text + stops.flush();
      std::fwrite(rest.data(), 1, rest.size(), stdout);
    }
    std::fputc('\n', stdout);
    report(prompt_tokens.size(), generated, t0, t1, clock::now());
    model->close(seq);
    return 0;
  } catch (const error& e) {
    std::fprintf(stderr, "troupe generate: %s\n", e.what());
    return e.code() == errc::model_failed || e.code() == errc::internal ? 1 : 2;
  }
}

}  // namespace troupe::cli
