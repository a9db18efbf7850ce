#include "plugin_library.hpp"

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <set>

namespace troupe::plugin_loading {
namespace {

std::string real_path(const std::string& p) {
  char* c = ::realpath(p.c_str(), nullptr);
  if (!c) return {};
  std::string out{c};
  std::free(c);
  return out;
}

bool inside(const std::string& file, const std::string& dir) {
  if (dir == "/") return true;
  return file.size() > dir.size() && file.compare(0, dir.size(), dir) == 0 &&
         file[dir.size()] == '/';
}

std::string join_dirs(const std::vector<std::filesystem::path>& dirs) {
  std::string out;
  for (const auto& d : dirs) out += (out.empty() ? "" : ", ") + d.string();
  return out;
}

bool valid_tool_name(const char* s) {
  if (!s || !*s) return false;
  size_t n = 0;
  for (; s[n]; ++n) {
    char c = s[n];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-';
    if (!ok || n >= 64) return false;
  }
  return true;
}

void collect_error(void* ud, const char* content, size_t size, int) {
  static_cast<std::string*>(ud)->assign(content ? content : "", content ? size : 0);
}

/// The fields every ABI-1 descriptor has: up to and including invoke.
constexpr size_t min_descriptor_size =
    offsetof(troupe_plugin_descriptor, invoke) + sizeof(troupe_plugin_descriptor::invoke);
constexpr size_t min_tool_size = sizeof(troupe_plugin_tool);

}  // namespace

std::string check_plugin_path(const std::string& path,
                              const std::vector<std::filesystem::path>& dirs) {
  std::vector<std::string> canon_dirs;
  for (const auto& d : dirs)
    if (auto c = real_path(d.string()); !c.empty()) canon_dirs.push_back(c);
  if (canon_dirs.empty())
    throw load_error(failure::no_allowed_dirs,
                     dirs.empty()
                         ? "no plugin directory is configured, so no plugin may be loaded: add one "
                           "(plugin_options::allowed_dirs, --plugin-dir or TROUPE_PLUGIN_PATH)"
                         : "none of the plugin directories (" + join_dirs(dirs) +
                               ") exists: create one or configure another");
  std::string candidate = path;
  if (path.find('/') == std::string::npos) {
    candidate.clear();
    for (const auto& d : canon_dirs) {
      for (const std::string& f : {d + "/" + path, d + "/libtroupe_plugin_" + path + ".so"}) {
        struct stat st {};
        if (::lstat(f.c_str(), &st) == 0) {
          candidate = f;
          break;
        }
      }
      if (!candidate.empty()) break;
    }
    if (candidate.empty())
      throw load_error(failure::not_found,
                       "no plugin named '" + path + "' in the plugin directories (" +
                           join_dirs(dirs) +
                           "); give a path or check the name with `troupe plugins list`");
  }
  std::string canon = real_path(candidate);
  if (canon.empty())
    throw load_error(failure::not_found,
                     "plugin file '" + candidate + "' cannot be used: " + std::strerror(errno));
  bool ok = false;
  for (const auto& d : canon_dirs) ok = ok || inside(canon, d) || canon == d;
  if (!ok) {
    std::string how = canon != candidate ? " (it resolves to '" + canon + "')" : "";
    throw load_error(failure::outside_allowed_dirs,
                     "plugin '" + candidate + "'" + how +
                         " lies outside the allowed plugin directories (" + join_dirs(dirs) +
                         "): move it into one of them or allow its directory");
  }
  struct stat st {};
  if (::stat(canon.c_str(), &st) != 0 || !S_ISREG(st.st_mode))
    throw load_error(failure::not_a_file,
                     "plugin '" + candidate + "' is not a regular file: give a .so file");
  return canon;
}

std::unique_ptr<library> library::open(const std::string& path, const std::string& config_json) {
  std::unique_ptr<library> lib{new library};
  lib->path_ = path;
  ::dlerror();
  lib->handle_ = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib->handle_) {
    const char* why = ::dlerror();
    throw load_error(failure::not_a_library, "'" + path + "' is not a loadable shared library: " +
                                                 (why ? why : "dlopen failed"));
  }
  auto entry =
      reinterpret_cast<troupe_plugin_entry_fn>(::dlsym(lib->handle_, TROUPE_PLUGIN_ENTRY_SYMBOL));
  if (!entry)
    throw load_error(failure::no_entry_point,
                     "'" + path +
                         "' is a shared library but not a troupe plugin: it does not "
                         "export " TROUPE_PLUGIN_ENTRY_SYMBOL
                         " (define one with TROUPE_PLUGIN from "
                         "troupe/plugin/plugin.hpp)");
  const troupe_plugin_descriptor* d = entry(TROUPE_PLUGIN_ABI_VERSION);
  if (!d)
    throw load_error(failure::abi_mismatch,
                     "plugin '" + path + "' cannot serve plugin ABI version " +
                         std::to_string(TROUPE_PLUGIN_ABI_VERSION) +
                         " (troupe_plugin_entry returned NULL): rebuild it against this troupe's "
                         "plugin headers");
  if (d->struct_size < min_descriptor_size)
    throw load_error(failure::bad_descriptor,
                     "plugin '" + path + "' has a descriptor of " + std::to_string(d->struct_size) +
                         " bytes, fewer than ABI version 1 needs (" +
                         std::to_string(min_descriptor_size) + "): rebuild it");
  if (d->abi_version == 0 || d->abi_version > TROUPE_PLUGIN_ABI_VERSION)
    throw load_error(failure::abi_mismatch,
                     "plugin '" + path + "' implements plugin ABI version " +
                         std::to_string(d->abi_version) + ", but this troupe speaks version " +
                         std::to_string(TROUPE_PLUGIN_ABI_VERSION) +
                         ": rebuild it against this troupe's plugin headers, or upgrade troupe");
  auto bad = [&](const std::string& what) {
    throw load_error(failure::bad_descriptor, "plugin '" + path + "' is malformed: " + what);
  };
  if (!d->name || !*d->name) bad("its descriptor has no name");
  if (!d->init || !d->unload || !d->invoke) bad("its descriptor lacks init, unload or invoke");
  if (d->tool_count > 0 && (!d->tools || d->tool_desc_size < min_tool_size))
    bad("its tool table is missing or has entries smaller than ABI version 1 needs");
  if (d->tool_count > 10000) bad("it declares more than 10000 tools");
  lib->desc_ = d;
  lib->name_ = d->name;
  lib->version_ = d->version ? d->version : "";
  std::set<std::string> seen;
  for (size_t i = 0; i < d->tool_count; ++i) {
    const troupe_plugin_tool* t = TROUPE_PLUGIN_TOOL_AT(d, i);
    if (!valid_tool_name(t->name))
      bad("tool " + std::to_string(i) +
          " has an empty or invalid name (use [A-Za-z0-9_-], at most 64)");
    if (!seen.insert(t->name).second) bad("tool '" + std::string(t->name) + "' is declared twice");
    lib->tools_.push_back({t->name, t->description ? t->description : "",
                           t->parameters ? t->parameters : R"({"type":"object"})"});
  }
  std::string err;
  lib->instance_ = d->init(config_json.data(), config_json.size(), &collect_error, &err);
  if (!lib->instance_)
    throw load_error(failure::init_failed,
                     "plugin '" + lib->name_ + "' (" + path + ") refused its configuration: " +
                         (err.empty() ? std::string{"init failed without a message"} : err));
  return lib;
}

decltype(troupe_plugin_descriptor::invoke_async) library::invoke_async() const noexcept {
  if (desc_->struct_size < offsetof(troupe_plugin_descriptor, cancel) + sizeof(desc_->cancel))
    return nullptr;
  return desc_->cancel ? desc_->invoke_async : nullptr;
}

decltype(troupe_plugin_descriptor::cancel) library::cancel() const noexcept {
  return invoke_async() ? desc_->cancel : nullptr;
}

void library::close() noexcept {
  if (instance_) desc_->unload(instance_);
  instance_ = nullptr;
  if (handle_) ::dlclose(handle_);
  handle_ = nullptr;
}

library::~library() { close(); }

}  // namespace troupe::plugin_loading
