// The search plugin and its index: exact bm25 rankings and snippets on a small hand-made corpus,
// incremental re-indexing (modify, delete, add), clear errors for malformed FTS5 queries, and
// read slices. The plugin is loaded with dlopen and called through the C ABI only.
#define BOOST_TEST_MODULE search_plugin
#include <sys/stat.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "plugin_host.hpp"
#include "search_index.hpp"
#include "troupe/plugin/plugin.hpp"  // only for its JSON reader and writer

#ifndef TROUPE_SEARCH_PLUGIN
#error "TROUPE_SEARCH_PLUGIN must name the plugin library"
#endif

namespace fs = std::filesystem;
namespace json = troupe::plugin::json;
namespace search = troupe::search;
using troupe::test::loaded_plugin;

namespace {

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << text;
}

/// corpus/ holds the documents, index.sqlite the index; both removed at the end.
struct corpus_fixture {
  fs::path base;
  fs::path corpus;
  fs::path index;

  corpus_fixture() {
    char tmpl[] = "/tmp/troupe-search-test-XXXXXX";
    base = ::mkdtemp(tmpl);
    corpus = base / "corpus";
    index = base / "index.sqlite";
    write(corpus / "a.txt", "The quick brown fox jumps over the lazy dog.");
    write(corpus / "b.txt", "fox fox fox. A den of foxes is called an earth.");
    write(corpus / "c.md", "Dogs and cats. The dog sleeps.");
    write(corpus / "sub" / "d.txt", "Nothing relevant here, only zebras.");
    write(corpus / "utf8.txt", "a\xC3\xA9z");                       // a, é (2 bytes), z
    write(corpus / ".hidden" / "x.txt", "fox in a hidden folder");  // not indexed
    write(corpus / "bin.dat", std::string("fox\0fox", 7));           // binary: not indexed
  }
  ~corpus_fixture() {
    std::error_code ec;
    fs::remove_all(base, ec);
  }

  search::index_stats build() { return search::build_index(corpus, index); }
  std::string config() const { return R"({"index":)" + json::quote(index.string()) + "}"; }
};

json::value ok_json(const troupe::test::plugin_reply& r) {
  BOOST_TEST_INFO("result: " << r.content);
  BOOST_REQUIRE(!r.is_error);
  BOOST_REQUIRE_EQUAL(r.calls, 1);
  return json::parse(r.content);
}

std::string query_args(const std::string& q, int k = 10, const char* syntax = nullptr) {
  json::object_writer w;
  w.string("query", q).number("k", k);
  if (syntax) w.string("syntax", syntax);
  return w.str();
}

/// The paths of a search result, in order.
std::vector<std::string> paths(const json::value& v) {
  std::vector<std::string> out;
  for (const auto& hit : v.find("results")->as_array()) out.push_back(hit.find("path")->as_string());
  return out;
}

std::vector<std::string> search_paths(const loaded_plugin& p, const std::string& q) {
  return paths(ok_json(p.invoke("search", query_args(q))));
}

using strings = std::vector<std::string>;

}  // namespace

BOOST_FIXTURE_TEST_SUITE(search_plugin, corpus_fixture)

BOOST_AUTO_TEST_CASE(indexes_text_files_and_skips_hidden_and_binary_ones) {
  search::index_stats s = build();
  BOOST_TEST(s.files == 6u);  // a, b, bin.dat, c, sub/d, utf8
  BOOST_TEST(s.added == 5u);
  BOOST_TEST(s.skipped == 1u);
  BOOST_TEST(s.updated == 0u);
  BOOST_TEST(s.removed == 0u);
  search::index_reader r(index);
  BOOST_TEST(r.document_count() == 5);
  BOOST_TEST(r.root() == fs::canonical(corpus).string());
}

