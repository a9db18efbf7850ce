// Queries per second of the search plugin on a generated corpus of BENCH_SEARCH_DOCS documents
// (default 10,000; 80 to 200 words each, drawn from a Zipf-distributed vocabulary of 20,000
// pseudo-words), indexed once per process. Each query asks for the best 10 hits with snippets.
//
//   search_plugin/<mix>   through the plugin's C entry point (descriptor->invoke): JSON
//                         arguments in, JSON results out, exactly what a host pays
//   search_direct/<mix>   baseline: the same FTS5 query through troupe::search::index_reader,
//                         in this process, without the plugin layer
// Mixes: 0 one frequent word, 1 one mid-frequency word, 2 two words (AND), 3 a prefix query.
// items_per_second is queries/s; the plugin/direct ratio is the plugin layer's cost.
#include <benchmark/benchmark.h>
#include <dlfcn.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "search_index.hpp"
#include "troupe/plugin/plugin_api.h"

namespace fs = std::filesystem;

namespace {

constexpr size_t vocabulary_size = 20000;

std::string pseudo_word(size_t rank) {
  static const char* syllables[] = {"ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pa",
                                    "qu", "ri", "do", "fe", "gu", "hi", "jo", "be", "ca", "xi"};
  std::string w;
  size_t r = rank + 20;  // at least two syllables
  while (r > 0) {
    w += syllables[r % 20];
    r /= 20;
  }
  return w;
}

/// The corpus and its index in a temporary directory, built on first use.
struct corpus {
  fs::path dir;
  fs::path index;
  size_t docs = 0;
  std::vector<std::string> words;  // by rank

  corpus() {
    const char* env = std::getenv("BENCH_SEARCH_DOCS");
    docs = env ? std::strtoul(env, nullptr, 10) : 10000;
    char tmpl[] = "/tmp/troupe-bench-search-XXXXXX";
    dir = ::mkdtemp(tmpl);
    index = dir / "index.sqlite";
    for (size_t r = 0; r < vocabulary_size; ++r) words.push_back(pseudo_word(r));
    std::vector<double> weights(vocabulary_size);
    for (size_t r = 0; r < vocabulary_size; ++r) weights[r] = 1.0 / static_cast<double>(r + 1);
    std::discrete_distribution<size_t> zipf(weights.begin(), weights.end());
    std::mt19937_64 rng(42);
    std::uniform_int_distribution<int> length(80, 200);
    fs::create_directories(dir / "docs");
    for (size_t d = 0; d < docs; ++d) {
      std::ofstream out(dir / "docs" / ("doc" + std::to_string(d) + ".txt"));
      int n = length(rng);
      for (int i = 0; i < n; ++i) out << words[zipf(rng)] << (i % 12 == 11 ? ".\n" : " ");
    }
    auto stats = troupe::search::build_index(dir / "docs", index);
    if (stats.added != docs) throw std::runtime_error("bench_search: indexing lost documents");
  }
  ~corpus() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }

  /// 64 queries of a mix (see the file comment), deterministic.
  std::vector<std::string> queries(int mix) const {
    std::mt19937_64 rng(7 + mix);
    std::uniform_int_distribution<size_t> frequent(5, 50), middle(200, 2000);
    std::vector<std::string> q;
    for (int i = 0; i < 64; ++i) {
      switch (mix) {
        case 0: q.push_back(words[frequent(rng)]); break;
        case 1: q.push_back(words[middle(rng)]); break;
        case 2: q.push_back(words[frequent(rng)] + " " + words[middle(rng)]); break;
        default: q.push_back(words[middle(rng)].substr(0, 5) + "*"); break;
      }
    }
    return q;
  }
};

corpus& the_corpus() {
  static corpus c;
  return c;
}

struct reply {
  std::string content;
  int is_error = 0;
};

void collect(void* ud, const char* content, size_t size, int is_error) {
  auto* r = static_cast<reply*>(ud);
  r->content.assign(content, size);
  r->is_error = is_error;
}

/// The plugin, loaded once, with an instance over the corpus' index.
struct plugin {
  void* handle = nullptr;
  const troupe_plugin_descriptor* desc = nullptr;
  troupe_plugin_instance* inst = nullptr;

  plugin() {
    handle = ::dlopen(TROUPE_SEARCH_PLUGIN, RTLD_NOW | RTLD_LOCAL);
    if (!handle) throw std::runtime_error(std::string("dlopen: ") + ::dlerror());
    auto entry =
      reinterpret_cast<troupe_plugin_entry_fn>(::dlsym(handle, TROUPE_PLUGIN_ENTRY_SYMBOL));
    desc = entry ? entry(TROUPE_PLUGIN_ABI_VERSION) : nullptr;
    if (!desc) throw std::runtime_error("bench_search: no plugin descriptor");
    std::string config = "{\"index\":\"" + the_corpus().index.string() + "\"}";
    reply err;
    inst = desc->init(config.data(), config.size(), &collect, &err);
    if (!inst) throw std::runtime_error("bench_search: init failed: " + err.content);
  }
  ~plugin() {
    if (inst) desc->unload(inst);
    if (handle) ::dlclose(handle);
  }
};

plugin& the_plugin() {
  static plugin p;
  return p;
}

std::string search_args(const std::string& q) { return "{\"query\":\"" + q + "\",\"k\":10}"; }

void search_plugin(benchmark::State& state) {
  auto queries = the_corpus().queries(static_cast<int>(state.range(0)));
  plugin& p = the_plugin();
  std::vector<std::string> args;
  for (const auto& q : queries) args.push_back(search_args(q));
  // Check before timing: every query answers without error, with hits and doc ids.
  reply r;
  for (const auto& a : args) {
    p.desc->invoke(p.inst, "search", a.data(), a.size(), &collect, &r);
    if (r.is_error || r.content.find("\"doc_id\":") == std::string::npos) {
      state.SkipWithError(("bad search result: " + r.content).c_str());
      return;
    }
  }
  size_t i = 0;
  for (auto _ : state) {
    const std::string& a = args[i++ & 63];
    p.desc->invoke(p.inst, "search", a.data(), a.size(), &collect, &r);
    benchmark::DoNotOptimize(r.content.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.counters["docs"] = static_cast<double>(the_corpus().docs);
}

void search_direct(benchmark::State& state) {
  auto queries = the_corpus().queries(static_cast<int>(state.range(0)));
  troupe::search::index_reader reader(the_corpus().index);
  for (const auto& q : queries)
    if (reader.search(q, 10).empty()) {
      state.SkipWithError(("no hits for " + q).c_str());
      return;
    }
  size_t i = 0;
  for (auto _ : state) {
    auto hits = reader.search(queries[i++ & 63], 10);
    benchmark::DoNotOptimize(hits.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.counters["docs"] = static_cast<double>(the_corpus().docs);
}

}  // namespace

BENCHMARK(search_plugin)->DenseRange(0, 3)->Unit(benchmark::kMicrosecond);
BENCHMARK(search_direct)->DenseRange(0, 3)->Unit(benchmark::kMicrosecond);

BENCHMARK_MAIN();
