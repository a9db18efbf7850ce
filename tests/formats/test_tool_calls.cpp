// Tool calls in model text (troupe/formats/tool_calls.hpp): the same result however the text is
// split, clear errors (never half a call) for malformed and truncated output.

#define BOOST_TEST_MODULE tool_calls
#include <boost/test/unit_test.hpp>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "troupe/error.hpp"
#include "troupe/formats/tool_calls.hpp"
#include "troupe/json.hpp"

using namespace troupe;

namespace {

/// Feeds `text` split at every pair of byte positions (three pieces); all results must agree.
tool_call_parser::output parse_every_split(tool_call_syntax syntax, const std::string& text) {
  const auto whole = parse_tool_calls(syntax, text);
  for (size_t a = 0; a <= text.size(); ++a) {
    for (size_t b = a; b <= text.size(); b += std::max<size_t>(1, (text.size() - a) / 7)) {
      tool_call_parser p(syntax);
      tool_call_parser::output got;
      for (auto piece : {text.substr(0, a), text.substr(a, b - a), text.substr(b)}) {
        auto o = p.feed(piece);
        got.text += o.text;
        for (auto& c : o.calls) got.calls.push_back(std::move(c));
      }
      got.text += p.finish().text;
      BOOST_TEST_CONTEXT("split at " << a << ", " << b) {
        BOOST_CHECK_EQUAL(got.text, whole.text);
        BOOST_REQUIRE_EQUAL(got.calls.size(), whole.calls.size());
        for (size_t i = 0; i < got.calls.size(); ++i) BOOST_CHECK(got.calls[i] == whole.calls[i]);
      }
    }
  }
  // One byte at a time.
  tool_call_parser p(syntax);
  tool_call_parser::output got;
  for (char c : text) {
    auto o = p.feed(std::string_view(&c, 1));
    got.text += o.text;
    for (auto& call : o.calls) got.calls.push_back(std::move(call));
  }
  got.text += p.finish().text;
  BOOST_CHECK_EQUAL(got.text, whole.text);
  BOOST_CHECK_EQUAL(got.calls.size(), whole.calls.size());
  return whole;
}

error error_of(tool_call_syntax syntax, const std::string& text) {
  try {
    parse_tool_calls(syntax, text);
  } catch (const error& e) {
    return e;
  }
  return {};
}

}  // namespace

BOOST_AUTO_TEST_CASE(hermes_calls_are_parsed_with_the_text_kept_apart) {
  const std::string text =
    "Let me look that up.\n<tool_call>\n{\"name\": \"read_file\", \"arguments\": {\"path\": "
    "\"a<b>.txt\", \"n\": 3}}\n</tool_call>\n<tool_call>\n{\"name\": \"list_dir\", "
    "\"arguments\": {}}\n</tool_call>";
  const auto out = parse_every_split(tool_call_syntax::hermes, text);
  BOOST_CHECK_EQUAL(out.text, "Let me look that up.\n\n");
  BOOST_REQUIRE_EQUAL(out.calls.size(), 2u);
  BOOST_CHECK_EQUAL(out.calls[0].name, "read_file");
  BOOST_CHECK_EQUAL(out.calls[0].id, "call_0");
  BOOST_CHECK(json::parse(out.calls[0].arguments) ==
              json::parse(R"({"path":"a<b>.txt","n":3})"));
  BOOST_CHECK_EQUAL(out.calls[1].name, "list_dir");
  BOOST_CHECK_EQUAL(out.calls[1].id, "call_1");
  BOOST_CHECK_EQUAL(out.calls[1].arguments, "{}");
}

BOOST_AUTO_TEST_CASE(text_that_only_looks_like_a_marker_stays_text) {
  const std::string text = "a < b, <tool and <tool_cal are fine; so is </tool_call> alone <";
  const auto out = parse_every_split(tool_call_syntax::hermes, text);
  BOOST_CHECK_EQUAL(out.text, text);
  BOOST_CHECK(out.calls.empty());
}