BOOST_AUTO_TEST_CASE(describes_its_tools) {
  build();
  loaded_plugin p(TROUPE_SEARCH_PLUGIN, config());
  const auto& d = p.descriptor();
  BOOST_TEST(std::string(d.name) == "search");
  BOOST_REQUIRE_EQUAL(d.tool_count, 2u);
  BOOST_TEST(std::string(TROUPE_PLUGIN_TOOL_AT(&d, 0)->name) == "search");
  BOOST_TEST(std::string(TROUPE_PLUGIN_TOOL_AT(&d, 1)->name) == "read");
  for (size_t i = 0; i < d.tool_count; ++i)
    BOOST_TEST(json::parse(TROUPE_PLUGIN_TOOL_AT(&d, i)->parameters).is_object());
}

BOOST_AUTO_TEST_CASE(ranks_by_bm25_with_snippets_and_doc_ids) {
  build();
  loaded_plugin p(TROUPE_SEARCH_PLUGIN, config());
  json::value v = ok_json(p.invoke("search", query_args("fox")));
  BOOST_TEST(v.find("query")->as_string() == "fox");
  const auto& hits = v.find("results")->as_array();
  BOOST_REQUIRE_EQUAL(hits.size(), 2u);
  // Three "fox" in b beat one in a; "foxes" is another word; hidden and binary files are absent.
  BOOST_TEST(hits[0].find("path")->as_string() == "b.txt");
  BOOST_TEST(hits[0].find("doc_id")->as_int64() == 2);
  BOOST_TEST(hits[0].find("snippet")->as_string() ==
             "[fox] [fox] [fox]. A den of foxes is called an earth.");
  BOOST_TEST(hits[1].find("path")->as_string() == "a.txt");
  BOOST_TEST(hits[1].find("doc_id")->as_int64() == 1);
  BOOST_TEST(hits[1].find("snippet")->as_string() ==
             "The quick brown [fox] jumps over the lazy dog.");
  double s0 = hits[0].find("score")->as_double(), s1 = hits[1].find("score")->as_double();
  BOOST_TEST(s0 > s1);
  BOOST_TEST(s1 > 0.0);

  // One "dog" each: the shorter document ranks first (bm25 length normalisation).
  BOOST_TEST(search_paths(p, "dog") == (strings{"c.md", "a.txt"}));
  BOOST_TEST(search_paths(p, "DOG") == (strings{"c.md", "a.txt"}));  // case-insensitive
  BOOST_TEST(search_paths(p, "\"lazy dog\"") == (strings{"a.txt"}));
  BOOST_TEST(search_paths(p, "\"dog lazy\"") == (strings{}));
  BOOST_TEST(search_paths(p, "fox NOT lazy") == (strings{"b.txt"}));
  // The rarer word weighs more (idf): one "zebras" beats three "fox".
  BOOST_TEST(search_paths(p, "fox OR zebras") == (strings{"sub/d.txt", "b.txt", "a.txt"}));
  BOOST_TEST(search_paths(p, "fox*") == (strings{"b.txt", "a.txt"}));
  BOOST_TEST(search_paths(p, "zebra*") == (strings{"sub/d.txt"}));
  BOOST_TEST(search_paths(p, "giraffe") == (strings{}));
  // k limits the results, best first.
  BOOST_TEST(paths(ok_json(p.invoke("search", query_args("fox", 1)))) == (strings{"b.txt"}));
}

