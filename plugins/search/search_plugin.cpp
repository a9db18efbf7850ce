/// The search plugin: full-text search over a local corpus indexed with `troupe index`.
///
/// Configuration (JSON object given to init):
///   index           the index file built by `troupe index DIR --out INDEX` (required)
///   max_results     most hits one search returns (default 50)
///   max_read_bytes  most bytes one read returns (default 64 KiB)
///
/// Tools:
///   search(query, k = 10, syntax = "fts5")  -> {"query", "results": [{"doc_id", "path", "score",
///                                              "snippet"}]}, best first (bm25; score = -bm25)
///   read(doc_id, offset = 0, length = 4000) -> {"doc_id", "path", "size", "offset", "content",
///                                              "next_offset"}
/// A query FTS5 refuses is a tool error that says how to write one; syntax = "plain" turns each
/// word into a quoted phrase, so any text is a valid query. The index is opened read-only: it may
/// be rebuilt while the plugin runs (a reader sees the index as of its own query).

#include <cstdio>
#include <memory>
#include <string>

#include "search_index.hpp"
#include "troupe/plugin/plugin.hpp"

namespace {

using troupe::plugin::call;
using troupe::plugin::result;
using troupe::plugin::tool_error;
namespace json = troupe::plugin::json;
namespace search = troupe::search;

struct search_state {
  std::shared_ptr<search::index_reader> index;
  int64_t max_results = 50;
  int64_t max_read_bytes = 64 << 10;
};

int64_t config_int(const json::value& config, const char* key, int64_t fallback) {
  const json::value* v = config.find(key);
  if (!v) return fallback;
  if (!v->is_integer() || v->as_int64() <= 0)
    throw tool_error(std::string("configuration '") + key + "' must be a positive integer");
  return v->as_int64();
}

search_state make_state(const json::value& config) {
  const json::value* index = config.find("index");
  if (!index || !index->is_string() || index->as_string().empty())
    throw tool_error(
      "configuration needs 'index', the file built by `troupe index DIR --out INDEX`, e.g. "
      "{\"index\":\"/srv/corpus.sqlite\"}");
  search_state s;
  try {
    s.index = std::make_shared<search::index_reader>(index->as_string());
  } catch (const search::index_error& e) {
    throw tool_error(e.what());
  }
  s.max_results = config_int(config, "max_results", s.max_results);
  s.max_read_bytes = config_int(config, "max_read_bytes", s.max_read_bytes);
  return s;
}

std::string format_score(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4f", x);
  return buf;
}

result run_search(call& c) {
  const search_state& s = c.state<search_state>();
  std::string query = c.arg<std::string>("query");
  int64_t k = c.arg_or<int64_t>("k", 10);
  if (k < 1 || k > s.max_results)
    throw tool_error("argument 'k' must be between 1 and " + std::to_string(s.max_results));
  std::string syntax = c.arg_or<std::string>("syntax", "fts5");
  std::string fts;
  if (syntax == "plain") fts = search::plain_query(query);
  else if (syntax == "fts5") fts = query;
  else throw tool_error("argument 'syntax' must be \"fts5\" or \"plain\", not '" + syntax + "'");
  if (fts.find_first_not_of(" \t\r\n") == std::string::npos)
    throw tool_error("argument 'query' is empty: give the words to search for");
  std::vector<search::search_hit> hits;
  try {
    hits = s.index->search(fts, static_cast<int>(k));
  } catch (const search::query_error& e) {
    throw tool_error("query '" + query + "' is not valid FTS5 syntax (" + e.what() +
                     "). Write words (all must match), \"quoted phrases\", OR, NOT, prefix*, "
                     "NEAR(a b); or pass \"syntax\": \"plain\" to search for the words as given");
  } catch (const search::index_error& e) {
    throw tool_error(std::string("search failed: ") + e.what());
  }
  json::array_writer items;
  for (const auto& h : hits)
    items.raw(json::object_writer()
                .number("doc_id", h.doc_id)
                .string("path", h.path)
                .raw("score", format_score(h.score))
                .string("snippet", h.snippet)
                .str());
  return result::ok(json::object_writer().string("query", query).raw("results", items.str()).str());
}

result run_read(call& c) {
  const search_state& s = c.state<search_state>();
  int64_t doc_id = c.arg<int64_t>("doc_id");
  int64_t offset = c.arg_or<int64_t>("offset", 0);
  int64_t length = c.arg_or<int64_t>("length", std::min<int64_t>(4000, s.max_read_bytes));
  if (offset < 0) throw tool_error("argument 'offset' must not be negative");
  if (length < 1) throw tool_error("argument 'length' must be positive");
  length = std::min(length, s.max_read_bytes);
  search::document_slice d;
  try {
    d = s.index->read(doc_id, offset, length);
  } catch (const search::index_error& e) {
    throw tool_error(e.what());
  }
  json::object_writer out;
  out.number("doc_id", d.doc_id).string("path", d.path).number("size", d.size);
  out.number("offset", d.offset).string("content", d.text);
  if (d.next_offset) out.number("next_offset", *d.next_offset);
  else out.null("next_offset");
  return result::ok(out.str());
}

}  // namespace

TROUPE_PLUGIN("search", "0.1.0") {
  plugin.on_init<search_state>(make_state);
  plugin.tool("search",
              "Full-text search over the indexed documents (SQLite FTS5, ranked by bm25). Returns "
              "the best matches with doc_id, path, score and a snippet where [ ] marks the "
              "matched words; read a document with the read tool.",
              R"js({"type":"object","properties":{)js"
              R"js("query":{"type":"string","description":"Words that must all match; \"a phrase\", OR, NOT, prefix* and NEAR(a b) work too"},)js"
              R"js("k":{"type":"integer","minimum":1,"description":"How many results (default 10)"},)js"
              R"js("syntax":{"type":"string","enum":["fts5","plain"],"description":"plain: take the words literally, no operators"})js"
              R"js(},"required":["query"],"additionalProperties":false})js",
              run_search);
  plugin.tool("read",
              "Reads part of an indexed document by its doc_id (from search). Returns the text "
              "and next_offset to continue from, or null at the end.",
              R"js({"type":"object","properties":{)js"
              R"js("doc_id":{"type":"integer","description":"A doc_id from a search result"},)js"
              R"js("offset":{"type":"integer","minimum":0,"description":"Byte offset to start at (default 0)"},)js"
              R"js("length":{"type":"integer","minimum":1,"description":"Most bytes to return (default 4000)"})js"
              R"js(},"required":["doc_id"],"additionalProperties":false})js",
              run_read);
}
