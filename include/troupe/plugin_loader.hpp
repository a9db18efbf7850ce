#pragma once
/// Tool plugins at run time: the plugin loader actor loads a plugin shared library (built with
/// troupe/plugin/plugin.hpp), registers its tools with a tool registry, and unloads it on request
/// once no call is in flight. A plugin runs either in process (trusted plugins; the default) or out
/// of process in `troupe-plugin-host`, where a crash, abort, hang or garbage output becomes a tool
/// error for the calls in flight and the host is restarted with backoff.
///
///   auto loader = troupe::spawn_plugin_loader(sys, registry, {.allowed_dirs = {"/opt/plugins"}});
///   auto tools = troupe::load_plugin(sys, loader, "fs", cfg);   // {"grep","list_dir",...}
///   ...                                                        // agents call the tools
///   troupe::unload_plugin(sys, loader, "fs");
///
/// Where calls run. In process, a call goes to the plugin's invoke_async (the plugin chooses its
/// threads; the result comes back to the plugin's tool actor as a message sent from the plugin's
/// completion callback); a plugin without invoke_async gets a thread per call (one call at a time
/// if it is not thread-safe). No plugin code runs on CAF's scheduler threads, except with
/// plugin_config::inline_calls, which runs the synchronous invoke on the tool actor itself: the
/// fastest path, for trusted plugins whose tools return in microseconds. dlopen and dlclose run on
/// a thread of their own.
///
/// Out of process, one host process per plugin runs the calls (up to 16 at once for a thread-safe
/// plugin). The runtime finds the host binary, in this order: plugin_options::host_path, the
/// environment variable TROUPE_PLUGIN_HOST, `troupe-plugin-host` next to libtroupe (the build tree
/// puts it there), then ../libexec/troupe/ relative to libtroupe (the installed layout).

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "caf/atom.hpp"
#include "caf/fwd.hpp"
#include "caf/meta/type_name.hpp"
#include "caf/replies_to.hpp"
#include "caf/typed_actor.hpp"
#include "troupe/atoms.hpp"
#include "troupe/tool.hpp"

namespace troupe {

using load_atom = caf::atom_constant<caf::atom("load")>;
using unload_atom = caf::atom_constant<caf::atom("unload")>;
using describe_atom = caf::atom_constant<caf::atom("describe")>;

/// How one plugin is run. Chosen per plugin (per load request).
struct plugin_config {
  bool out_of_process = false;     ///< Run it in troupe-plugin-host instead of in this process.
  std::string config_json = "{}";  ///< Given to the plugin's init, e.g. {"root":"/srv/work"}.
  /// Limits of each of its tools. timeout_ms is enforced by the plugin's tool actor: a late call
  /// is cancelled (in process) or kills and restarts the host (out of process); 0: no limit.
  tool_options tools;
  std::string tool_prefix;    ///< Registered names are tool_prefix + the plugin's tool name.
  uint32_t max_restarts = 5;  ///< Host restarts in a row (no successful call between) allowed.
  uint32_t restart_backoff_ms = 100;  ///< Delay before the first restart; doubles each time.
  uint32_t max_backoff_ms = 5000;     ///< Longest delay between restarts.
  /// In process only: run invoke on the tool actor itself (see above); no timeout applies.
  bool inline_calls = false;
  uint32_t unload_timeout_ms = 60000;  ///< How long unload waits for calls in flight.

  friend bool operator==(const plugin_config&, const plugin_config&) = default;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, plugin_config& x) {
  return f(caf::meta::type_name("troupe.plugin_config"), x.out_of_process, x.config_json, x.tools,
           x.tool_prefix, x.max_restarts, x.restart_backoff_ms, x.max_backoff_ms, x.inline_calls,
           x.unload_timeout_ms);
}

/// The loader's configuration: where plugins may come from, and the defaults for each plugin.
struct plugin_options : plugin_config {
  /// Plugins load only from these directories (compared canonically: a symbolic link inside one
  /// that leads out of it is refused). Empty: nothing may be loaded.
  std::vector<std::filesystem::path> allowed_dirs;
  std::string host_path;  ///< troupe-plugin-host to use; empty: search (see the file comment).
};

/// A loaded plugin as the loader sees it.
struct plugin_info {
  std::string name;  ///< The plugin's own name, e.g. "fs"; unique among loaded plugins.
  std::string version;
  std::string path;  ///< Canonical path of the library.
  bool out_of_process = false;
  std::vector<tool_spec> tools;  ///< As registered (with tool_prefix).
  uint32_t calls_in_flight = 0;
  uint32_t restarts = 0;  ///< Host restarts so far (out of process).
  std::string state;      ///< "loaded", "restarting", "failed" or "unloading".