BOOST_AUTO_TEST_CASE(malformed_queries_are_clear_tool_errors) {
  build();
  loaded_plugin p(TROUPE_SEARCH_PLUGIN, config());
  for (const char* q : {"fox AND", "\"unterminated", "dog.", "(fox", "nosuchcolumn:fox", "*"}) {
    auto r = p.invoke("search", query_args(q));
    BOOST_TEST_INFO("query " << q << ": " << r.content);
    BOOST_TEST(r.is_error);
    BOOST_TEST(r.calls == 1);
    BOOST_TEST(r.content.find("is not valid FTS5 syntax") != std::string::npos);
    BOOST_TEST(r.content.find("\"syntax\": \"plain\"") != std::string::npos);
  }
  auto r = p.invoke("search", query_args("fox AND"));
  BOOST_TEST(r.content.rfind("query 'fox AND' is not valid FTS5 syntax (fts5: syntax error", 0) == 0);
  // The plugin still answers afterwards.
  BOOST_TEST(search_paths(p, "fox") == (strings{"b.txt", "a.txt"}));
  // plain syntax takes any text literally.
  BOOST_TEST(paths(ok_json(p.invoke("search", query_args("lazy dog.", 10, "plain")))) ==
             (strings{"a.txt"}));
  BOOST_TEST(paths(ok_json(p.invoke("search", query_args("fox AND \"x", 10, "plain")))) ==
             (strings{}));
  // Empty queries and bad arguments.
  r = p.invoke("search", query_args("   "));
  BOOST_TEST(r.is_error);
  BOOST_TEST(r.content == "argument 'query' is empty: give the words to search for");
  r = p.invoke("search", query_args("fox", 0));
  BOOST_TEST(r.is_error);
  BOOST_TEST(r.content == "argument 'k' must be between 1 and 50");
  r = p.invoke("search", query_args("fox", 10, "regex"));
  BOOST_TEST(r.content == "argument 'syntax' must be \"fts5\" or \"plain\", not 'regex'");
  r = p.invoke("search", R"({"k":3})");
  BOOST_TEST(r.content == "tool 'search' needs the argument 'query'");
}

BOOST_AUTO_TEST_CASE(read_returns_slices_of_the_stored_text) {
  build();
  loaded_plugin p(TROUPE_SEARCH_PLUGIN, config());
  json::value v = ok_json(p.invoke("read", R"({"doc_id":1,"offset":4,"length":5})"));
  BOOST_TEST(v.find("doc_id")->as_int64() == 1);
  BOOST_TEST(v.find("path")->as_string() == "a.txt");
  BOOST_TEST(v.find("size")->as_int64() == 44);
  BOOST_TEST(v.find("offset")->as_int64() == 4);
  BOOST_TEST(v.find("content")->as_string() == "quick");
  BOOST_TEST(v.find("next_offset")->as_int64() == 9);

  v = ok_json(p.invoke("read", R"({"doc_id":1,"offset":40})"));
  BOOST_TEST(v.find("content")->as_string() == "dog.");
  BOOST_TEST(v.find("next_offset")->is_null());
  v = ok_json(p.invoke("read", R"({"doc_id":1})"));
  BOOST_TEST(v.find("content")->as_string() == "The quick brown fox jumps over the lazy dog.");
  BOOST_TEST(v.find("next_offset")->is_null());

  // A slice never ends inside a UTF-8 character (utf8.txt is doc 5: a, é, z).
  v = ok_json(p.invoke("read", R"({"doc_id":5,"length":2})"));
  BOOST_TEST(v.find("content")->as_string() == "a");
  BOOST_TEST(v.find("next_offset")->as_int64() == 1);
  v = ok_json(p.invoke("read", R"({"doc_id":5,"offset":1,"length":2})"));
  BOOST_TEST(v.find("content")->as_string() == "\xC3\xA9");
  BOOST_TEST(v.find("next_offset")->as_int64() == 3);

  auto r = p.invoke("read", R"({"doc_id":99})");
  BOOST_TEST(r.is_error);
  BOOST_TEST(r.content == "no document with id 99 in the index: use a doc_id from a search result");
  r = p.invoke("read", R"({"doc_id":1,"offset":45})");
  BOOST_TEST(r.is_error);
  BOOST_TEST(r.content == "offset 45 is past the end of document 1 ('a.txt', 44 bytes)");
  r = p.invoke("read", R"({"doc_id":"1"})");
  BOOST_TEST(r.content == "argument 'doc_id' must be an integer, not a string");
}

