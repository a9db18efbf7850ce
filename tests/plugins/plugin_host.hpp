#pragma once
/// A minimal host for plugin tests: loads a plugin with dlopen exactly as troupe does, and calls it
/// through the C ABI only (plugin_api.h), so the tests see what any host would see.

#include <dlfcn.h>

#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <string>

#include "troupe/plugin/plugin_api.h"

namespace troupe::test {

/// A result copied out of the plugin's callback.
struct plugin_reply {
  std::string content;
  bool is_error = false;
  int calls = 0;  // how many times the callback ran (the ABI says exactly once)
};

inline void collect(void* ud, const char* content, size_t size, int is_error) {
  auto* r = static_cast<plugin_reply*>(ud);
  r->content.assign(content, size);
  r->is_error = is_error != 0;
  ++r->calls;
}

/// One loaded library and one instance of its plugin.
class loaded_plugin {
 public:
  loaded_plugin(const char* path, const std::string& config) {
    handle_ = ::dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!handle_) throw std::runtime_error(std::string("dlopen failed: ") + ::dlerror());
    auto entry = reinterpret_cast<troupe_plugin_entry_fn>(
      ::dlsym(handle_, TROUPE_PLUGIN_ENTRY_SYMBOL));
    if (!entry) throw std::runtime_error("no troupe_plugin_entry");
    desc_ = entry(TROUPE_PLUGIN_ABI_VERSION);
    if (!desc_) throw std::runtime_error("troupe_plugin_entry returned NULL");
    plugin_reply err;
    instance_ = desc_->init(config.data(), config.size(), &collect, &err);
    if (!instance_) throw std::runtime_error("init failed: " + err.content);
  }
  ~loaded_plugin() {
    if (instance_) desc_->unload(instance_);
    if (handle_) ::dlclose(handle_);
  }
  loaded_plugin(const loaded_plugin&) = delete;
  loaded_plugin& operator=(const loaded_plugin&) = delete;

  void* handle() const noexcept { return handle_; }
  const troupe_plugin_descriptor& descriptor() const noexcept { return *desc_; }
  troupe_plugin_instance* instance() const noexcept { return instance_; }

  plugin_reply invoke(const std::string& tool, const std::string& args) const {
    plugin_reply r;
    desc_->invoke(instance_, tool.c_str(), args.data(), args.size(), &collect, &r);
    return r;
  }

 private:
  void* handle_ = nullptr;
  const troupe_plugin_descriptor* desc_ = nullptr;
  troupe_plugin_instance* instance_ = nullptr;
};

/// Waits for one asynchronous result (the callback may run on any thread).
class async_reply {
 public:
  static void on_result(void* ud, const char* content, size_t size, int is_error) {
    auto* self = static_cast<async_reply*>(ud);
    std::lock_guard<std::mutex> guard(self->mutex_);
    self->reply_.content.assign(content, size);
    self->reply_.is_error = is_error != 0;
    ++self->reply_.calls;
    self->cv_.notify_all();
  }
  plugin_reply wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait(lock, [&] { return reply_.calls > 0; });
    return reply_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  plugin_reply reply_;
};

}  // namespace troupe::test