  friend bool operator==(const plugin_info&, const plugin_info&) = default;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, plugin_info& x) {
  return f(caf::meta::type_name("troupe.plugin_info"), x.name, x.version, x.path, x.out_of_process,
           x.tools, x.calls_in_flight, x.restarts, x.state);
}

/// Protocol of the plugin loader. Requests are answered in any order; use finite timeouts.
/// - (load, path) -> registered tool names, with the loader's default plugin_config.
/// - (load, path, config) -> registered tool names. `path` is a file inside an allowed directory,
///   or a bare name looked up there (as is, then as libtroupe_plugin_<name>.so). Fails with a
///   troupe::error (as caf::error, see from_caf_error) for a path outside the allowed
///   directories, a file that is not a shared library, a library without troupe_plugin_entry,
///   another ABI version, a plugin refusing its configuration, a plugin or tool name already
///   taken. Nothing is registered on failure.
/// - (unload, name) -> true once the plugin's calls in flight are done, its tools unregistered and
///   the library closed (or the host stopped). Meanwhile its tools answer new calls with a tool
///   error saying the plugin is being unloaded. errc::not_found for an unknown name; errc::timeout
///   when calls still run after unload_timeout_ms (the plugin then stays, refusing calls).
/// - (list) -> every loaded plugin, sorted by name.
/// - (describe, name) -> the plugin's info with live counters; errc::not_found if not loaded.
/// Plugins stop (and are unloaded) when the loader or the registry stops.
using plugin_loader_actor = caf::typed_actor<
    caf::replies_to<load_atom, std::string>::with<std::vector<std::string>>,
    caf::replies_to<load_atom, std::string, plugin_config>::with<std::vector<std::string>>,
    caf::replies_to<unload_atom, std::string>::with<bool>,
    caf::replies_to<list_atom>::with<std::vector<plugin_info>>,
    caf::replies_to<describe_atom, std::string>::with<plugin_info>>;

/// Spawns a plugin loader that registers plugin tools with `registry`.
plugin_loader_actor spawn_plugin_loader(caf::actor_system& sys, tool_registry_actor registry,
                                        plugin_options options);

/// Blocking helpers for code outside actors (never call them from an actor). They throw
/// troupe::error on failure.
std::vector<std::string> load_plugin(caf::actor_system& sys, const plugin_loader_actor& loader,
                                     const std::string& path);
std::vector<std::string> load_plugin(caf::actor_system& sys, const plugin_loader_actor& loader,
                                     const std::string& path, const plugin_config& config);
void unload_plugin(caf::actor_system& sys, const plugin_loader_actor& loader,
                   const std::string& name);
std::vector<plugin_info> list_plugins(caf::actor_system& sys, const plugin_loader_actor& loader);
plugin_info describe_plugin(caf::actor_system& sys, const plugin_loader_actor& loader,
                            const std::string& name);

/// The default plugin directories that exist: each entry of $TROUPE_PLUGIN_PATH (':'-separated),
/// then the plugins directory of this build (../plugins next to libtroupe) or of the installation
/// (troupe/plugins next to libtroupe).
std::vector<std::filesystem::path> default_plugin_dirs();

/// The plugin files (regular files named *.so) directly inside `dirs`, sorted, canonical.
std::vector<std::filesystem::path> find_plugin_files(
    const std::vector<std::filesystem::path>& dirs);

/// The troupe-plugin-host binary (search order in the file comment). Throws troupe::error
/// (errc::not_found) saying how to point troupe at it.
std::string find_plugin_host(const std::string& configured = {});

}  // namespace troupe
