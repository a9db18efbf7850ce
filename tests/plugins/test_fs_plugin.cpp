#define BOOST_TEST_MODULE fs_plugin
#include <sys/stat.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "plugin_host.hpp"
#include "troupe/plugin/plugin.hpp"  // only for its JSON reader, to inspect results

#ifndef TROUPE_FS_PLUGIN
#error "TROUPE_FS_PLUGIN must name the plugin library"
#endif

namespace fs = std::filesystem;
namespace json = troupe::plugin::json;
using troupe::test::loaded_plugin;

namespace {

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << text;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// A sandbox on disk:  base/root/{a.txt, sub/b.txt, ...} is the tool's root; base/outside holds a
/// secret the tools must never reach; root has links that point out of it and one that stays in.
struct fs_fixture {
  fs::path base;
  fs::path root;
  fs::path outside;

  fs_fixture() {
    char tmpl[] = "/tmp/troupe-fs-test-XXXXXX";
    base = ::mkdtemp(tmpl);
    root = fs::canonical(base) / "root";
    outside = fs::canonical(base) / "outside";
    write(root / "a.txt", "hello\nworld\n");
    write(root / "sub" / "b.txt", "needle here\nno\nNeedle two\n");
    write(root / "sub" / "deep" / "c.md", "a needle deep down\n");
    write(root / "bin.dat", std::string("ab\0needle", 9));
    write(outside / "secret.txt", "needle: the secret\n");
    fs::create_symlink("/etc", root / "etc_link");
    fs::create_symlink("/etc/passwd", root / "passwd_link");
    fs::create_symlink("../outside", root / "escape");
    fs::create_symlink("a.txt", root / "inside_link");
    fs::create_directory_symlink("sub", root / "sub_link");
  }
  ~fs_fixture() {
    std::error_code ec;
    fs::remove_all(base, ec);
  }

  std::string config() const { return R"({"root":)" + json::quote(root.string()) + "}"; }

