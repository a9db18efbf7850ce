/* The binary interface between troupe and a tool plugin (a shared library). Valid C99 and C++.
 *
 * A plugin exports exactly one symbol, `troupe_plugin_entry`. The host calls it with the ABI version
 * it speaks and gets back a descriptor that lives as long as the library stays loaded:
 *
 *   host                                         plugin
 *   dlopen(path, RTLD_NOW | RTLD_LOCAL)
 *   d = troupe_plugin_entry(TROUPE_PLUGIN_ABI_VERSION)  -> static descriptor, or NULL when the
 *                                                         plugin cannot serve that version
 *   reads d->name, d->version, d->tools[0 .. tool_count)
 *   inst = d->init(config_json, ..., on_error, ud)   -> instance, or NULL after one on_error call
 *   d->invoke(inst, tool, args, ..., on_result, ud)  -> on_result called exactly once, before return
 *   d->invoke_async(inst, handle, tool, args, ...)   -> on_result called exactly once, any thread,
 *   d->cancel(inst, handle)                             possibly before invoke_async returns
 *   d->unload(inst)                                  -> every async call has completed on return
 *   dlclose
 *
 * Ownership: nothing allocated on one side is freed on the other. Every string the host passes is
 * borrowed for the duration of the call that receives it. Every result the plugin produces goes
 * through a host callback (troupe_plugin_result_fn) that copies the bytes before it returns; the
 * plugin keeps ownership of its buffer and may free it as soon as the callback returns. So host and
 * plugin may use different allocators, C runtimes or C++ standard libraries.
 *
 * Growth: a later ABI only appends fields at the end of the structs. `struct_size` (and
 * `tool_desc_size` for the tool array) say how many bytes the plugin filled in, so a newer host can
 * tell which fields an older plugin has; a host never reads a field that lies beyond struct_size.
 *
 * Failures never cross the boundary as exceptions, signals or aborts: a plugin reports them as
 * error results (is_error = 1) with a message a model or a person can act on.
 */
#ifndef TROUPE_PLUGIN_PLUGIN_API_H
#define TROUPE_PLUGIN_PLUGIN_API_H

#include <stddef.h>
#include <stdint.h>

/** The ABI version this header describes. Bumped only for changes an older host cannot detect
 * through struct_size. */
#define TROUPE_PLUGIN_ABI_VERSION 1

/** The name of the one exported symbol, for dlsym. */
#define TROUPE_PLUGIN_ENTRY_SYMBOL "troupe_plugin_entry"

/** Exports a symbol from a plugin built with -fvisibility=hidden (the only supported way). */
#if defined(_WIN32)
#define TROUPE_PLUGIN_EXPORT __declspec(dllexport)
#elif defined(__GNUC__) || defined(__clang__)
#define TROUPE_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define TROUPE_PLUGIN_EXPORT
#endif

