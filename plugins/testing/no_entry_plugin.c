/* A shared library that is not a troupe plugin: it exports something, but no troupe_plugin_entry.
 */
__attribute__((visibility("default"))) int not_a_plugin_answer(void) { return 42; }
