// A third-party tool plugin: count_words(text) -> {"words": n, "longest": "..."}.
#include <string>
#include <string_view>

#include "troupe/plugin/plugin.hpp"

using troupe::plugin::call;
using troupe::plugin::result;
namespace json = troupe::plugin::json;

TROUPE_PLUGIN("word_count", "1.0.0") {
  plugin.tool("count_words", "Counts the words of a text and finds the longest one.",
              R"({"type":"object","properties":{"text":{"type":"string"}},"required":["text"]})",
              [](call& c) -> result {
                std::string text = c.arg<std::string>("text");
                int64_t words = 0;
                std::string_view longest;
                size_t i = 0;
                while (i < text.size()) {
                  while (i < text.size() && text[i] == ' ') ++i;
                  size_t start = i;
                  while (i < text.size() && text[i] != ' ') ++i;
                  if (i == start) break;
                  ++words;
                  std::string_view w(text.data() + start, i - start);
                  if (w.size() > longest.size()) longest = w;
                }
                return result::ok(
                  json::object_writer().number("words", words).string("longest", longest).str());
              });
}
