// Wide search over a real corpus nobody here wrote: the Debian copyright files of this machine
// (/usr/share/doc/*/copyright), indexed with the search plugin. For each package of a list, one
// sub-agent (a fan-out, one agent per package) searches the index, reads the package's copyright
// file and has the model extract its license and upstream source as JSON. The ground truth is in
// the files' machine-readable fields (DEP-5 `License:` of `Files: *`, and `Source:`), so the sample
// scores itself (item-level precision, recall, F1) and runs the same task with a single agent for
// comparison: wall-clock, steps and critical steps side by side.
//
//   wide_search [--count N] [--packages a,b,c] [--model smollm2|FILE.gguf]
//               [--openai-base-url URL --openai-model NAME]   (any OpenAI-compatible endpoint)
//               [--no-baseline] [--trace FILE]
//
// --trace writes both runs as a Chrome trace (Perfetto opens it): a track per agent and per tool
// call, OpenTelemetry GenAI span names.
//
// Runs on the embedded SmolLM2-135M-Instruct by default (scripts/install-deps installs it).

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "caf/all.hpp"
#include "search_index.hpp"
#include "troupe/openai_model.hpp"
#include "troupe/troupe.hpp"

namespace fs = std::filesystem;

namespace {

// Packages scripts/install-deps installs (or that every Debian system has), all with
// machine-readable copyright files.
const std::vector<std::string> default_packages{
  "libcaf-dev",      "cmake",        "ninja-build", "ccache",       "libsimdjson-dev",
  "libfmt-dev",      "libcli11-dev", "libpcre2-dev", "libsqlite3-dev", "libssl-dev",
  "libbenchmark-dev", "bubblewrap",  "git",         "zlib1g",       "libzstd1",
  "coreutils"};

const char* const answer_schema =
  R"({"type":"object","properties":{"license":{"type":"string","minLength":1,"maxLength":60},)"
  R"("source":{"type":"string","minLength":1,"maxLength":120}},)"
  R"("required":["license","source"],"additionalProperties":false})";

/// The machine-readable facts of one copyright file (DEP-5).
struct facts {
  std::string license;  ///< `License:` of the `Files: *` paragraph (its first line)
  std::string source;   ///< `Source:` of the header paragraph (its first line)
};

std::string trim(std::string s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return {};
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

std::optional<facts> read_facts(const fs::path& file) {
  std::ifstream in(file);
  std::string line;
  facts f;
  bool header = true, files_star = false, machine_readable = false;
  while (std::getline(in, line)) {
    if (trim(line).empty()) {
      header = false;
      files_star = false;
      continue;
    }
    if (line.rfind("Format:", 0) == 0) machine_readable = true;
    if (header && line.rfind("Source:", 0) == 0) f.source = trim(line.substr(7));
    if (line.rfind("Files:", 0) == 0) files_star = trim(line.substr(6)) == "*";
    if (files_star && f.license.empty() && line.rfind("License:", 0) == 0)
      f.license = trim(line.substr(8));
  }
  if (!machine_readable || f.license.empty() || f.source.empty()) return std::nullopt;
  return f;
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool same_license(const std::string& got, const std::string& want) {
  const auto g = lower(trim(got)), w = lower(trim(want));
  // "Expat" for "Expat with embedded exception" names the license: a word-boundary prefix counts.
  return !g.empty() && (g == w || (w.rfind(g, 0) == 0 && w[g.size()] == ' '));
}

bool same_source(const std::string& got, const std::string& want) {
  auto norm = [](std::string s) {
    s = lower(trim(s));
    for (const char* scheme : {"https://", "http://", "ftp://"})
      if (s.rfind(scheme, 0) == 0) s = s.substr(std::strlen(scheme));
    while (!s.empty() && s.back() == '/') s.pop_back();
    return s;
  };
  return !norm(got).empty() && norm(got) == norm(want);
}

/// The evidence the model reads: the field lines (first line of each field) of the header
/// paragraph and of the `Files: *` paragraph, as a reader skimming the file would take them.
std::string excerpt(const std::string& content) {
  std::istringstream in(content);
  std::string line, out;
  bool header = true, files_star = false;
  while (std::getline(in, line)) {
    if (trim(line).empty()) {
      header = false;
      files_star = false;
      continue;
    }
    if (line.rfind("Files:", 0) == 0) files_star = trim(line.substr(6)) == "*";
    if (!(header || files_star) || line[0] == ' ' || line[0] == '\t') continue;
    if (line.find(':') == std::string::npos || line.rfind("Copyright:", 0) == 0 ||
        line.rfind("Comment:", 0) == 0)
      continue;
    out += line.substr(0, 160) + "\n";
  }
  return out;
}

/// One package: search the index, read the best hit, extract the facts with the model.
troupe::task<std::string> license_finder(troupe::agent_context& ctx, std::string package) {
  auto query = troupe::json::dump(
    troupe::json::object{{"query", "Package " + package}, {"k", 5}, {"syntax", "plain"}});
  auto found = co_await ctx.call("search", query);
  if (found.is_error) co_return R"({"error":"search failed"})";
  int64_t doc = -1;
  const auto hits = troupe::json::parse(found.content, "search result");
  for (const auto& h : hits.find("results")->as_array()) {
    if (doc < 0) doc = h.find("doc_id")->as_int();  // best-ranked hit, unless the exact file is
    if (h.find("path")->as_string() == package + ".copyright") {
      doc = h.find("doc_id")->as_int();
      break;
    }
  }
  if (doc < 0) co_return R"({"error":"no document found"})";
  auto read_args = troupe::json::dump(troupe::json::object{{"doc_id", doc}, {"length", 2000}});
  auto text = co_await ctx.call("read", read_args);
  if (text.is_error) co_return R"({"error":"read failed"})";
  const auto content = troupe::json::parse(text.content, "read result").find("content")->as_string();
  std::vector<troupe::chat_message> question{
    troupe::chat_message::system(
      "You read the fields of Debian copyright files and answer in JSON with two fields copied "
      "exactly: \"license\", the License: value right after \"Files: *\", and \"source\", "
      "the Source: URL."),
    troupe::chat_message::user(excerpt(content))};
  auto turn = co_await ctx.chat_json(std::move(question), answer_schema);
  co_return turn.text;
}

/// The single-agent baseline: the same work for every package, one after the other.
troupe::task<std::string> license_desk(troupe::agent_context& ctx, std::string packages) {
  troupe::json::object answers;
  std::istringstream in(packages);
  std::string package;
  while (std::getline(in, package, ',')) {
    auto answer = co_await license_finder(ctx, package);
    answers.emplace_back(package, std::move(answer));
  }
  co_return troupe::json::dump(troupe::json::value{std::move(answers)});
}

struct scored {
  std::string license, source;
  bool license_ok = false, source_ok = false;
};

scored score(const std::string& answer, const facts& truth) {
  scored s;
  try {
    const auto v = troupe::json::parse(answer, "answer");
    if (const auto* l = v.find("license"); l && l->is_string()) s.license = l->as_string();
    if (const auto* u = v.find("source"); u && u->is_string()) s.source = u->as_string();
  } catch (const troupe::error&) {
  }
  s.license_ok = same_license(s.license, truth.license);
  s.source_ok = same_source(s.source, truth.source);
  return s;
}

std::string arg(int argc, char** argv, const char* name, std::string fallback = {}) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return argv[i + 1];
  return fallback;
}

bool flag(int argc, char** argv, const char* name) {
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return true;
  return false;
}

std::string cell(std::string s, size_t width) {
  if (s.size() > width) s = s.substr(0, width - 1) + "~";
  return s + std::string(width - s.size(), ' ');
}

}  // namespace

int main(int argc, char** argv) {
  using clock = std::chrono::steady_clock;
  // The packages, with their ground truth.
  std::vector<std::string> wanted = default_packages;
  if (auto list = arg(argc, argv, "--packages"); !list.empty()) {
    wanted.clear();
    std::istringstream in(list);
    for (std::string p; std::getline(in, p, ',');) wanted.push_back(p);
  }
  if (auto n = arg(argc, argv, "--count"); !n.empty())
    wanted.resize(std::min<size_t>(wanted.size(), static_cast<size_t>(std::stoul(n))));
  std::vector<std::string> packages;
  std::map<std::string, facts> truth;
  for (const auto& p : wanted) {
    if (auto f = read_facts("/usr/share/doc/" + p + "/copyright")) {
      packages.push_back(p);
      truth[p] = *f;
    } else {
      std::cerr << "wide_search: skipping " << p << ": no machine-readable copyright file\n";
    }
  }
  if (packages.empty()) {
    std::cerr << "wide_search: none of the packages has a machine-readable copyright file\n";
    return 2;
  }

  // The corpus: every copyright file of the machine, indexed for the search plugin.
  const fs::path work = fs::temp_directory_path() / ("troupe-wide-search-" + std::to_string(getpid()));
  const fs::path corpus = work / "corpus", index = work / "index.sqlite";
  fs::create_directories(corpus);
  size_t files = 0;
  for (const auto& d : fs::directory_iterator("/usr/share/doc")) {
    const auto c = d.path() / "copyright";
    std::error_code ec;
    if (fs::is_regular_file(c, ec)) {
      // Each document says whose it is (what its folder says): "Package: NAME", then the file.
      std::ifstream in(c, std::ios::binary);
      std::ofstream out(corpus / (d.path().filename().string() + ".copyright"), std::ios::binary);
      out << "Package: " << d.path().filename().string() << "\n" << in.rdbuf();
      files += out ? 1 : 0;
    }
  }
  const auto t_index = clock::now();
  troupe::search::build_index(corpus, index);
  std::cerr << "wide_search: indexed " << files << " copyright files in "
            << std::chrono::duration<double>(clock::now() - t_index).count() << " s\n";

  troupe::actor_system_config cfg;
  caf::actor_system sys{cfg};
  auto registry = troupe::spawn_tool_registry(sys);
  troupe::plugin_options opts;
  opts.allowed_dirs = {fs::path{TROUPE_SEARCH_PLUGIN}.parent_path()};
  auto loader = troupe::spawn_plugin_loader(sys, registry, opts);
  troupe::model_actor model;
  int status = 0;
  try {
    troupe::plugin_config pc;
    pc.config_json = troupe::json::dump(troupe::json::object{{"index", index.string()}});
    troupe::load_plugin(sys, loader, TROUPE_SEARCH_PLUGIN, pc);
    std::string model_name;
    if (auto url = arg(argc, argv, "--openai-base-url"); !url.empty()) {
      troupe::openai_config oc;
      oc.base_url = url;
      oc.model = arg(argc, argv, "--openai-model");
      model = troupe::spawn_openai_model(sys, oc);
      model_name = oc.model + " at " + url;
    } else {
      troupe::local_model_config lc;
      lc.model = arg(argc, argv, "--model", "smollm2");
      lc.default_max_tokens = 96;
      model = troupe::spawn_local_model(sys, lc);
      model_name = lc.model + " (local engine)";
    }
    troupe::swarm sw{sys, model, registry};
    troupe::trace_options to;
    to.model = model_name;
    to.process_name = "wide_search";
    troupe::trace_recorder trace{to};
    const std::string trace_file = arg(argc, argv, "--trace");
    if (!trace_file.empty()) sw.set_observer(trace.observer());
    sw.add_agent_type("license_finder", troupe::make_agent(license_finder),
                      "Finds one package's license and upstream source");
    sw.add_agent_type("license_desk", troupe::make_agent(license_desk),
                      "Finds every package's license and source, one after the other");
    troupe::agent_config finder;
    finder.name = "license_finder";
    finder.tools = {"search", "read"};
    finder.sampling.temperature = 0;

    // The swarm: one sub-agent per package.
    troupe::run_report swarm_report;
    const auto t0 = clock::now();
    auto results = sw.fan_out(finder, "{{item}}", packages, &swarm_report);
    const double swarm_s = std::chrono::duration<double>(clock::now() - t0).count();

    // The same task by a single agent.
    double single_s = 0;
    troupe::run_report single_report;
    std::map<std::string, std::string> single_answers;
    const bool baseline = !flag(argc, argv, "--no-baseline");
    if (baseline) {
      troupe::agent_config desk = finder;
      desk.name = "license_desk";
      std::string joined;
      for (const auto& p : packages) joined += (joined.empty() ? "" : ",") + p;
      const auto t1 = clock::now();
      auto one = sw.fan_out(desk, "{{item}}", {joined}, &single_report);
      single_s = std::chrono::duration<double>(clock::now() - t1).count();
      if (one[0].ok()) {
        const auto answers = troupe::json::parse(one[0].text, "desk answer");
        for (const auto& [p, a] : answers.as_object()) single_answers[p] = a.as_string();
      }
    }

    // The table and the scores.
    size_t predicted = 0, correct = 0, single_correct = 0;
    std::cout << cell("package", 18) << cell("license (model)", 28) << "ok  "
              << cell("source (model)", 46) << "ok\n";
    for (size_t i = 0; i < packages.size(); ++i) {
      const auto& p = packages[i];
      if (!results[i].ok()) std::cerr << "wide_search: " << p << ": " << results[i].failure.render() << "\n";
      const scored s = score(results[i].ok() ? results[i].text : "", truth[p]);
      predicted += (s.license.empty() ? 0 : 1) + (s.source.empty() ? 0 : 1);
      correct += (s.license_ok ? 1 : 0) + (s.source_ok ? 1 : 0);
      if (baseline) {
        const scored b = score(single_answers[p], truth[p]);
        single_correct += (b.license_ok ? 1 : 0) + (b.source_ok ? 1 : 0);
      }
      std::cout << cell(p, 18) << cell(s.license, 28) << (s.license_ok ? "yes " : "no  ")
                << cell(s.source, 46) << (s.source_ok ? "yes" : "no") << "\n";
    }
    const double gold = 2.0 * static_cast<double>(packages.size());
    const double precision = predicted ? static_cast<double>(correct) / predicted : 0;
    const double recall = static_cast<double>(correct) / gold;
    const double f1 = precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0;
    std::printf("\nmodel: %s; %zu packages, %zu facts (license and source of each)\n",
                model_name.c_str(), packages.size(), static_cast<size_t>(gold));
    std::printf("accuracy: precision %.2f, recall %.2f, F1 %.2f (%zu of %zu facts right)\n",
                precision, recall, f1, correct, static_cast<size_t>(gold));
    std::printf("swarm: %zu sub-agents, %.1f s wall-clock, %u steps, %u critical steps, %u tool "
                "calls\n",
                packages.size(), swarm_s, swarm_report.total_steps, swarm_report.critical_steps,
                swarm_report.tool_calls);
    if (baseline) {
      std::printf("single agent: %.1f s wall-clock, %u steps, %u critical steps, %u tool calls; "
                  "%zu of %zu facts right\n",
                  single_s, single_report.total_steps, single_report.critical_steps,
                  single_report.tool_calls, single_correct, static_cast<size_t>(gold));
      std::printf("swarm vs single agent: %.2fx faster, %.1fx fewer critical steps\n",
                  single_s / std::max(swarm_s, 1e-9),
                  static_cast<double>(single_report.critical_steps) /
                    std::max(1u, swarm_report.critical_steps));
    }
    if (!trace_file.empty()) {
      trace.write(trace_file);
      std::cerr << "wide_search: trace written to " << trace_file << "\n";
    }
  } catch (const troupe::error& e) {
    std::cerr << "wide_search: " << e.render() << "\n";
    status = 1;
  }
  if (model) caf::anon_send_exit(model, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(loader, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(registry, caf::exit_reason::user_shutdown);
  std::error_code ec;
  fs::remove_all(work, ec);
  return status;
}