BOOST_AUTO_TEST_CASE(reindexing_is_incremental) {
  build();
  loaded_plugin p(TROUPE_SEARCH_PLUGIN, config());
  BOOST_TEST(search_paths(p, "zebras") == (strings{"sub/d.txt"}));

  // Modify c.md (new size), delete sub/d.txt, add e.txt; a, b and utf8 stay as they are.
  write(corpus / "c.md", "Cats only. No canines here at all, none whatsoever.");
  fs::remove(corpus / "sub" / "d.txt");
  write(corpus / "e.txt", "A dog, a dog, a dog.");
  std::vector<std::pair<size_t, size_t>> progress;
  search::index_options opts;
  opts.progress_every = 2;
  opts.progress = [&](size_t done, size_t total) { progress.emplace_back(done, total); };
  search::index_stats s = search::build_index(corpus, index, opts);
  BOOST_TEST(s.files == 6u);  // a, b, bin.dat, c, e, utf8
  BOOST_TEST(s.added == 1u);
  BOOST_TEST(s.updated == 1u);
  BOOST_TEST(s.unchanged == 3u);
  BOOST_TEST(s.removed == 1u);
  BOOST_TEST(s.skipped == 1u);
  BOOST_TEST((progress == std::vector<std::pair<size_t, size_t>>{{2, 6}, {4, 6}, {6, 6}}));

  // The running plugin sees the new index; doc ids of unchanged and updated files are stable.
  BOOST_TEST(search_paths(p, "zebras") == (strings{}));
  BOOST_TEST(search_paths(p, "dog") == (strings{"e.txt", "a.txt"}));
  BOOST_TEST(search_paths(p, "canines") == (strings{"c.md"}));
  json::value v = ok_json(p.invoke("search", query_args("canines")));
  BOOST_TEST(v.find("results")->as_array()[0].find("doc_id")->as_int64() == 3);
  v = ok_json(p.invoke("search", query_args("dog")));
  BOOST_TEST(v.find("results")->as_array()[0].find("doc_id")->as_int64() == 6);

  // A run with nothing changed touches nothing.
  s = build();
  BOOST_TEST(s.unchanged == 5u);
  BOOST_TEST(s.added + s.updated + s.removed == 0u);

  // Same size, new modification time: re-read.
  write(corpus / "a.txt", "The quick brown cat jumps over the lazy dog.");
  fs::last_write_time(corpus / "a.txt",
                      fs::last_write_time(corpus / "a.txt") + std::chrono::seconds(5));
  s = build();
  BOOST_TEST(s.updated == 1u);
  BOOST_TEST(search_paths(p, "fox") == (strings{"b.txt"}));
}

BOOST_AUTO_TEST_CASE(an_index_belongs_to_one_directory) {
  build();
  fs::create_directories(base / "other");
  BOOST_CHECK_EXCEPTION(search::build_index(base / "other", index), search::index_error,
                        [&](const search::index_error& e) {
                          return std::string(e.what()).find("was built from '" +
                                                            fs::canonical(corpus).string()) !=
                                 std::string::npos;
                        });
  BOOST_CHECK_THROW(search::build_index(base / "missing", base / "i2.sqlite"), search::index_error);
}

BOOST_AUTO_TEST_CASE(init_refuses_a_missing_or_foreign_index) {
  auto init_error = [](const std::string& config) -> std::string {
    try {
      loaded_plugin p(TROUPE_SEARCH_PLUGIN, config);
    } catch (const std::exception& e) {
      return e.what();
    }
    return "";
  };
  BOOST_TEST(init_error("{}") ==
             "init failed: plugin 'search' cannot start: configuration needs 'index', the file "
             "built by `troupe index DIR --out INDEX`, e.g. {\"index\":\"/srv/corpus.sqlite\"}");
  BOOST_TEST(init_error(config()) ==
             "init failed: plugin 'search' cannot start: search index '" + index.string() +
               "' does not exist: build it with `troupe index DIR --out " + index.string() + "`");
  write(index, "");  // an empty file is an empty SQLite database, but not an index
  BOOST_TEST(init_error(config()).find("is not a troupe search index") != std::string::npos);
  write(index, "this is not a database at all, just text that is long enough to have a header");
  BOOST_TEST(init_error(config()).find("init failed: plugin 'search' cannot start:") == 0u);
}

BOOST_AUTO_TEST_SUITE_END()