BOOST_AUTO_TEST_CASE(a_closing_marker_inside_a_json_string_is_argument_text) {
  const std::string text =
    "<tool_call>\n{\"name\": \"write_file\", \"arguments\": {\"text\": \"a</tool_call>b \\\"</tool_call>\"}}"
    "\n</tool_call>";
  const auto out = parse_every_split(tool_call_syntax::hermes, text);
  BOOST_REQUIRE_EQUAL(out.calls.size(), 1u);
  BOOST_CHECK_EQUAL(out.calls[0].arguments, R"({"text":"a</tool_call>b \"</tool_call>"})");
  const std::string kimi =
    "<|tool_calls_section_begin|><|tool_call_begin|>functions.f:0<|tool_call_argument_begin|>"
    "{\"s\": \"<|tool_call_end|>\"}<|tool_call_end|><|tool_calls_section_end|>";
  const auto k = parse_every_split(tool_call_syntax::kimi_k2, kimi);
  BOOST_REQUIRE_EQUAL(k.calls.size(), 1u);
  BOOST_CHECK_EQUAL(k.calls[0].arguments, R"({"s":"<|tool_call_end|>"})");
}

BOOST_AUTO_TEST_CASE(quoted_arguments_are_accepted) {
  const auto out = parse_tool_calls(
    tool_call_syntax::hermes,
    "<tool_call>{\"name\": \"f\", \"arguments\": \"{\\\"x\\\": 1}\"}</tool_call>");
  BOOST_REQUIRE_EQUAL(out.calls.size(), 1u);
  BOOST_CHECK_EQUAL(out.calls[0].arguments, "{\"x\":1}");
}

BOOST_AUTO_TEST_CASE(malformed_hermes_calls_are_clear_errors) {
  const std::vector<std::pair<std::string, std::string>> cases{
    {"<tool_call>{\"name\": \"f\", \"arguments\": {\"x\": }}</tool_call>", "does not parse"},
    {"<tool_call>{\"arguments\": {}}</tool_call>", "no \"name\""},
    {"<tool_call>[1, 2]</tool_call>", "not a JSON object"},
    {"<tool_call>{\"name\": \"f\", \"arguments\": [1]}</tool_call>", "arguments are not a JSON object"},
    {"<tool_call>{\"name\": \"f\", \"arguments\": \"nope\"}</tool_call>", "not JSON"},
  };
  for (const auto& [text, what] : cases) {
    BOOST_TEST_CONTEXT(text) {
      const auto e = error_of(tool_call_syntax::hermes, text);
      BOOST_CHECK_EQUAL(e.code(), errc::parse_error);
      BOOST_CHECK_MESSAGE(e.message().find(what) != std::string::npos, e.message());
      BOOST_CHECK_MESSAGE(e.message().find("not run") != std::string::npos, e.message());
    }
  }
}

BOOST_AUTO_TEST_CASE(truncated_output_never_yields_half_a_call) {
  const std::string text =
    "ok <tool_call>\n{\"name\": \"read_file\", \"arguments\": {\"path\": \"x\"}}\n</tool_call>";
  // Every truncation inside the call is an error at finish(), and no call came out before.
  const size_t open = text.find("<tool_call>") + std::string("<tool_call>").size();
  const size_t close = text.find("</tool_call>");
  for (size_t cut = open; cut < close + 1; ++cut) {
    tool_call_parser p(tool_call_syntax::hermes);
    const auto o = p.feed(text.substr(0, cut));
    BOOST_CHECK(o.calls.empty());
    BOOST_CHECK_EQUAL(o.text, "ok ");
    try {
      p.finish();
      BOOST_ERROR("no error for output cut at " << cut);
    } catch (const error& e) {
      BOOST_CHECK_EQUAL(e.code(), errc::parse_error);
      BOOST_CHECK(e.message().find("truncated tool call") != std::string::npos);
    }
  }
}

BOOST_AUTO_TEST_CASE(kimi_sections_are_parsed_with_names_from_ids) {
  const std::string text =
    "I will check both.<|tool_calls_section_begin|><|tool_call_begin|>functions.read_file:0"
    "<|tool_call_argument_begin|>{\"path\": \"a.txt\"}<|tool_call_end|>\n<|tool_call_begin|>"
    "functions.web.search:1<|tool_call_argument_begin|>{\"q\": \"x <|\"}<|tool_call_end|>"
    "<|tool_calls_section_end|>";
  const auto out = parse_every_split(tool_call_syntax::kimi_k2, text);
  BOOST_CHECK_EQUAL(out.text, "I will check both.");
  BOOST_REQUIRE_EQUAL(out.calls.size(), 2u);
  BOOST_CHECK_EQUAL(out.calls[0].id, "functions.read_file:0");
  BOOST_CHECK_EQUAL(out.calls[0].name, "read_file");
  BOOST_CHECK_EQUAL(out.calls[0].arguments, "{\"path\":\"a.txt\"}");
  BOOST_CHECK_EQUAL(out.calls[1].name, "web.search");
  BOOST_CHECK_EQUAL(out.calls[1].arguments, "{\"q\":\"x <|\"}");
}