#ifdef __cplusplus
extern "C" {
#endif

/** One plugin instance, created by init and released by unload; opaque to the host. */
typedef struct troupe_plugin_instance troupe_plugin_instance;

/** The host's sink for a result or an error message. The bytes in [content, content + size) are
 * borrowed for the duration of the call: the host copies them before returning. `content` is UTF-8,
 * JSON or plain text, and need not be NUL-terminated. `is_error` is 0 or 1. The host's callback
 * never throws, never blocks for long, and never calls back into the plugin. */
typedef void (*troupe_plugin_result_fn)(void* user_data, const char* content, size_t size,
                                        int is_error);

/** One tool as a model sees it. All strings are NUL-terminated UTF-8 with static lifetime. */
typedef struct troupe_plugin_tool {
  const char* name;        /**< Unique within the plugin, e.g. "read_file". */
  const char* description; /**< One or two sentences for the model. */
  const char* parameters;  /**< JSON Schema (an object schema) of the arguments. */
} troupe_plugin_tool;

/** The descriptor bit for plugins whose invoke may run concurrently on one instance. Without it,
 * the host serialises invoke and invoke_async starts on an instance. */
#define TROUPE_PLUGIN_THREAD_SAFE 0x1u

/** What a plugin is and how to call it. Static storage in the plugin; valid until dlclose. */
typedef struct troupe_plugin_descriptor {
  uint32_t struct_size; /**< sizeof(troupe_plugin_descriptor) as the plugin was compiled. */
  uint32_t abi_version; /**< The ABI version the plugin implements, <= the host's. */
  const char* name;     /**< Plugin name, e.g. "fs". */
  const char* version;  /**< Plugin version, e.g. "0.1.0". */
  uint32_t flags;       /**< TROUPE_PLUGIN_THREAD_SAFE or 0. */
  uint32_t tool_desc_size;          /**< sizeof(troupe_plugin_tool) as the plugin was compiled. */
  size_t tool_count;                /**< Number of entries in tools. */
  const troupe_plugin_tool* tools;  /**< Array of tool_count entries, stride tool_desc_size. */

  /** Creates an instance from a configuration JSON object (e.g. {"root":"/srv/work"}); the text is
   * borrowed for the call. Returns NULL after calling on_error exactly once with a message when the
   * configuration is unusable. Required. */
  troupe_plugin_instance* (*init)(const char* config_json, size_t config_size,
                                  troupe_plugin_result_fn on_error, void* user_data);

  /** Releases an instance. Calls still running with invoke_async are cancelled and complete (their
   * on_result is called) before unload returns; the host makes no further call on the instance.
   * Required. */
  void (*unload)(troupe_plugin_instance* instance);

  /** Runs one call of the tool named `tool` with arguments `args_json` (a JSON object), and calls
   * on_result exactly once before it returns. An unknown tool, bad arguments or a failure are error
   * results, never crashes. Required. */
  void (*invoke)(troupe_plugin_instance* instance, const char* tool, const char* args_json,
                 size_t args_size, troupe_plugin_result_fn on_result, void* user_data);

  /** Starts one call and returns at once. `call_handle` is chosen by the host, unique among the
   * instance's calls in flight; `tool` and `args_json` are borrowed for this call only. on_result
   * is called exactly once, from any thread, possibly before invoke_async returns, and also for
   * cancelled calls. NULL when the plugin has no asynchronous calls (the host then runs invoke on a
   * thread of its own). */
  void (*invoke_async)(troupe_plugin_instance* instance, uint64_t call_handle, const char* tool,
                       const char* args_json, size_t args_size, troupe_plugin_result_fn on_result,
                       void* user_data);

  /** Asks the call `call_handle` to stop soon. Harmless for handles that completed or are unknown.
   * The call still reports exactly once (usually an error result saying it was cancelled). NULL
   * when invoke_async is NULL. */
  void (*cancel)(troupe_plugin_instance* instance, uint64_t call_handle);
} troupe_plugin_descriptor;

/** The one exported function. Returns the plugin's descriptor if it can serve a host speaking
 * `host_abi_version`, otherwise NULL. Cheap, idempotent and thread-safe. */
typedef const troupe_plugin_descriptor* (*troupe_plugin_entry_fn)(uint32_t host_abi_version);

/** Declared here so that a plugin's definition is checked against it; hosts look it up with dlsym
 * (TROUPE_PLUGIN_ENTRY_SYMBOL) and never link against it. */
TROUPE_PLUGIN_EXPORT const troupe_plugin_descriptor* troupe_plugin_entry(uint32_t host_abi_version);

/** Tool i of a descriptor, honouring the plugin's tool_desc_size. */
#define TROUPE_PLUGIN_TOOL_AT(descriptor, i)                       \
  ((const troupe_plugin_tool*)((const char*)(descriptor)->tools + \
                               (size_t)(i) * (descriptor)->tool_desc_size))

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* TROUPE_PLUGIN_PLUGIN_API_H */
