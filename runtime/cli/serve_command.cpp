#include "serve_command.hpp"

#include <pthread.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>

#include "caf/all.hpp"
#include "troupe/caf_types.hpp"
#include "troupe/error.hpp"
#include "model_options.hpp"
#include "troupe/local_model.hpp"
#include "troupe/openai_server.hpp"

namespace troupe::cli {

CLI::App* add_serve_command(CLI::App& app, serve_options& opts) {
  auto* cmd = app.add_subcommand(
    "serve",
    "Serve a local GGUF model over an OpenAI-compatible HTTP API: POST /v1/chat/completions\n"
    "(streaming with SSE), GET /v1/models, GET /health. Concurrent requests share the engine's\n"
    "batches; a client that disconnects has its request cancelled. Listens on 127.0.0.1 unless\n"
    "--host says otherwise. Prints the base URL (http://HOST:PORT/v1) on stdout once listening;\n"
    "stops on Ctrl-C or SIGTERM.");
  add_model_options(cmd, opts.model, opts.threads, opts.context, opts.kv_type,
                    "Context length per request (KV positions)");
  cmd->add_flag("--no-prefix-cache", opts.no_prefix_cache,
                "Compute every prompt in full: keep no finished request's KV cache for\n"
                "later requests that begin the same way (the conversation so far, a shared\n"
                "system prompt)");
  cmd->add_option("--name", opts.name,
                  "Model id that clients send and /v1/models lists (default: smollm2, or the "
                  "file name without .gguf)");
  cmd->add_option("--host", opts.host, "IP address to listen on")->capture_default_str();
  cmd->add_option("-p,--port", opts.port, "TCP port; 0 picks a free one")
    ->capture_default_str()
    ->check(CLI::Range(0, 65535));
  cmd->add_option("--max-batch", opts.max_batch, "Requests decoded together at most")
    ->capture_default_str()
    ->check(CLI::Range(1, 4096));
  cmd->add_option("--kv-budget-mib", opts.kv_budget_mib, "KV cache of all requests together")
    ->capture_default_str()
    ->check(CLI::Range(1, 1 << 24));
  cmd->add_option("-n,--max-tokens", opts.max_tokens, "Tokens per answer when a request says none")
    ->capture_default_str()
    ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--io-threads", opts.io_threads, "Threads for network I/O")
    ->capture_default_str()
    ->check(CLI::Range(1, 64));
  cmd->add_option("--max-request-mib", opts.max_request_mib, "Largest request body (413 above)")
    ->capture_default_str()
    ->check(CLI::Range(1, 1024));
  cmd->add_option("--timeout", opts.timeout_s, "Seconds one completion may take (then 503)")
    ->capture_default_str()
    ->check(CLI::Range(0.1, 86400.0));
  return cmd;
}

int serve_command(const serve_options& opts) {
  // SIGINT and SIGTERM are taken by sigwait below: block them before any thread starts, so that
  // every thread inherits the mask and none is interrupted.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  troupe::actor_system_config cfg;
  caf::actor_system sys{cfg};
  local_model_config lc;
  lc.model = opts.model;
  lc.threads = opts.threads;
  lc.context = opts.context;
  lc.kv_cache_type = opts.kv_type;
  lc.prefix_cache = !opts.no_prefix_cache;
  lc.max_batch = opts.max_batch;
  lc.kv_budget_bytes = int64_t{opts.kv_budget_mib} << 20;
  lc.default_max_tokens = static_cast<uint32_t>(opts.max_tokens);
  model_actor model;
  try {
    model = spawn_local_model(sys, lc);
  } catch (const error& e) {
    std::fprintf(stderr, "troupe serve: %s\n", e.what());
    return 2;
  }
  openai_server_options so;
  so.host = opts.host;
  so.port = static_cast<uint16_t>(opts.port);
  so.model_id = !opts.name.empty()        ? opts.name
                : opts.model == "smollm2" ? std::string("smollm2")
                                          : std::filesystem::path(opts.model).stem().string();
  so.io_threads = opts.io_threads;
  so.max_request_bytes = size_t(opts.max_request_mib) << 20;
  so.request_timeout = std::chrono::milliseconds{static_cast<int64_t>(opts.timeout_s * 1000)};
  int code = 0;
  try {
    openai_server server{sys, model, so};
    std::fprintf(stdout, "%s\n", server.base_url().c_str());
    std::fflush(stdout);
    std::fprintf(stderr, "troupe serve: serving '%s' at %s (Ctrl-C stops)\n", so.model_id.c_str(),
                 server.base_url().c_str());
    int sig = 0;
    sigwait(&stop_signals, &sig);
    auto c = server.counters();
    std::fprintf(stderr,
                 "troupe serve: stopping on %s after %llu requests (%llu completions, %llu "
                 "errors, %llu cancelled by disconnect)\n",
                 sig == SIGINT ? "SIGINT" : "SIGTERM", static_cast<unsigned long long>(c.requests),
                 static_cast<unsigned long long>(c.completions),
                 static_cast<unsigned long long>(c.errors),
                 static_cast<unsigned long long>(c.disconnects));
    server.stop();
  } catch (const error& e) {
    std::fprintf(stderr, "troupe serve: %s\n", e.what());
    code = 2;
  }
  caf::anon_send_exit(model, caf::exit_reason::user_shutdown);
  return code;
}

}  // namespace troupe::cli
