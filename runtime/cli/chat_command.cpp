#include "chat_command.hpp"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "caf/all.hpp"
#include "troupe/caf_types.hpp"
#include "troupe/error.hpp"
#include "model_options.hpp"
#include "troupe/local_model.hpp"

namespace troupe::cli {

CLI::App* add_chat_command(CLI::App& app, chat_options& opts) {
  auto* cmd = app.add_subcommand(
    "chat",
    "Talk with a local model (a GGUF file or a DeepSeek-V3 / Kimi K2 checkpoint directory):\n"
    "one message per line on stdin, the answer streamed to stdout. /reset forgets the\n"
    "conversation; /exit or end of input quits.\n"
    "Greedy at temperature 0 (the default).");
  cmd->add_option("-s,--system", opts.system, "System prompt (default: the model's own)");
  cmd->add_option("--temperature", opts.temperature, "0: greedy")->capture_default_str();
  cmd->add_option("--top-p", opts.top_p, "Nucleus sampling; 1: off");
  cmd->add_option("--frequency-penalty", opts.frequency_penalty,
                  "Minus this times a token's count so far in the answer; 0: off")
    ->check(CLI::Range(-2.0, 2.0));
  cmd->add_option("--presence-penalty", opts.presence_penalty,
                  "Minus this for a token already in the answer; 0: off")
    ->check(CLI::Range(-2.0, 2.0));
  cmd->add_option("--stop", opts.stop,
                  "End each answer before this string (repeat for several; the first found wins)");
  cmd->add_option("--seed", opts.seed, "Seed of the sampler (reproducible runs)");
  cmd->add_option("-n,--max-tokens", opts.max_tokens, "Tokens per answer at most")
    ->capture_default_str()
    ->check(CLI::Range(1, 1 << 20));
  add_model_options(cmd, opts.model, opts.threads, opts.context, opts.kv_type);
  cmd->add_flag("--no-prefix-cache", opts.no_prefix_cache,
                "Compute every prompt in full: keep no finished request's KV cache for\n"
                "later requests that begin the same way (the conversation so far, a shared\n"
                "system prompt)");
  return cmd;
}

int chat_command(const chat_options& opts) {
  troupe::actor_system_config cfg;
  caf::actor_system sys{cfg};
  local_model_config lc;
  lc.model = opts.model;
  lc.threads = opts.threads;
  lc.context = opts.context;
  lc.kv_cache_type = opts.kv_type;
  lc.prefix_cache = !opts.no_prefix_cache;
  lc.max_batch = 1;
  lc.default_max_tokens = static_cast<uint32_t>(opts.max_tokens);
  model_actor model;
  try {
    model = spawn_local_model(sys, lc);
  } catch (const error& e) {
    std::fprintf(stderr, "troupe chat: %s\n", e.what());
    return 2;
  }
  const bool interactive = isatty(STDIN_FILENO) != 0;
  caf::scoped_actor self{sys};
  std::vector<chat_message> conversation;
  if (!opts.system.empty()) conversation.push_back(chat_message::system(opts.system));
  int code = 0;
  uint64_t next_id = 1;
  std::string line;
  for (;;) {
    if (interactive) {
      std::fputs("> ", stdout);
      std::fflush(stdout);
    }
    if (!std::getline(std::cin, line) || line == "/exit") break;
    if (line.empty()) continue;
    if (line == "/reset") {
      conversation.resize(opts.system.empty() ? 0 : 1);
      std::fputs("(conversation forgotten)\n", stdout);
      continue;
    }
    conversation.push_back(chat_message::user(line));
    chat_request req;
    req.id = next_id++;
    req.messages = conversation;
    req.sampling.temperature = opts.temperature;
    req.sampling.top_p = opts.top_p;
    req.sampling.seed = opts.seed;
    req.sampling.frequency_penalty = opts.frequency_penalty;
    req.sampling.presence_penalty = opts.presence_penalty;
    req.stop = opts.stop;
    req.max_tokens = static_cast<uint32_t>(opts.max_tokens);
    req.stream_to = caf::actor_cast<delta_sink_actor>(self);
    // The engine streams deltas to this actor and replies to a relay that forwards the reply
    // here: both arrive in this mailbox in the order the engine sent them.
    caf::actor me = caf::actor_cast<caf::actor>(self);
    sys.spawn([model, req, me](caf::event_based_actor* relay) {
      relay->request(model, caf::infinite, chat_atom::value, req)
        .then([relay, me](assistant_turn& t) { relay->send(me, std::move(t)); },
              [relay, me](caf::error& e) { relay->send(me, std::move(e)); });
    });
    bool done = false;
    while (!done) {
      self->receive(
        [&](delta_atom, const turn_delta& d) {
          std::fwrite(d.text.data(), 1, d.text.size(), stdout);
          std::fflush(stdout);
        },
        [&](assistant_turn& t) {
          std::fputc('\n', stdout);
          std::fflush(stdout);
          conversation.push_back(chat_message::assistant(std::move(t.text)));
          done = true;
        },
        [&](caf::error& e) {
          std::fprintf(stderr, "\ntroupe chat: %s\n",
                       from_caf_error(e, "the model").render().c_str());
          conversation.pop_back();  // The failed message is not part of the conversation.
          code = 1;
          done = true;
        });
    }
  }
  caf::anon_send_exit(model, caf::exit_reason::user_shutdown);
  return code;
}

}  // namespace troupe::cli
