#pragma once
/// `troupe plugins list|load|unload|describe`: inspecting tool plugins from the command line.
///
/// A one-shot troupe process keeps nothing loaded, so `load` means: load the plugin (with every
/// check troupe makes), describe it, print its tools, unload it; `describe` does the same and
/// prints each tool's description and parameter schema; `unload` loads and unloads the plugin to
/// check that it unloads cleanly. `list` lists the plugin files in the plugin directories: every
/// --plugin-dir, or by default $TROUPE_PLUGIN_PATH and the plugins directory of the build or
/// installation.

#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace troupe::cli {

struct plugins_options {
  std::string action;  ///< "list", "load", "unload" or "describe" (set by the parser).
  std::string plugin;  ///< A path, or a name looked up in the plugin directories.
  std::vector<std::string> plugin_dirs;
  bool out_of_process = false;
  std::string config_json = "{}";
  bool json = false;
};

/// Adds the `plugins` subcommand (and its own subcommands) to `app`, filling `opts`.
CLI::App* add_plugins_command(CLI::App& app, plugins_options& opts);

/// Returns the process exit code: 0 success, 1 the plugin cannot be loaded, 2 bad usage.
int plugins_command(const plugins_options& opts);

}  // namespace troupe::cli
