#include "plugins_command.hpp"

#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "caf/all.hpp"
#include "troupe/caf_types.hpp"
#include "troupe/json.hpp"
#include "troupe/plugin_loader.hpp"
#include "troupe/tool_registry.hpp"

namespace troupe::cli {
namespace {

std::vector<std::filesystem::path> plugin_dirs(const plugins_options& opts) {
  if (opts.plugin_dirs.empty()) return default_plugin_dirs();
  return {opts.plugin_dirs.begin(), opts.plugin_dirs.end()};
}

json::value info_json(const plugin_info& info) {
  json::array tools;
  for (const auto& t : info.tools) {
    json::object o;
    o.emplace_back("name", t.name);
    o.emplace_back("description", t.description);
    try {
      o.emplace_back("parameters", json::parse(t.parameters));
    } catch (const error&) {
      o.emplace_back("parameters", t.parameters);
    }
    tools.emplace_back(std::move(o));
  }
  json::object o;
  o.emplace_back("name", info.name);
  o.emplace_back("version", info.version);
  o.emplace_back("path", info.path);
  o.emplace_back("out_of_process", info.out_of_process);
  o.emplace_back("tools", std::move(tools));
  return json::value{std::move(o)};
}

int list_command(const plugins_options& opts) {
  auto dirs = plugin_dirs(opts);
  auto files = find_plugin_files(dirs);
  if (opts.json) {
    json::array a;
    for (const auto& f : files) a.emplace_back(f.string());
    std::printf("%s\n", json::dump(json::value{std::move(a)}).c_str());
    return 0;
  }
  if (dirs.empty()) {
    std::fprintf(stderr,
                 "troupe plugins list: no plugin directory found; give --plugin-dir or "
                 "set TROUPE_PLUGIN_PATH\n");
    return 0;
  }
  for (const auto& d : dirs) std::fprintf(stderr, "plugin directory: %s\n", d.c_str());
  for (const auto& f : files) std::printf("%s\n", f.c_str());
  return 0;
}

int load_command(const plugins_options& opts) {
  troupe::actor_system_config cfg;
  caf::actor_system sys{cfg};
  auto registry = spawn_tool_registry(sys);
  plugin_options popts;
  popts.allowed_dirs = plugin_dirs(opts);
  auto loader = spawn_plugin_loader(sys, registry, popts);
  plugin_config pcfg;
  pcfg.out_of_process = opts.out_of_process;
  pcfg.config_json = opts.config_json;
  int code = 0;
  try {
    auto t0 = std::chrono::steady_clock::now();
    load_plugin(sys, loader, opts.plugin, pcfg);
    auto t1 = std::chrono::steady_clock::now();
    auto infos = list_plugins(sys, loader);
    const plugin_info info = infos.at(0);
    unload_plugin(sys, loader, info.name);
    auto t2 = std::chrono::steady_clock::now();
    auto ms = [](auto d) { return std::chrono::duration<double, std::milli>(d).count(); };
    if (opts.json) {
      std::printf("%s\n", json::dump(info_json(info)).c_str());
    } else if (opts.action == "unload") {
      std::printf("plugin '%s' %s loaded in %.1f ms and unloaded cleanly in %.1f ms\n",
                  info.name.c_str(), info.version.c_str(), ms(t1 - t0), ms(t2 - t1));
    } else {
      std::printf("%s %s  %s  (%s, %zu tools)\n", info.name.c_str(), info.version.c_str(),
                  info.path.c_str(), info.out_of_process ? "out of process" : "in process",
                  info.tools.size());
      for (const auto& t : info.tools) {
        std::printf("  %-16s %s\n", t.name.c_str(), t.description.c_str());
        if (opts.action == "describe")
          std::printf("  %-16s parameters: %s\n", "", t.parameters.c_str());
      }
    }
  } catch (const error& e) {
    std::fprintf(stderr, "troupe plugins %s: %s\n", opts.action.c_str(), e.message().c_str());
    code = 1;
  }
  caf::anon_send_exit(loader, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(registry, caf::exit_reason::user_shutdown);
  return code;
}

}  // namespace

CLI::App* add_plugins_command(CLI::App& app, plugins_options& opts) {
  auto* plugins = app.add_subcommand(
      "plugins",
      "Inspect tool plugins (shared libraries built with troupe/plugin/plugin.hpp).\n"
      "Plugins load only from the plugin directories: every --plugin-dir, or by default\n"
      "$TROUPE_PLUGIN_PATH and the plugins directory of this build or installation.");
  plugins->require_subcommand(1);
  plugins->fallthrough();  // --plugin-dir and --json may also follow the verb
  plugins->add_option("--plugin-dir", opts.plugin_dirs, "Plugin directory (repeatable)");
  plugins->add_flag("--json", opts.json, "Print JSON");
  auto* list = plugins->add_subcommand("list", "List the plugin files in the plugin directories");
  list->callback([&opts] { opts.action = "list"; });
  struct verb {
    const char* name;
    const char* help;
  };
  for (auto [name, help] :
       {verb{"load", "Load a plugin, print its tools, unload it"},
        verb{"describe", "Load a plugin, print its tools with their parameter schemas, unload it"},
        verb{"unload", "Load and unload a plugin, checking that it unloads cleanly"}}) {
    auto* sub = plugins->add_subcommand(name, help);
    sub->add_option("plugin", opts.plugin,
                    "Plugin file, or a name looked up in the plugin directories (fs finds "
                    "libtroupe_plugin_fs.so)")
        ->required();
    sub->add_flag("--out-of-process", opts.out_of_process,
                  "Load it in troupe-plugin-host (found via TROUPE_PLUGIN_HOST or next to "
                  "libtroupe)");
    sub->add_option("--config", opts.config_json,
                    "Configuration JSON given to the plugin, e.g. '{\"root\":\".\"}'");
    sub->callback([&opts, n = std::string{name}] { opts.action = n; });
  }
  return plugins;
}

int plugins_command(const plugins_options& opts) {
  if (opts.action == "list") return list_command(opts);
  if (opts.action == "load" || opts.action == "describe" || opts.action == "unload")
    return load_command(opts);
  std::fprintf(stderr, "troupe plugins: give one of list, load, unload, describe\n");
  return 2;
}

}  // namespace troupe::cli
