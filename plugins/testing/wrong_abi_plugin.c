/* A plugin that claims ABI version 999: troupe must refuse it with a clear message. */
#include "troupe/plugin/plugin_api.h"

static troupe_plugin_instance* wrong_init(const char* c, size_t n, troupe_plugin_result_fn f,
                                          void* ud) {
  (void)c, (void)n;
  f(ud, "never", 5, 1);
  return 0;
}
static void wrong_unload(troupe_plugin_instance* i) { (void)i; }
static void wrong_invoke(troupe_plugin_instance* i, const char* t, const char* a, size_t n,
                         troupe_plugin_result_fn f, void* ud) {
  (void)i, (void)t, (void)a, (void)n;
  f(ud, "never", 5, 1);
}

static const troupe_plugin_descriptor descriptor = {sizeof(troupe_plugin_descriptor),
                                                    999,
                                                    "wrong_abi",
                                                    "0.0.1",
                                                    0,
                                                    sizeof(troupe_plugin_tool),
                                                    0,
                                                    0,
                                                    wrong_init,
                                                    wrong_unload,
                                                    wrong_invoke,
                                                    0,
                                                    0};

const troupe_plugin_descriptor* troupe_plugin_entry(uint32_t host_abi_version) {
  (void)host_abi_version;
  return &descriptor;
}
