#pragma once
/// Loading one plugin shared library with the checks troupe makes before trusting it: the file lies
/// inside an allowed directory, it is a shared library, it exports troupe_plugin_entry, it speaks
/// this ABI version, and its descriptor is well formed. No CAF: used by the runtime (in process)
/// and by troupe-plugin-host (out of process).

#include <cstdint>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "troupe/plugin/plugin_api.h"

namespace troupe::plugin_loading {

/// Why a plugin could not be loaded. Stable numbers: they cross the host pipe.
enum class failure : uint8_t {
  none = 0,
  no_allowed_dirs = 1,       ///< No plugin directory is configured.
  not_found = 2,             ///< The file does not exist.
  outside_allowed_dirs = 3,  ///< The canonical path lies outside every allowed directory.
  not_a_file = 4,            ///< A directory, device, fifo ...
  not_a_library = 5,         ///< dlopen refused it.
  no_entry_point = 6,        ///< A shared library without troupe_plugin_entry.
  abi_mismatch = 7,          ///< The entry refused our ABI version, or speaks a newer one.
  bad_descriptor = 8,        ///< Missing functions, tools without names, duplicate tools ...
  init_failed = 9,           ///< The plugin refused its configuration.
};

/// A load failure with a message for people (what, which file, what to do).
class load_error : public std::runtime_error {
 public:
  load_error(failure why, const std::string& message) : std::runtime_error(message), why_(why) {}
  failure why() const noexcept { return why_; }

 private:
  failure why_;
};

/// The canonical path of `path` after checking that it is a regular file inside one of `dirs`
/// (compared canonically, so a symbolic link that leads out of them is refused). A `path` without
/// '/' is looked up in `dirs`, as given and as libtroupe_plugin_<path>.so. Throws load_error.
std::string check_plugin_path(const std::string& path,
                              const std::vector<std::filesystem::path>& dirs);

struct tool_info {
  std::string name;
  std::string description;
  std::string parameters;
};

/// One loaded library and one instance of its plugin. Not thread-safe except
/// `invoke`/`invoke_async` as the plugin's flags allow. The destructor unloads the instance and
/// closes the library.
class library {
 public:
  /// dlopen(RTLD_NOW | RTLD_LOCAL) + every check + init(config_json). `path` should come from
  /// check_plugin_path. Throws load_error.
  static std::unique_ptr<library> open(const std::string& path, const std::string& config_json);

  ~library();
  library(const library&) = delete;
  library& operator=(const library&) = delete;

  const std::string& path() const noexcept { return path_; }
  const std::string& name() const noexcept { return name_; }
  const std::string& version() const noexcept { return version_; }
  bool thread_safe() const noexcept { return (desc_->flags & TROUPE_PLUGIN_THREAD_SAFE) != 0; }
  uint32_t flags() const noexcept { return desc_->flags; }
  const std::vector<tool_info>& tools() const noexcept { return tools_; }
  const troupe_plugin_descriptor& descriptor() const noexcept { return *desc_; }
  troupe_plugin_instance* instance() const noexcept { return instance_; }
  /// invoke_async, or nullptr when the plugin has none (or an older descriptor lacks the field).
  decltype(troupe_plugin_descriptor::invoke_async) invoke_async() const noexcept;
  decltype(troupe_plugin_descriptor::cancel) cancel() const noexcept;

  /// Unloads the instance and closes the library now; later calls are errors. Idempotent.
  void close() noexcept;

 private:
  library() = default;
  std::string path_;
  std::string name_;
  std::string version_;
  std::vector<tool_info> tools_;
  void* handle_ = nullptr;
  const troupe_plugin_descriptor* desc_ = nullptr;
  troupe_plugin_instance* instance_ = nullptr;
};

}  // namespace troupe::plugin_loading
