// Constrained decoding on SmolLM2-135M's 49,152-token vocabulary.
//
// 1. Mask time per token for the schemas of troupe's built-in tools (read from the plugin files'
//    descriptors): decoding is simulated with random allowed tokens under the engine's rules (a
//    mask per step, trimmed to what can still close within the token budget, one mask cache per
//    grammar that lives across requests as in the engine). Reports p50/p90/p99/max over all steps,
//    and the baseline in the same run: the brute-force mask (every token fed to the matcher).
// 2. With --tool-runs N: N sampled turns (temperature 1) of a tool-using prompt through the engine
//    actor, each checked against the tool's schema with troupe's validator.
//
//   bench_grammar [--generations N] [--tool-runs N]

#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "caf/all.hpp"
#include "troupe/caf_types.hpp"
#include "troupe/json.hpp"
#include "troupe/llama/grammar.hpp"
#include "troupe/llama/llama_model.hpp"
#include "troupe/llama/token_mask.hpp"
#include "troupe/llama/tokenizer.hpp"
#include "troupe/local_model.hpp"
#include "troupe/plugin/plugin_api.h"

using namespace troupe;
using namespace troupe::llama;
using clock_type = std::chrono::steady_clock;

namespace {

std::vector<tool_spec> builtin_tools() {
  std::vector<tool_spec> out;
  for (const char* path : {TROUPE_PLUGIN_FS, TROUPE_PLUGIN_EXEC, TROUPE_PLUGIN_SEARCH,
                           TROUPE_PLUGIN_FETCH}) {
    void* lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) {
      std::fprintf(stderr, "bench_grammar: cannot load %s: %s\n", path, dlerror());
      continue;
    }
    auto entry = reinterpret_cast<troupe_plugin_entry_fn>(dlsym(lib, TROUPE_PLUGIN_ENTRY_SYMBOL));
    const troupe_plugin_descriptor* d = entry ? entry(TROUPE_PLUGIN_ABI_VERSION) : nullptr;
    for (size_t i = 0; d != nullptr && i < d->tool_count; ++i) {
      const troupe_plugin_tool* t = TROUPE_PLUGIN_TOOL_AT(d, i);
      out.push_back({t->name, t->description, t->parameters});
    }
    // The strings are the library's: keep it loaded for the whole run.
  }
  return out;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

int arg(int argc, char** argv, const char* name, int fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return std::atoi(argv[i + 1]);
  return fallback;
}

/// Brute force: every token fed to a copy of the state.
size_t brute_force_allowed(const token_masker& m, const grammar_matcher& state) {
  size_t n = 0;
  for (int32_t t = 0; t < m.vocab_size(); ++t) {
    if (m.bytes(t).empty()) continue;
    grammar_matcher s = state;
    n += s.feed(m.bytes(t)) ? 1 : 0;
  }
  return n;
}

int tool_runs(int runs, const std::vector<tool_spec>& tools) {
  troupe::actor_system_config cfg;
  caf::actor_system sys{cfg};
  local_model_config lc;
  auto model = spawn_local_model(sys, lc);
  caf::scoped_actor self{sys};
  std::vector<decltype(self->request(model, caf::infinite, chat_atom::value, chat_request{}))> hs;
  const std::vector<std::string> prompts{
    "Show me the first 20 lines of notes.txt.", "Find every TODO in the src directory.",
    "Write 'hello' to greeting.txt.", "What files are in the docs folder?"};
  const auto t0 = clock_type::now();
  for (int i = 0; i < runs; ++i) {
    chat_request req;
    req.id = static_cast<uint64_t>(i + 1);
    req.messages = {chat_message::user(prompts[static_cast<size_t>(i) % prompts.size()])};
    req.tools = tools;
    req.choice = {tool_choice_mode::required, ""};
    req.sampling.temperature = 1.0f;
    req.sampling.seed = static_cast<uint64_t>(i + 1);
    req.max_tokens = 256;
    hs.push_back(self->request(model, caf::infinite, chat_atom::value, req));
  }
  int valid = 0, calls = 0, failed = 0;
  for (auto& h : hs) {
    h.receive(
      [&](assistant_turn& t) {
        bool ok = !t.tool_calls.empty();
        for (const auto& c : t.tool_calls) {
          ++calls;
          auto it = std::find_if(tools.begin(), tools.end(),
                                 [&](const tool_spec& s) { return s.name == c.name; });
          if (it == tools.end() ||
              !json::validate(json::parse(c.arguments), json::parse(it->parameters)).empty()) {
            ok = false;
            std::printf("  invalid: %s %s\n", c.name.c_str(), c.arguments.c_str());
          }
        }
        valid += ok ? 1 : 0;
      },
      [&](caf::error& e) {
        ++failed;
        std::printf("  failed: %s\n", caf::to_string(e).c_str());
      });
  }
  const double s = std::chrono::duration<double>(clock_type::now() - t0).count();
  caf::anon_send_exit(model, caf::exit_reason::user_shutdown);
  std::printf("sampled tool turns (temperature 1, tool_choice required, %zu tools): %d/%d turns "
              "with only schema-valid calls (%d calls, %d failed requests), %.1f s\n",
              tools.size(), valid, runs, calls, failed, s);
  return valid == runs ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const int generations = arg(argc, argv, "--generations", 20);
  const int runs = arg(argc, argv, "--tool-runs", 0);
  const auto path = resolve_model_path("smollm2");
  if (!std::filesystem::exists(path)) {
    std::printf("bench_grammar: skipped, %s is not installed (run scripts/install-deps)\n",
                path.c_str());
    return 0;
  }
  const auto tools = builtin_tools();
  if (tools.empty()) {
    std::fprintf(stderr, "bench_grammar: no built-in tool plugin could be read\n");
    return 1;
  }
  const auto model = llama_model::load(path);
  const auto tok = tokenizer::from_gguf(model->file());
  auto t0 = clock_type::now();
  const token_masker masker(tok);
  const double setup_ms = std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
  std::printf("vocabulary %d tokens; token classes and trie built in %.1f ms\n", masker.vocab_size(),
              setup_ms);

  std::mt19937 rng(1234);
  std::vector<double> all_us, cold_us, brute_us;
  std::printf("%-14s %6s %9s %9s %9s %9s %9s\n", "tool", "steps", "p50 us", "p90 us", "p99 us",
              "max us", "cold p50");
  for (const auto& tool : tools) {
    const std::vector<tool_spec> one{tool};
    const auto g = grammar::for_tool_calls(one, {tool_choice_mode::named, tool.name});
    mask_cache cache;
    std::vector<double> us, cold;
    for (int gen = 0; gen < generations; ++gen) {
      grammar_matcher state(g);
      const int max_tokens = 160;
      for (int step = 0; step < max_tokens && !state.done(); ++step) {
        const size_t before = cache.size();
        const auto a = clock_type::now();
        auto mask = masker.allowed(state, &cache);
        mask = masker.within_budget(state, mask, static_cast<uint32_t>(max_tokens - step - 1));
        const double t = std::chrono::duration<double, std::micro>(clock_type::now() - a).count();
        us.push_back(t);
        if (cache.size() > before) cold.push_back(t);
        // A random allowed token; the end when allowed, half of the time.
        std::vector<int32_t> ids;
        bool can_stop = false;
        for (int32_t i = 0; i < masker.vocab_size(); ++i) {
          if (!test_token(*mask, i)) continue;
          if (masker.is_end_of_generation(i)) can_stop = true;
          else if (!masker.bytes(i).empty()) ids.push_back(i);
        }
        if (ids.empty() || (can_stop && rng() % 2 == 0)) break;
        if (!state.feed(masker.bytes(ids[rng() % ids.size()]))) {
          std::fprintf(stderr, "bench_grammar: a masked token broke the grammar\n");
          return 1;
        }
        if (gen == 0 && step % 16 == 0) {  // The baseline on a sample of the same states.
          const auto b = clock_type::now();
          volatile size_t n = brute_force_allowed(masker, state);
          (void)n;
          brute_us.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - b).count());
        }
      }
    }
    std::printf("%-14s %6zu %9.1f %9.1f %9.1f %9.1f %9.1f\n", tool.name.c_str(), us.size(),
                percentile(us, 0.5), percentile(us, 0.9), percentile(us, 0.99),
                percentile(us, 1.0), percentile(cold, 0.5));
    all_us.insert(all_us.end(), us.begin(), us.end());
    cold_us.insert(cold_us.end(), cold.begin(), cold.end());
  }
  const double p50 = percentile(all_us, 0.5), p99 = percentile(all_us, 0.99);
  const double brute = percentile(brute_us, 0.5);
  std::printf("all tools: %zu masks, p50 %.1f us, p99 %.1f us (goal p50 <= 50, p99 <= 500); "
              "cache misses %zu, their p50 %.1f us, p99 %.1f us\n",
              all_us.size(), p50, p99, cold_us.size(), percentile(cold_us, 0.5),
              percentile(cold_us, 0.99));
  std::printf("baseline, brute force over the vocabulary: p50 %.1f us per mask (%.0fx the p50, "
              "%.1fx the cold p50)\n",
              brute, brute / std::max(p50, 1e-3), brute / std::max(percentile(cold_us, 0.5), 1e-3));
  return runs > 0 ? tool_runs(runs, tools) : 0;
}