BOOST_AUTO_TEST_CASE(malformed_and_truncated_kimi_sections_are_clear_errors) {
  const std::string begin = "<|tool_calls_section_begin|>";
  const std::vector<std::pair<std::string, std::string>> cases{
    {begin + "<|tool_call_begin|>functions.f:0{\"x\":1}<|tool_call_end|><|tool_calls_section_end|>",
     "no <|tool_call_argument_begin|>"},
    {begin + "<|tool_call_begin|>functions.f:0<|tool_call_argument_begin|>{x}<|tool_call_end|>",
     "do not parse"},
    {begin + "garbage<|tool_calls_section_end|>", "unexpected text"},
    {begin + "<|tool_call_begin|>:0<|tool_call_argument_begin|>{}<|tool_call_end|>",
     "names no function"},
    {begin + "<|tool_call_begin|>functions.f:0<|tool_call_argument_begin|>{\"x\":", "truncated"},
    {begin + "<|tool_call_begin|>functions.f:0<|tool_call_argument_begin|>{}<|tool_call_end|>",
     "truncated"},
  };
  for (const auto& [text, what] : cases) {
    BOOST_TEST_CONTEXT(text) {
      const auto e = error_of(tool_call_syntax::kimi_k2, text);
      BOOST_CHECK_EQUAL(e.code(), errc::parse_error);
      BOOST_CHECK_MESSAGE(e.message().find(what) != std::string::npos, e.message());
    }
  }
}

BOOST_AUTO_TEST_CASE(hermes_prompts_declare_tools_and_render_calls) {
  const std::vector<tool_spec> tools{
    {"read_file", "Read a file", R"({"type":"object","properties":{"path":{"type":"string"}}})"}};
  const auto decl = hermes_tool_declarations(tools);
  BOOST_CHECK(decl.find("<tools>\n{\"type\":\"function\",\"function\":{\"name\":\"read_file\","
                        "\"description\":\"Read a file\",\"parameters\":{\"type\":\"object\"") !=
              std::string::npos);
  BOOST_CHECK(decl.find("<tool_call>") != std::string::npos);
  const tool_call call{"call_0", "read_file", R"({"path":"a"})"};
  const auto text = hermes_tool_call_text(call);
  BOOST_CHECK_EQUAL(text,
                    "<tool_call>\n{\"name\": \"read_file\", \"arguments\": {\"path\":\"a\"}}\n"
                    "</tool_call>");
  // What we render, we parse back.
  const auto back = parse_tool_calls(tool_call_syntax::hermes, text);
  BOOST_REQUIRE_EQUAL(back.calls.size(), 1u);
  BOOST_CHECK_EQUAL(back.calls[0].name, "read_file");
  BOOST_CHECK_EQUAL(back.calls[0].arguments, call.arguments);
}

BOOST_AUTO_TEST_CASE(kimi_prompts_follow_the_k2_template) {
  const std::vector<tool_spec> tools{{"f", "F", R"({"type":"object"})"}};
  std::vector<chat_message> msgs{chat_message::user("hi"),
                                 chat_message::assistant("", {{"call_9", "f", R"({"a":1})"}})};
  tool_result r = tool_result::ok("functions.f:0", "42");
  msgs.push_back(chat_message::tool({"functions.f:0", "f", "{}"}, r));
  const auto p = kimi_k2_prompt(msgs, tools);
  BOOST_CHECK_EQUAL(
    p,
    "<|im_system|>tool_declare<|im_middle|>\n  # Tools\n  [{\"type\": \"function\", \"function\": "
    "{\"name\": \"f\", \"description\": \"F\", \"parameters\": {\"type\": \"object\"}}}]<|im_end|>"
    "<|im_system|>system<|im_middle|>You are Kimi, an AI assistant created by Moonshot AI."
    "<|im_end|><|im_user|>user<|im_middle|>hi<|im_end|><|im_assistant|>assistant<|im_middle|>"
    "<|tool_calls_section_begin|><|tool_call_begin|>functions.f:0<|tool_call_argument_begin|>"
    "{\"a\":1}<|tool_call_end|><|tool_calls_section_end|><|im_end|><|im_system|>f<|im_middle|>"
    "## Return of functions.f:0\n    42<|im_end|><|im_assistant|>assistant<|im_middle|>");
}

