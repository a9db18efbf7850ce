// Grammars for constrained decoding (troupe/llama/grammar.hpp, token_mask.hpp): schemas and
// tool-call grammars (Hermes, Kimi K2) accept what they should and nothing else, everything a grammar lets through validates against its
// schema, and token masks equal a brute-force check of every token of SmolLM2's vocabulary.

#define BOOST_TEST_MODULE grammar
#include <boost/test/unit_test.hpp>

#include <random>
#include <string>
#include <vector>

#include "llama/llama_test_support.hpp"
#include "troupe/error.hpp"
#include "troupe/formats/tool_calls.hpp"
#include "troupe/json.hpp"
#include "troupe/llama/grammar.hpp"
#include "troupe/llama/llama_model.hpp"
#include "troupe/llama/token_mask.hpp"
#include "troupe/llama/tokenizer.hpp"

using namespace troupe;
using namespace troupe::llama;

namespace {

const char* const file_schema = R"({
  "type": "object",
  "properties": {
    "path": {"type": "string", "minLength": 1},
    "offset": {"type": "integer"},
    "mode": {"enum": ["text", "bytes"]},
    "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
    "options": {"type": "object", "properties": {"follow": {"type": "boolean"},
                "depth": {"type": ["integer", "null"]}}, "required": ["follow"],
                "additionalProperties": false},
    "ratio": {"type": "number"},
    "extra": {}
  },
  "required": ["path", "mode"],
  "additionalProperties": false
})";

bool accepts(const std::shared_ptr<const grammar>& g, const std::string& text) {
  grammar_matcher m(g);
  return m.feed(text) && m.can_end();
}

std::vector<tool_spec> sample_tools() {
  return {{"read_file", "Read a file", file_schema},
          {"list_dir", "List a directory",
           R"({"type":"object","properties":{"path":{"type":"string"}},"required":["path"]})"}};
}