  std::string leaves(const std::string& path) const {
    return "path '" + path + "' leaves the tool's root " + root.string() +
           ": use a path inside the root";
  }
};

json::value ok_json(const troupe::test::plugin_reply& r) {
  BOOST_TEST_INFO("result: " << r.content);
  BOOST_REQUIRE(!r.is_error);
  BOOST_REQUIRE_EQUAL(r.calls, 1);
  return json::parse(r.content);
}

std::string args(std::initializer_list<std::pair<const char*, std::string>> kv) {
  json::object_writer w;
  for (const auto& [k, v] : kv) w.string(k, v);
  return w.str();
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(fs_plugin, fs_fixture)

BOOST_AUTO_TEST_CASE(describes_itself_and_its_tools) {
  loaded_plugin p(TROUPE_FS_PLUGIN, config());
  const auto& d = p.descriptor();
  BOOST_TEST(d.struct_size == sizeof(troupe_plugin_descriptor));
  BOOST_TEST(d.abi_version == 1u);
  BOOST_TEST(std::string(d.name) == "fs");
  BOOST_TEST(std::string(d.version) == "0.1.0");
  BOOST_TEST((d.flags & TROUPE_PLUGIN_THREAD_SAFE) != 0u);
  BOOST_TEST(d.tool_desc_size == sizeof(troupe_plugin_tool));
  BOOST_REQUIRE_EQUAL(d.tool_count, 4u);
  const char* expected[] = {"read_file", "list_dir", "grep", "write_file"};
  for (size_t i = 0; i < d.tool_count; ++i) {
    const troupe_plugin_tool* t = TROUPE_PLUGIN_TOOL_AT(&d, i);
    BOOST_TEST(std::string(t->name) == expected[i]);
    BOOST_TEST(std::string(t->description).size() > 20u);
    json::value schema = json::parse(t->parameters);  // throws if not JSON
    BOOST_TEST(schema.find("type")->as_string() == "object");
    BOOST_TEST(schema.find("properties")->is_object());
  }
  BOOST_TEST(d.invoke_async != nullptr);
  BOOST_TEST(d.cancel != nullptr);
}

BOOST_AUTO_TEST_CASE(a_host_speaking_abi_0_gets_no_descriptor) {
  void* h = ::dlopen(TROUPE_FS_PLUGIN, RTLD_NOW | RTLD_LOCAL);
  BOOST_REQUIRE(h);
  auto entry = reinterpret_cast<troupe_plugin_entry_fn>(::dlsym(h, TROUPE_PLUGIN_ENTRY_SYMBOL));
  BOOST_REQUIRE(entry);
  BOOST_TEST(entry(0) == nullptr);
  BOOST_TEST(entry(TROUPE_PLUGIN_ABI_VERSION) == entry(TROUPE_PLUGIN_ABI_VERSION));
  ::dlclose(h);
}

BOOST_AUTO_TEST_CASE(exports_only_the_entry_point) {
  void* h = ::dlopen(TROUPE_FS_PLUGIN, RTLD_NOW | RTLD_LOCAL);
  BOOST_REQUIRE(h);
  BOOST_TEST(::dlsym(h, "troupe_plugin_entry") != nullptr);
  // Internal functions and the C++ layer's inline functions stay hidden.
  for (const char* internal :
       {"_ZN6troupe6plugin6detail5entryEjPKcS3_PFvRNS0_10definitionEE",
        "_ZN6troupe6plugin6detail6c_initEPKcmPFvPvS3_miES4_",
        "_ZN6troupe6plugin4json5parseESt17basic_string_viewIcSt11char_traitsIcEE"})
    BOOST_TEST(::dlsym(h, internal) == nullptr, internal);
  ::dlclose(h);
  // And the whole dynamic symbol table, as nm -D sees it: not even the weak instantiations of the
  // standard library (dlsym would find those in libstdc++ itself, so it cannot tell).
  std::string cmd = std::string("nm -D --defined-only '") + TROUPE_FS_PLUGIN + "' 2>/dev/null";
  if (FILE* nm = ::popen(cmd.c_str(), "r")) {
    std::string out;
    char buf[512];
    while (size_t n = std::fread(buf, 1, sizeof buf, nm)) out.append(buf, n);
    if (::pclose(nm) == 0) {
      BOOST_TEST(out.find("troupe_plugin_entry") != std::string::npos);
      size_t lines = 0;
      for (char ch : out) lines += ch == '\n';
      BOOST_TEST(lines == 1u, "nm -D --defined-only:\n" << out);
    } else {
      BOOST_TEST_MESSAGE("nm is not available: checked with dlsym only");
    }
  }
}

BOOST_AUTO_TEST_CASE(init_refuses_a_bad_configuration_with_a_message) {
  void* h = ::dlopen(TROUPE_FS_PLUGIN, RTLD_NOW | RTLD_LOCAL);
  BOOST_REQUIRE(h);
  auto entry = reinterpret_cast<troupe_plugin_entry_fn>(::dlsym(h, TROUPE_PLUGIN_ENTRY_SYMBOL));
  const troupe_plugin_descriptor* d = entry(TROUPE_PLUGIN_ABI_VERSION);
  for (std::string cfg : {std::string("{}"), std::string("{\"root\":"),
                          std::string(R"({"root":"/no/such/dir/troupe"})"), std::string("[1]")}) {
    troupe::test::plugin_reply err;
    troupe_plugin_instance* inst = d->init(cfg.data(), cfg.size(), &troupe::test::collect, &err);
    BOOST_TEST(inst == nullptr, cfg);
    BOOST_TEST(err.calls == 1);
    BOOST_TEST(err.is_error);
    BOOST_TEST(!err.content.empty());
  }
  troupe::test::plugin_reply err;
  std::string cfg = "{}";
  d->init(cfg.data(), cfg.size(), &troupe::test::collect, &err);
  BOOST_TEST(err.content.find("'root'") != std::string::npos, err.content);
  ::dlclose(h);
}

BOOST_AUTO_TEST_CASE(read_file_reads_and_pages) {
  loaded_plugin p(TROUPE_FS_PLUGIN, config());
  json::value v = ok_json(p.invoke("read_file", args({{"path", "a.txt"}})));
  BOOST_TEST(v.find("content")->as_string() == "hello\nworld\n");
  BOOST_TEST(v.find("size")->as_int64() == 12);
  BOOST_TEST(v.find("next_offset")->is_null());

  v = ok_json(p.invoke("read_file", R"({"path":"a.txt","offset":2,"max_bytes":5})"));
  BOOST_TEST(v.find("content")->as_string() == "llo\nw");
  BOOST_TEST(v.find("next_offset")->as_int64() == 7);

  // An absolute path inside the root, and "." / ".." that stay inside, are fine.
  v = ok_json(p.invoke("read_file", args({{"path", (root / "sub" / "b.txt").string()}})));
  BOOST_TEST(v.find("content")->as_string().substr(0, 6) == "needle");
  v = ok_json(p.invoke("read_file", args({{"path", "./sub/deep/../b.txt"}})));
  BOOST_TEST(v.find("content")->as_string().substr(0, 6) == "needle");
  // A symbolic link that stays inside the root may be read.
  v = ok_json(p.invoke("read_file", args({{"path", "inside_link"}})));
  BOOST_TEST(v.find("content")->as_string() == "hello\nworld\n");
  v = ok_json(p.invoke("read_file", args({{"path", "sub_link/deep/c.md"}})));
  BOOST_TEST(v.find("content")->as_string() == "a needle deep down\n");
}

BOOST_AUTO_TEST_CASE(read_file_does_not_split_utf8_characters) {
  write(root / "u.txt", "h\xC3\xA9llo");  // "héllo": é is two bytes at offsets 1..2
  loaded_plugin p(TROUPE_FS_PLUGIN, config());
  json::value v = ok_json(p.invoke("read_file", R"({"path":"u.txt","max_bytes":2})"));
  BOOST_TEST(v.find("content")->as_string() == "h");
  BOOST_TEST(v.find("next_offset")->as_int64() == 1);
  v = ok_json(p.invoke("read_file", R"({"path":"u.txt","offset":1,"max_bytes":3})"));
  BOOST_TEST(v.find("content")->as_string() == "\xC3\xA9l");
}

BOOST_AUTO_TEST_CASE(read_file_reports_usable_errors) {
  loaded_plugin p(TROUPE_FS_PLUGIN, config());
  auto r = p.invoke("read_file", args({{"path", "nope.txt"}}));
  BOOST_TEST(r.is_error);
  BOOST_TEST(r.content.find("no such file or directory 'nope.txt'") != std::string::npos, r.content);
  r = p.invoke("read_file", args({{"path", "sub"}}));
  BOOST_TEST(r.is_error);
  BOOST_TEST(r.content.find("is a directory: use list_dir") != std::string::npos, r.content);
  r = p.invoke("read_file", args({{"path", "bin.dat"}}));
  BOOST_TEST(r.is_error);
  BOOST_TEST(r.content.find("binary") != std::string::npos, r.content);
  r = p.invoke("read_file", R"({"path":42})");
  BOOST_TEST(r.is_error);
  BOOST_TEST(r.content == "argument 'path' must be a string, not a number");
  r = p.invoke("read_file", "{}");
  BOOST_TEST(r.is_error);
  BOOST_TEST(r.content == "tool 'read_file' needs the argument 'path'");
  r = p.invoke("read_file", "{\"path\":");
  BOOST_TEST(r.is_error);
  BOOST_TEST(r.content.find("not valid JSON") != std::string::npos, r.content);
  r = p.invoke("no_such_tool", "{}");
  BOOST_TEST(r.is_error);
  BOOST_TEST(r.content == "plugin 'fs' has no tool named 'no_such_tool'");
}

BOOST_AUTO_TEST_CASE(list_dir_lists_sorted_entries_with_types) {
  loaded_plugin p(TROUPE_FS_PLUGIN, config());
  json::value v = ok_json(p.invoke("list_dir", "{}"));
  const auto& entries = v.find("entries")->as_array();
  std::vector<std::string> names, types;
  for (const auto& e : entries) {
    names.push_back(e.find("name")->as_string());
    types.push_back(e.find("type")->as_string());
  }
  std::vector<std::string> want_names = {"a.txt",       "bin.dat", "escape", "etc_link",
                                         "inside_link", "passwd_link", "sub", "sub_link"};
  std::vector<std::string> want_types = {"file",    "file",    "symlink", "symlink",
                                         "symlink", "symlink", "dir",     "symlink"};
  BOOST_TEST(names == want_names, boost::test_tools::per_element());
  BOOST_TEST(types == want_types, boost::test_tools::per_element());
  BOOST_TEST(entries[0].find("size")->as_int64() == 12);
  BOOST_TEST(v.find("truncated")->as_bool() == false);

  v = ok_json(p.invoke("list_dir", args({{"path", "sub"}})));
  BOOST_TEST(v.find("entries")->as_array().size() == 2u);
}

BOOST_AUTO_TEST_CASE(grep_finds_text_recursively_and_stays_inside) {
  loaded_plugin p(TROUPE_FS_PLUGIN, config());
  json::value v = ok_json(p.invoke("grep", args({{"pattern", "needle"}})));
  const auto& m = v.find("matches")->as_array();
  // bin.dat is binary; the secret outside is behind a link grep does not follow.
  BOOST_REQUIRE_EQUAL(m.size(), 2u);
  BOOST_TEST(m[0].find("path")->as_string() == "sub/b.txt");
  BOOST_TEST(m[0].find("line")->as_int64() == 1);
  BOOST_TEST(m[0].find("text")->as_string() == "needle here");
  BOOST_TEST(m[1].find("path")->as_string() == "sub/deep/c.md");
  BOOST_TEST(v.find("content") == nullptr);

  v = ok_json(p.invoke("grep", R"({"pattern":"^n(ee)?dle","regex":true,"ignore_case":true,"path":"sub"})"));
  BOOST_REQUIRE_EQUAL(v.find("matches")->as_array().size(), 2u);
  BOOST_TEST(v.find("matches")->as_array()[1].find("line")->as_int64() == 3);

  v = ok_json(p.invoke("grep", R"({"pattern":"needle","max_matches":1})"));
  BOOST_TEST(v.find("matches")->as_array().size() == 1u);
  BOOST_TEST(v.find("truncated")->as_bool());

  auto r = p.invoke("grep", R"({"pattern":"(unclosed","regex":true})");
  BOOST_TEST(r.is_error);
  BOOST_TEST(r.content.find("is not a POSIX extended regular expression") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(write_file_writes_inside_the_root) {
  loaded_plugin p(TROUPE_FS_PLUGIN, config());
  json::value v = ok_json(p.invoke("write_file", args({{"path", "new/dir/n.txt"}, {"content", "fresh"}})));
  BOOST_TEST(v.find("bytes_written")->as_int64() == 5);
  BOOST_TEST(slurp(root / "new" / "dir" / "n.txt") == "fresh");
  ok_json(p.invoke("write_file", args({{"path", "a.txt"}, {"content", "x"}})));
  BOOST_TEST(slurp(root / "a.txt") == "x");
  v = ok_json(p.invoke("read_file", args({{"path", "new/dir/n.txt"}})));
  BOOST_TEST(v.find("content")->as_string() == "fresh");
}

BOOST_AUTO_TEST_CASE(write_file_enforces_its_size_limit) {
  std::string cfg = R"({"root":)" + json::quote(root.string()) + R"(,"max_write_bytes":4})";
  loaded_plugin p(TROUPE_FS_PLUGIN, cfg);
  auto r = p.invoke("write_file", args({{"path", "big.txt"}, {"content", "12345"}}));
  BOOST_TEST(r.is_error);
  BOOST_TEST(r.content.find("over write_file's limit of 4 bytes") != std::string::npos, r.content);
  BOOST_TEST(!fs::exists(root / "big.txt"));
  ok_json(p.invoke("write_file", args({{"path", "small.txt"}, {"content", "1234"}})));
}

BOOST_AUTO_TEST_CASE(paths_that_climb_out_are_refused_with_a_clear_error) {
  loaded_plugin p(TROUPE_FS_PLUGIN, config());
  std::vector<std::string> paths = {"../etc/passwd", "/etc/passwd", "sub/../../outside/secret.txt",
                                    "../outside/secret.txt",
                                    (root / ".." / "outside" / "secret.txt").string()};
  for (const std::string& path : paths) {
    for (const char* tool : {"read_file", "list_dir", "grep"}) {
      auto r = p.invoke(tool, args({{"path", path}, {"pattern", "needle"}}));
      BOOST_TEST(r.is_error, tool << " " << path);
      BOOST_TEST(r.content == leaves(path), tool << ": " << r.content);
    }
    auto r = p.invoke("write_file", args({{"path", path}, {"content", "pwned"}}));
    BOOST_TEST(r.is_error);
    BOOST_TEST(r.content == leaves(path), r.content);
  }
  BOOST_TEST(slurp(outside / "secret.txt") == "needle: the secret\n");
}

BOOST_AUTO_TEST_CASE(symbolic_links_out_of_the_root_are_refused) {
  loaded_plugin p(TROUPE_FS_PLUGIN, config());
  const std::string how = " through a symbolic link: use a path inside the root";
  for (std::string path : {"etc_link/passwd", "passwd_link", "escape/secret.txt"}) {
    auto r = p.invoke("read_file", args({{"path", path}}));
    BOOST_TEST(r.is_error);
    BOOST_TEST(r.content == "path '" + path + "' leaves the tool's root " + root.string() + how,
               r.content);
  }
  for (std::string path : {"etc_link", "escape"}) {
    auto r = p.invoke("list_dir", args({{"path", path}}));
    BOOST_TEST(r.is_error);
    BOOST_TEST(r.content.find("leaves the tool's root") != std::string::npos, r.content);
    r = p.invoke("grep", args({{"path", path}, {"pattern", "needle"}}));
    BOOST_TEST(r.is_error);
    BOOST_TEST(r.content.find("leaves the tool's root") != std::string::npos, r.content);
  }
}

BOOST_AUTO_TEST_CASE(writes_through_symbolic_links_are_refused) {
  loaded_plugin p(TROUPE_FS_PLUGIN, config());
  // A link to a file inside the root: still refused, and the target is untouched.
  auto r = p.invoke("write_file", args({{"path", "inside_link"}, {"content", "x"}}));
  BOOST_TEST(r.is_error);
  BOOST_TEST(r.content.find("is a symbolic link: write_file does not write through symbolic links") !=
               std::string::npos,
             r.content);
  BOOST_TEST(slurp(root / "a.txt") == "hello\nworld\n");
  // Links that leave the root, as the file or as a directory on the way.
  for (std::string path : {"passwd_link", "escape/secret.txt", "escape/new.txt", "sub_link/x.txt",
                           "etc_link/troupe-test"}) {
    r = p.invoke("write_file", args({{"path", path}, {"content", "pwned"}}));
    BOOST_TEST(r.is_error, path);
    BOOST_TEST(r.content.find("symbolic link") != std::string::npos, r.content);
  }
  BOOST_TEST(slurp(outside / "secret.txt") == "needle: the secret\n");
  BOOST_TEST(!fs::exists(outside / "new.txt"));
  BOOST_TEST(!fs::exists(root / "sub" / "x.txt"));
  BOOST_TEST(!fs::exists("/etc/troupe-test"));
}

BOOST_AUTO_TEST_CASE(writes_to_hard_links_are_refused) {
  fs::create_hard_link(outside / "secret.txt", root / "hard.txt");
  loaded_plugin p(TROUPE_FS_PLUGIN, config());
  auto r = p.invoke("write_file", args({{"path", "hard.txt"}, {"content", "pwned"}}));
  BOOST_TEST(r.is_error);
  BOOST_TEST(r.content.find("several hard links") != std::string::npos, r.content);
  BOOST_TEST(slurp(outside / "secret.txt") == "needle: the secret\n");
}

BOOST_AUTO_TEST_CASE(read_only_configuration_refuses_writes) {
  std::string cfg = R"({"root":)" + json::quote(root.string()) + R"(,"read_only":true})";
  loaded_plugin p(TROUPE_FS_PLUGIN, cfg);
  auto r = p.invoke("write_file", args({{"path", "z.txt"}, {"content", "x"}}));
  BOOST_TEST(r.is_error);
  BOOST_TEST(!fs::exists(root / "z.txt"));
}

BOOST_AUTO_TEST_CASE(invoke_async_completes_exactly_once) {
  loaded_plugin p(TROUPE_FS_PLUGIN, config());
  const auto& d = p.descriptor();
  troupe::test::async_reply a, b;
  std::string ok = args({{"path", "a.txt"}});
  std::string bad = args({{"path", "../x"}});
  d.invoke_async(p.instance(), 1, "read_file", ok.data(), ok.size(), &a.on_result, &a);
  d.invoke_async(p.instance(), 2, "read_file", bad.data(), bad.size(), &b.on_result, &b);
  auto ra = a.wait();
  auto rb = b.wait();
  BOOST_TEST(!ra.is_error);
  BOOST_TEST(json::parse(ra.content).find("content")->as_string() == "hello\nworld\n");
  BOOST_TEST(rb.is_error);
  BOOST_TEST(rb.content == leaves("../x"));
  d.cancel(p.instance(), 1);   // completed: harmless
  d.cancel(p.instance(), 99);  // unknown: harmless
  BOOST_TEST(ra.calls == 1);
  BOOST_TEST(rb.calls == 1);
}

BOOST_AUTO_TEST_SUITE_END()