BOOST_AUTO_TEST_CASE(kimi_prompts_rename_foreign_call_ids_consistently) {
  // Ids from another API become functions.NAME:IDX, IDX counting all calls so far, and the
  // results that answer them follow; Kimi-form ids stay as they are.
  std::vector<chat_message> msgs{
    chat_message::system("S"), chat_message::user("u"),
    chat_message::assistant("", {{"functions.a:0", "a", "{}"}, {"call_x", "b", "{}"}})};
  msgs.push_back(chat_message::tool({"functions.a:0", "a", "{}"}, tool_result::ok("functions.a:0", "1")));
  msgs.push_back(chat_message::tool({"call_x", "b", "{}"}, tool_result::ok("call_x", "2")));
  msgs.push_back(chat_message::assistant("", {{"call_y", "a", ""}}));
  msgs.push_back(chat_message::tool({"call_y", "a", ""}, tool_result::ok("call_y", "3")));
  const auto p = kimi_k2_prompt(msgs, {}, false);
  BOOST_CHECK_EQUAL(
    p,
    "<|im_system|>system<|im_middle|>S<|im_end|><|im_user|>user<|im_middle|>u<|im_end|>"
    "<|im_assistant|>assistant<|im_middle|><|tool_calls_section_begin|>"
    "<|tool_call_begin|>functions.a:0<|tool_call_argument_begin|>{}<|tool_call_end|>"
    "<|tool_call_begin|>functions.b:1<|tool_call_argument_begin|>{}<|tool_call_end|>"
    "<|tool_calls_section_end|><|im_end|>"
    "<|im_system|>a<|im_middle|>## Return of functions.a:0\n    1<|im_end|>"
    "<|im_system|>b<|im_middle|>## Return of functions.b:1\n    2<|im_end|>"
    "<|im_assistant|>assistant<|im_middle|><|tool_calls_section_begin|>"
    "<|tool_call_begin|>functions.a:2<|tool_call_argument_begin|>{}<|tool_call_end|>"
    "<|tool_calls_section_end|><|im_end|>"
    "<|im_system|>a<|im_middle|>## Return of functions.a:2\n    3<|im_end|>");
}

namespace {
std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
}  // namespace

BOOST_AUTO_TEST_CASE(kimi_prompts_equal_the_real_template) {
  // tests/fixtures/kimi_tokenizer/expected_prompts.json: Kimi-K2-Instruct-0905's
  // chat_template.jinja rendered by transformers (tools/reference/make_tiktoken_fixture.py).
  const std::string path =
    std::string(TROUPE_SOURCE_DIR) + "/tests/fixtures/kimi_tokenizer/expected_prompts.json";
  const json::value doc = json::parse(read_text(path), path);
  const auto& cases = doc.find("cases")->as_array();
  BOOST_TEST_REQUIRE(cases.size() >= 6u);
  for (const json::value& c : cases) {
    BOOST_TEST_CONTEXT(c.find("name")->as_string()) {
      std::vector<tool_spec> tools;
      for (const json::value& t : c.find("tools")->as_array()) {
        const json::value& fn = *t.find("function");
        tools.push_back({fn.find("name")->as_string(), fn.find("description")->as_string(),
                         json::dump(*fn.find("parameters"))});
      }
      std::vector<chat_message> msgs;
      for (const json::value& m : c.find("messages")->as_array()) {
        chat_message cm;
        const std::string& r = m.find("role")->as_string();
        cm.role = r == "system"      ? role::system
                  : r == "user"      ? role::user
                  : r == "assistant" ? role::assistant
                                     : role::tool;
        if (const json::value* content = m.find("content"); content && content->is_string())
          cm.content.push_back(content_part::text(content->as_string()));
        if (const json::value* n = m.find("name")) cm.name = n->as_string();
        if (const json::value* id = m.find("tool_call_id")) cm.tool_call_id = id->as_string();
        if (const json::value* calls = m.find("tool_calls")) {
          for (const json::value& tc : calls->as_array()) {
            const json::value& fn = *tc.find("function");
            cm.tool_calls.push_back({tc.find("id")->as_string(), fn.find("name")->as_string(),
                                     fn.find("arguments")->as_string()});
          }
        }
        msgs.push_back(std::move(cm));
      }
      const bool agp = c.find("add_generation_prompt")->as_bool();
      BOOST_CHECK_EQUAL(kimi_k2_prompt(msgs, tools, agp), c.find("prompt")->as_string());
    }
  }
}