/// A random byte string the grammar allows, biased towards closing what is open so that walks
/// end. Returns false when the walk did not end within `limit` bytes.
bool random_walk(const std::shared_ptr<const grammar>& g, std::mt19937& rng, std::string& out,
                 size_t limit = 600) {
  grammar_matcher m(g);
  out.clear();
  const std::string closers = "\"}]0";
  while (out.size() < limit) {
    if (m.can_end() && (m.done() || rng() % 4 == 0)) return true;
    std::vector<uint8_t> allowed;
    for (int b = 1; b < 256; ++b) {
      grammar_matcher t = m;
      if (t.feed(static_cast<uint8_t>(b))) allowed.push_back(static_cast<uint8_t>(b));
    }
    if (allowed.empty()) return false;
    uint8_t pick = allowed[rng() % allowed.size()];
    if (rng() % 3 == 0) {
      for (char c : closers)
        if (std::find(allowed.begin(), allowed.end(), static_cast<uint8_t>(c)) != allowed.end()) {
          pick = static_cast<uint8_t>(c);
          break;
        }
    }
    BOOST_REQUIRE(m.feed(pick));
    out.push_back(static_cast<char>(pick));
  }
  return false;
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_schema_accepts_conforming_json_and_nothing_else) {
  const auto g = grammar::from_schema(file_schema);
  for (const std::string ok :
       {R"({"path":"a.txt","mode":"text"})", R"({"path": "a", "offset": -12, "mode": "bytes"})",
        R"({"path":"é€😀\n\u00e9","mode":"text","tags":["x", "y"]})",
        R"({"path":"p","mode":"text","options":{"follow":true,"depth":null},"ratio":1.5e-3})",
        R"({"path":"p","mode":"text","extra":{"any":[1,{"b":null},"s"]}})",
        R"({"path":"p","mode":"text","options":{"follow":false, "depth":7}})"}) {
    BOOST_CHECK_MESSAGE(accepts(g, ok), "refused: " << ok);
    BOOST_CHECK_MESSAGE(json::validate(json::parse(ok), json::parse(file_schema)).empty(), ok);
  }
  for (const std::string bad : {
         R"({"mode":"text"})",                               // required path missing
         R"({"path":"a"})",                                  // required mode missing
         R"({"path":"","mode":"text"})",                     // minLength
         R"({"path":"a","mode":"txt"})",                     // not in the enum
         R"({"path":"a","mode":"text","size":1})",           // undeclared property
         R"({"mode":"text","path":"a"})",                    // order (declared order is kept)
         R"({"path":"a","offset":1.5,"mode":"text"})",       // integer
         R"({"path":"a","mode":"text","tags":["a","b","c","d"]})",  // maxItems
         R"({"path":"a","mode":"text","options":{"depth":1}})",     // nested required
         R"({"path":"a\x","mode":"text"})",                  // bad escape
         R"({"path":"a","mode":"text",})",                   // trailing comma
         R"({"path":"a",  "mode":"text"})",                  // two spaces
         R"({"path":"a","mode":"text"} )",                   // trailing space
         R"({"path":"a","offset":01,"mode":"text"})",        // leading zero
         "{\"path\":\"a\xC3\",\"mode\":\"text\"}",           // broken UTF-8
         "{\"path\":\"\xED\xA0\x80\",\"mode\":\"text\"}"}) { // UTF-16 surrogate in UTF-8
    BOOST_CHECK_MESSAGE(!accepts(g, bad), "accepted: " << bad);
  }
  // Prefixes of a valid document are alive but cannot end.
  grammar_matcher m(g);
  BOOST_CHECK(m.feed(R"({"path":"a","mo)"));
  BOOST_CHECK(!m.can_end());
}

BOOST_AUTO_TEST_CASE(everything_a_grammar_lets_through_validates) {
  std::mt19937 rng(7);
  const std::vector<std::string> schemas{
    file_schema,
    R"({"type":"array","items":{"type":"integer"},"minItems":2,"maxItems":4})",
    R"({"anyOf":[{"type":"string","maxLength":5},{"type":"number"},{"type":"null"}]})",
    R"({"type":"object","properties":{"a":{"const":{"k":[1,2]}},"b":{"enum":[1,10,100]}},"required":["a","b"]})",
    R"({"type":"array","items":{"type":"integer","minimum":-5,"maximum":120},"maxItems":3})",
    R"({"type":"object","additionalProperties":false})",
    R"({})"};
  for (const auto& schema : schemas) {
    const auto g = grammar::from_schema(schema);
    const auto s = json::parse(schema);
    int ended = 0;
    std::string out;
    for (int i = 0; i < 150; ++i) {
      if (!random_walk(g, rng, out)) continue;
      ++ended;
      json::value v;
      try {
        v = json::parse(out);
      } catch (const error& e) {
        BOOST_ERROR(schema << "\n  produced " << out << "\n  which does not parse: " << e.message());
        continue;
      }
      const auto why = json::validate(v, s);
      BOOST_CHECK_MESSAGE(why.empty(), schema << "\n  produced " << out << "\n  " << why);
    }
    BOOST_TEST_MESSAGE(ended << " of 150 random walks ended for " << schema);
    BOOST_CHECK_GE(ended, 30);
  }
}

BOOST_AUTO_TEST_CASE(min_completion_is_exact_and_reachable_from_every_state) {
  // From any state, some byte lowers min_completion by exactly one, until the state can end:
  // the engine relies on it to close outputs before max_tokens.
  std::mt19937 rng(11);
  const auto tools = sample_tools();
  const std::vector<std::shared_ptr<const grammar>> grammars{
    grammar::from_schema(file_schema),
    grammar::from_schema(R"({"type":"array","items":{"type":"string","minLength":3},"minItems":2})"),
    grammar::from_schema(R"({})"),
    grammar::from_schema(R"({"type":"array","items":{"type":"integer","minimum":250,"maximum":4000}})"),
    grammar::for_tool_calls(tools, {tool_choice_mode::required, ""}),
    grammar::for_tool_calls(tools, {tool_choice_mode::automatic, ""}),
    grammar::for_tool_calls(tools, {tool_choice_mode::required, ""}, 3, tool_call_syntax::kimi_k2),
    grammar::for_tool_calls(tools, {tool_choice_mode::automatic, ""}, 8, tool_call_syntax::kimi_k2)};
  int states = 0;
  for (const auto& g : grammars) {
    std::string walk;
    for (int w = 0; w < 20; ++w) {
      random_walk(g, rng, walk, 200);
      for (size_t cut = 0; cut <= walk.size(); cut += 3) {
        grammar_matcher m(g);
        BOOST_REQUIRE(m.feed(std::string_view(walk).substr(0, cut)));
        ++states;
        for (uint32_t need = m.min_completion(); need > 0; need = m.min_completion()) {
          bool stepped = false;
          for (int b = 1; b < 256 && !stepped; ++b) {
            grammar_matcher t = m;
            if (t.feed(static_cast<uint8_t>(b)) && t.min_completion() == need - 1) {
              m = t;
              stepped = true;
            }
          }
          if (!stepped) {
            BOOST_ERROR("no byte completes `" << walk.substr(0, cut) << "` (need " << need << ")");
            break;
          }
        }
        BOOST_CHECK(m.can_end());
      }
    }
  }
  BOOST_TEST_MESSAGE(states << " states completed along their shortest path");
}

BOOST_AUTO_TEST_CASE(integer_bounds_are_enforced_digit_by_digit) {
  const auto g = grammar::from_schema(
    R"({"type":"object","properties":{"k":{"type":"integer","minimum":1,"maximum":50},)"
    R"("t":{"type":"integer","minimum":-20,"exclusiveMaximum":-3},)"
    R"("big":{"type":"integer","minimum":1000}},"required":["k","t","big"]})");
  for (const std::string ok : {R"({"k":1,"t":-20,"big":1000})", R"({"k":50,"t":-4,"big":99999})",
                               R"({"k":7,"t":-15,"big":1000000000000})"})
    BOOST_CHECK_MESSAGE(accepts(g, ok), "refused: " << ok);
  for (const std::string bad : {R"({"k":0,"t":-20,"big":1000})", R"({"k":51,"t":-20,"big":1000})",
                                R"({"k":-1,"t":-20,"big":1000})", R"({"k":1,"t":-3,"big":1000})",
                                R"({"k":1,"t":-21,"big":1000})", R"({"k":1,"t":-4,"big":999})",
                                R"({"k":01,"t":-4,"big":1000})"})
    BOOST_CHECK_MESSAGE(!accepts(g, bad), "accepted: " << bad);
  // Dead ends are refused at the digit that causes them, not at the end.
  grammar_matcher m(g);
  BOOST_CHECK(m.feed(R"({"k":5)"));
  BOOST_CHECK(!grammar_matcher(m).feed('1'));  // 51 > 50, and longer only grows
  BOOST_CHECK(grammar_matcher(m).feed('0'));   // 50
  BOOST_CHECK_THROW(grammar::from_schema(R"({"type":"integer","minimum":5,"maximum":4})"), error);
}

BOOST_AUTO_TEST_CASE(unusable_schemas_are_refused_with_their_path) {
  for (const auto& [schema, what] : std::vector<std::pair<std::string, std::string>>{
         {R"({"type":"object","properties":{"a":{"type":"strin"}}})", "/properties/a: unknown type"},
         {R"({"type":"object","properties":{"a":{}},"required":["b"]})", "'b' is not among"},
         {R"({"type":"array","minItems":3,"maxItems":2})", "minItems is larger"},
         {R"(false)", "admits no value"},
         {R"({"type":"object")", "response schema"}}) {
    try {
      grammar::from_schema(schema);
      BOOST_ERROR("accepted " << schema);
    } catch (const error& e) {
      BOOST_CHECK_MESSAGE(e.message().find(what) != std::string::npos, e.message());
    }
  }
}

BOOST_AUTO_TEST_CASE(tool_call_grammars_force_a_conforming_hermes_call) {
  const auto tools = sample_tools();
  const auto required = grammar::for_tool_calls(tools, {tool_choice_mode::required, ""});
  const std::string call =
    "<tool_call>\n{\"name\": \"read_file\", \"arguments\": {\"path\":\"a\",\"mode\":\"text\"}}\n"
    "</tool_call>";
  BOOST_CHECK(accepts(required, call));
  BOOST_CHECK(accepts(required, call + "\n" + call));
  BOOST_CHECK(!accepts(required, "Sure! " + call));  // required: no text first
  BOOST_CHECK(!accepts(required, "<tool_call>\n{\"name\": \"write_file\", \"arguments\": {}}\n"
                                 "</tool_call>"));  // unknown tool
  BOOST_CHECK(!accepts(required, "<tool_call>\n{\"name\": \"read_file\", \"arguments\": "
                                 "{\"path\":\"a\"}}\n</tool_call>"));  // mode is required
  // What the grammar produces, the parser reads back as the same call.
  const auto parsed = parse_tool_calls(tool_call_syntax::hermes, call);
  BOOST_REQUIRE_EQUAL(parsed.calls.size(), 1u);
  BOOST_CHECK_EQUAL(parsed.calls[0].name, "read_file");

  const auto named = grammar::for_tool_calls(tools, {tool_choice_mode::named, "list_dir"});
  BOOST_CHECK(!accepts(named, call));
  BOOST_CHECK(accepts(named, "<tool_call>\n{\"name\": \"list_dir\", \"arguments\": "
                             "{\"path\": \"/\"}}\n</tool_call>"));
  BOOST_CHECK_THROW(grammar::for_tool_calls(tools, {tool_choice_mode::named, "nope"}), error);

  const auto automatic = grammar::for_tool_calls(tools, {tool_choice_mode::automatic, ""});
  BOOST_CHECK(accepts(automatic, "Just text, <b>bold</b> and all."));
  BOOST_CHECK(accepts(automatic, "Let me read it.\n" + call));
  BOOST_CHECK(!accepts(automatic, "Let me read it.\n<tool_call>\n{\"name\": \"read_file\", "
                                  "\"arguments\": {\"path\": 3}}\n</tool_call>"));
  grammar_matcher m(automatic);
  BOOST_CHECK(m.feed("text <tool_call>"));
  BOOST_CHECK(!m.can_end());  // a call was opened: it must be finished
}

BOOST_AUTO_TEST_CASE(kimi_tool_call_grammars_force_a_conforming_section) {
  // Kimi K2's markers are special tokens, read by the grammar as kimi_marker bytes.
  const auto tools = sample_tools();
  auto marker = [](uint8_t b) { return std::string(1, static_cast<char>(b)); };
  const std::string sb = marker(kimi_marker::section_begin), cb = marker(kimi_marker::call_begin),
                    ab = marker(kimi_marker::argument_begin), ce = marker(kimi_marker::call_end),
                    se = marker(kimi_marker::section_end);
  const std::string call = cb + "functions.read_file:0" + ab + R"({"path":"a","mode":"text"})" + ce;
  const std::string call2 = cb + "functions.list_dir:17" + ab + R"({"path": "/"})" + ce;
  const auto required =
      grammar::for_tool_calls(tools, {tool_choice_mode::required, ""}, 8, tool_call_syntax::kimi_k2);
  BOOST_CHECK(accepts(required, sb + call + se));
  BOOST_CHECK(accepts(required, sb + call + call2 + se));
  BOOST_CHECK(!accepts(required, sb + call));                 // the section must close
  BOOST_CHECK(!accepts(required, "Sure. " + sb + call + se));  // required: no text first
  BOOST_CHECK(!accepts(required, sb + cb + "functions.read_file:" + ab + "{}" + ce + se));  // no index
  BOOST_CHECK(!accepts(required, sb + cb + "functions.write_file:0" + ab + "{}" + ce + se));
  BOOST_CHECK(!accepts(required, sb + cb + "functions.read_file:0" + ab + R"({"path":"a"})" + ce + se));
  BOOST_CHECK(!accepts(required, "<|tool_calls_section_begin|>"));  // the markers are not text
  grammar_matcher done(required);
  BOOST_CHECK(done.feed(sb + call + se));
  BOOST_CHECK(done.done());
  // Rendered with the real marker texts, the parser reads the same calls back.
  const std::string rendered =
      "<|tool_calls_section_begin|><|tool_call_begin|>functions.read_file:0<|tool_call_argument_begin|>"
      R"({"path":"a","mode":"text"})"
      "<|tool_call_end|><|tool_calls_section_end|>";
  const auto parsed = parse_tool_calls(tool_call_syntax::kimi_k2, rendered);
  BOOST_REQUIRE_EQUAL(parsed.calls.size(), 1u);
  BOOST_CHECK_EQUAL(parsed.calls[0].name, "read_file");

  const auto named = grammar::for_tool_calls(tools, {tool_choice_mode::named, "list_dir"}, 8,
                                             tool_call_syntax::kimi_k2);
  BOOST_CHECK(accepts(named, sb + call2 + se));
  BOOST_CHECK(!accepts(named, sb + call + se));
  BOOST_CHECK(!accepts(named, sb + call2 + call2 + se));  // named: one call

  const auto automatic = grammar::for_tool_calls(tools, {tool_choice_mode::automatic, ""}, 8,
                                                 tool_call_syntax::kimi_k2);
  BOOST_CHECK(accepts(automatic, "Plain text <|with|> brackets."));
  BOOST_CHECK(accepts(automatic, "Let me look." + sb + call + se));
  grammar_matcher m(automatic);
  BOOST_CHECK(m.feed("text" + sb));
  BOOST_CHECK(!m.can_end());  // a section was opened: it must be finished
}

BOOST_AUTO_TEST_CASE(token_masks_equal_a_brute_force_check_of_every_token) {
  const auto path = llama::test::smollm2_path();
  if (path.empty()) {
    BOOST_TEST_MESSAGE("SKIPPED: SmolLM2-135M-Instruct.Q4_1.gguf not found");
    return;
  }
  const auto model = llama_model::load(path);
  const auto tok = tokenizer::from_gguf(model->file());
  const token_masker masker(tok);
  const auto tools = sample_tools();
  const std::string call =
    "Let me check.\n<tool_call>\n{\"name\": \"read_file\", \"arguments\": {\"path\": "
    "\"dir/é.txt\", \"offset\": 120, \"mode\": \"text\", \"tags\": [\"a\"], \"options\": "
    "{\"follow\": true}, \"extra\": {\"k\": [1.5, \"v\"]}}}\n</tool_call>";
  const auto g = grammar::for_tool_calls(tools, {tool_choice_mode::automatic, ""});
  mask_cache cache;
  grammar_matcher m(g);
  size_t checked = 0, allowed_total = 0;
  for (size_t i = 0; i <= call.size(); i += (i < 20 ? 7 : 1)) {
    grammar_matcher state(g);
    BOOST_REQUIRE(state.feed(std::string_view(call).substr(0, i)));
    const auto mask = masker.allowed(state, &cache);
    const auto again = masker.allowed(state, &cache);  // from the cache: the same object
    BOOST_CHECK(mask == again);
    for (int32_t t = 0; t < masker.vocab_size(); ++t) {
      bool expect;
      if (masker.is_end_of_generation(t)) {
        expect = state.can_end();
      } else if (masker.bytes(t).empty()) {
        expect = tok.type(t) == token_type::control &&
                 state.lexical_mode() == grammar_matcher::mode::free_text;
      } else {
        grammar_matcher s = state;
        expect = s.feed(masker.bytes(t));
      }
      if (test_token(*mask, t) != expect) {
        BOOST_ERROR("prefix " << i << " (" << call.substr(0, i) << "): token " << t << " '"
                              << masker.bytes(t) << "' mask says " << test_token(*mask, t));
        break;
      }
      allowed_total += expect ? 1 : 0;
    }
    ++checked;
  }
  BOOST_TEST_MESSAGE(checked << " states checked against all " << masker.vocab_size()
                             << " tokens; " << allowed_total << " allowed in all");
  BOOST_CHECK_GT(checked, 100u);
}

BOOST_AUTO_TEST_CASE(a_masker_over_any_vocabulary_equals_a_brute_force_check) {
  // The tiktoken path (Kimi models) builds the masker from token bytes and kinds directly: a
  // small vocabulary with multi-byte, partial-UTF-8, quote-carrying, control and end tokens.
  using kind = mask_vocabulary::kind;
  mask_vocabulary v;
  const std::vector<std::string> texts = {"{", "}", "\"", "\"path", "\":", " \"", "a", "é",
                                           "\xC3", "\xA9\"", "1", "12", ",", "\"mode\": \"text\"",
                                           "x<y", "", "\\\"", " ", "true", "\"text\"}"};
  for (const auto& t : texts) {
    v.bytes.push_back(t);
    v.kinds.push_back(kind::text);
  }
  v.bytes.push_back("<|special|>");  // control: its text is ignored
  v.kinds.push_back(kind::control);
  v.bytes.emplace_back();
  v.kinds.push_back(kind::end_of_generation);
  const token_masker masker(v);
  BOOST_REQUIRE_EQUAL(masker.vocab_size(), static_cast<int32_t>(v.kinds.size()));
  const auto g = grammar::from_schema(
      R"({"type":"object","properties":{"path":{"type":"string"},"mode":{"enum":["text","bytes"]}},)"
      R"("required":["path","mode"],"additionalProperties":false})");
  const std::string answer = "{\"path\": \"aé\\\"1\", \"mode\": \"text\"}";
  size_t allowed_total = 0;
  for (size_t i = 0; i <= answer.size(); ++i) {
    grammar_matcher state(g);
    BOOST_REQUIRE(state.feed(std::string_view(answer).substr(0, i)));
    const auto mask = masker.allowed(state);
    for (int32_t t = 0; t < masker.vocab_size(); ++t) {
      bool expect = false;
      const auto k = v.kinds[static_cast<size_t>(t)];
      if (k == kind::end_of_generation) expect = state.can_end();
      else if (k == kind::text && !v.bytes[static_cast<size_t>(t)].empty()) {
        grammar_matcher s = state;
        expect = s.feed(v.bytes[static_cast<size_t>(t)]);
      }
      BOOST_CHECK_MESSAGE(test_token(*mask, t) == expect,
                          "prefix " << i << ": token " << t << " '" << v.bytes[size_t(t)] << "'");
      allowed_total += expect ? 1 : 0;
    }
  }
  BOOST_CHECK_GT(allowed_total, answer.size());  // the check saw allowed tokens, not only "no"
  v.kinds.pop_back();
  BOOST_CHECK_THROW(token_masker{v}, error);
}
