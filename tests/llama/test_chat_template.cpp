// Chat templates against real models' Jinja templates rendered by Jinja
// (tests/fixtures/llama/chat_templates.json, tools/reference/make_chat_template_fixture.py):
// detection from the template text and through a GGUF file's metadata, apply() byte for byte,
// and the rules for what the templates refuse.

#define BOOST_TEST_MODULE chat_template
#include <boost/test/unit_test.hpp>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "gguf_test_writer.hpp"
#include "troupe/error.hpp"
#include "troupe/json.hpp"
#include "troupe/llama/chat_template.hpp"

using troupe::llama::chat_context;
using troupe::llama::chat_message;
using troupe::llama::chat_template;
using kind = troupe::llama::chat_template::kind;

namespace {

const troupe::json::value& fixture() {
  static const troupe::json::value doc = [] {
    const std::string p =
        std::string(TROUPE_SOURCE_DIR) + "/tests/fixtures/llama/chat_templates.json";
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return troupe::json::parse(ss.str(), p);
  }();
  return doc;
}

const std::string& str(const troupe::json::value& v, std::string_view key) {
  return v.find(key)->as_string();
}

std::map<std::string, std::vector<chat_message>> conversations() {
  std::map<std::string, std::vector<chat_message>> out;
  for (const auto& c : fixture().find("conversations")->as_array()) {
    auto& msgs = out[str(c, "id")];
    for (const auto& m : c.find("messages")->as_array()) {
      msgs.push_back({str(m, "role"), str(m, "content")});
    }
  }
  return out;
}

chat_context context_of(const troupe::json::value& t) {
  chat_context ctx;
  ctx.bos_token = str(t, "bos_token");
  ctx.eos_token = str(t, "eos_token");
  return ctx;
}

/// A GGUF file with only the tokenizer metadata a chat template reads.
std::filesystem::path write_gguf(const troupe::test::scratch& dir, const std::string& tmpl,
                                 const std::string& bos, const std::string& eos) {
  troupe::test::gguf_writer w;
  w.kv_string("general.architecture", "llama");
  w.kv_string_array("tokenizer.ggml.tokens", {"<unk>", bos, eos, "a", "b"});
  w.kv("tokenizer.ggml.bos_token_id", troupe::gguf_value_type::u32, uint32_t(1));
  w.kv("tokenizer.ggml.eos_token_id", troupe::gguf_value_type::u32, uint32_t(2));
  if (!tmpl.empty()) w.kv_string("tokenizer.chat_template", tmpl);
  return dir.write(w.bytes());
}

}  // namespace

BOOST_AUTO_TEST_CASE(every_fixture_template_is_detected_and_rendered_as_jinja_renders_it) {
  const auto convs = conversations();
  size_t compared = 0, templates = 0;
  std::map<std::string, int> kinds_seen;
  for (const auto& t : fixture().find("templates")->as_array()) {
    BOOST_TEST_CONTEXT("template " << str(t, "name")) {
      const auto tmpl = chat_template::detect(str(t, "template"), context_of(t));
      BOOST_REQUIRE(tmpl.has_value());
      BOOST_CHECK_EQUAL(chat_template::name(tmpl->type()), str(t, "kind"));
      ++kinds_seen[str(t, "kind")];
      ++templates;
      for (const auto& r : t.find("renders")->as_array()) {
        const bool gen = r.find("add_generation_prompt")->as_bool();
        BOOST_TEST_CONTEXT("conversation " << str(r, "conversation") << " gen " << gen) {
          const auto& msgs = convs.at(str(r, "conversation"));
          const std::string& want = str(r, "text");
          BOOST_CHECK_EQUAL(tmpl->apply(msgs, gen), want);
          // BOS is the template's when it prints bos_token (SmolLM2's BOS is <|im_start|>: its
          // text starts with it, but from the ChatML turn, not as a BOS).
          const std::string& bos = str(t, "bos_token");
          BOOST_CHECK_EQUAL(
              tmpl->begins_with_bos(),
              str(t, "template").find("bos_token") != std::string::npos && want.starts_with(bos));
          ++compared;
        }
      }
      // Conversations the template refuses still render, by the header's rules.
      if (const auto* raises = t.find("jinja_raises")) {
        for (const auto& r : raises->as_array()) {
          BOOST_CHECK(!tmpl->apply(convs.at(str(r, "conversation")), true).empty());
        }
      }
    }
  }
  BOOST_TEST_MESSAGE(compared << " renderings of " << templates << " templates compared");
  BOOST_CHECK_EQUAL(templates, 30u);
  BOOST_CHECK_GE(compared, 280u);
  for (std::string_view k : {"chatml", "llama2", "llama2-sys", "mistral-v1", "mistral-v3",
                             "mistral-v3-tekken", "mistral-v7", "mistral-v7-tekken", "llama3",
                             "zephyr", "phi3", "phi4", "gemma", "vicuna", "vicuna-orca",
                             "granite", "smollm3"}) {
    BOOST_CHECK_MESSAGE(kinds_seen.count(std::string(k)) == 1, "no fixture template of kind " << k);
  }
}

BOOST_AUTO_TEST_CASE(from_gguf_detects_the_kind_and_reads_bos_and_eos_from_the_vocabulary) {
  troupe::test::scratch dir;
  for (const auto& t : fixture().find("templates")->as_array()) {
    BOOST_TEST_CONTEXT("template " << str(t, "name")) {
      const std::string bos = str(t, "bos_token"), eos = str(t, "eos_token");
      const auto file = troupe::gguf_file::open(write_gguf(dir, str(t, "template"), bos, eos));
      const chat_template tmpl = chat_template::from_gguf(file);
      BOOST_CHECK_EQUAL(chat_template::name(tmpl.type()), str(t, "kind"));
      // The first rendering again, now with the vocabulary's token texts.
      const auto& r = t.find("renders")->as_array().front();
      const auto msgs = conversations().at(str(r, "conversation"));
      BOOST_CHECK_EQUAL(tmpl.apply(msgs, r.find("add_generation_prompt")->as_bool()),
                        str(r, "text"));
    }
  }
  // No template: plain ChatML.
  const auto plain = troupe::gguf_file::open(write_gguf(dir, "", "<s>", "</s>"));
  BOOST_CHECK(chat_template::from_gguf(plain).type() == kind::chatml);
}

BOOST_AUTO_TEST_CASE(an_unknown_template_is_refused_naming_the_file_and_the_known_kinds) {
  troupe::test::scratch dir;
  // DeepSeek-R1's template (fullwidth bars) is not a kind troupe implements.
  const auto path = write_gguf(
      dir, "{% for m in messages %}<｜User｜>{{ m['content'] }}{% endfor %}", "<s>", "</s>");
  const auto file = troupe::gguf_file::open(path);
  try {
    (void)chat_template::from_gguf(file);
    BOOST_FAIL("an unknown template was accepted");
  } catch (const troupe::error& e) {
    BOOST_CHECK(e.code() == troupe::errc::unsupported);
    const std::string what = e.what();
    BOOST_CHECK_MESSAGE(what.find(path.string()) != std::string::npos, what);
    BOOST_CHECK_MESSAGE(what.find("llama3") != std::string::npos, what);
    BOOST_CHECK_MESSAGE(what.find("mistral-v7-tekken") != std::string::npos, what);
  }
  BOOST_CHECK(!chat_template::detect("<|im_start|>{{ m }}<end_of_utterance>").has_value());  // SmolVLM
}

BOOST_AUTO_TEST_CASE(end_of_turn_and_bos_per_kind) {
  struct expect {
    std::string_view name, end_of_turn;
    bool bos;
  };
  const std::map<std::string, expect> want = {
      {"HuggingFaceTB/SmolLM2-135M-Instruct", {"chatml", "<|im_end|>", false}},
      {"meta-llama/Llama-2-13b-chat-hf", {"llama2-sys", "</s>", true}},
      {"mistralai/Mistral-Nemo-Instruct-2407 (v3-tekken)", {"mistral-v3-tekken", "</s>", true}},
      {"meta-llama/Llama-3.2-3B-Instruct", {"llama3", "<|eot_id|>", true}},
      {"TinyLlama/TinyLlama-1.1B-Chat-v1.0 (= HuggingFaceH4/zephyr-7b-beta)",
       {"zephyr", "</s>", false}},
      {"microsoft/Phi-3.5-mini-instruct", {"phi3", "<|end|>", false}},
      {"google/gemma-2-2b-it", {"gemma", "<end_of_turn>", true}},
      {"eachadea/vicuna-13b-1.1", {"vicuna", "</s>", false}},
      {"microsoft/phi-4", {"phi4", "<|im_end|>", false}},
      {"Qwen/Qwen3-0.6B", {"chatml", "<|im_end|>", false}},
      {"ibm-granite/granite-3.3-2b-instruct", {"granite", "<|end_of_text|>", false}},
      {"HuggingFaceTB/SmolLM3-3B", {"smollm3", "<|im_end|>", false}},
  };
  size_t seen = 0;
  for (const auto& t : fixture().find("templates")->as_array()) {
    const auto it = want.find(str(t, "name"));
    if (it == want.end()) continue;
    ++seen;
    const auto tmpl = chat_template::detect(str(t, "template"), context_of(t));
    BOOST_REQUIRE(tmpl.has_value());
    BOOST_CHECK_EQUAL(chat_template::name(tmpl->type()), it->second.name);
    BOOST_CHECK_EQUAL(tmpl->end_of_turn(), it->second.end_of_turn);
    BOOST_CHECK_EQUAL(tmpl->begins_with_bos(), it->second.bos);
  }
  BOOST_CHECK_EQUAL(seen, want.size());
}

// Qwen3 (ChatML with reasoning): an assistant turn before the last user query loses its <think>
// part, the last turn keeps a <think> block; the fixture's conversations hold no <think>, so the
// rule is pinned here against the template's own Jinja logic, rendered by hand.
BOOST_AUTO_TEST_CASE(qwen3_drops_earlier_reasoning_and_phi4_opens_assistant_turns) {
  std::string qwen3;
  for (const auto& t : fixture().find("templates")->as_array())
    if (str(t, "name") == "Qwen/Qwen3-0.6B") qwen3 = str(t, "template");
  const auto q = chat_template::detect(qwen3);
  BOOST_REQUIRE(q.has_value());
  const std::vector<chat_message> conv{{"user", "2+2?"},
                                       {"assistant", "<think>\nadd them\n</think>\n\n4"},
                                       {"user", "and 3+3?"},
                                       {"assistant", "<think>six</think>6"}};
  BOOST_CHECK_EQUAL(q->apply(conv, false),
                    "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n"
                    "<|im_start|>user\nand 3+3?<|im_end|>\n<|im_start|>assistant\n<think>\nsix\n"
                    "</think>\n\n6<|im_end|>\n");
  // Phi-4's later template opens the assistant turn only for the generation prompt.
  const auto p = chat_template::detect(
      "{% for message in messages %}{{'<|im_start|>' + message['role'] + '<|im_sep|>' + "
      "message['content'] + '<|im_end|>'}}{% endfor %}{% if add_generation_prompt %}{{ "
      "'<|im_start|>assistant<|im_sep|>' }}{% endif %}");
  BOOST_REQUIRE(p.has_value());
  BOOST_CHECK(p->type() == kind::phi4);
  const std::vector<chat_message> turns{{"user", "Hi"}, {"assistant", "Hello"}, {"user", "Bye"}};
  BOOST_CHECK_EQUAL(p->apply(turns, true),
                    "<|im_start|>user<|im_sep|>Hi<|im_end|><|im_start|>assistant<|im_sep|>Hello"
                    "<|im_end|><|im_start|>user<|im_sep|>Bye<|im_end|><|im_start|>assistant"
                    "<|im_sep|>");
  BOOST_CHECK_EQUAL(p->apply(turns, false),
                    "<|im_start|>user<|im_sep|>Hi<|im_end|><|im_start|>assistant<|im_sep|>Hello"
                    "<|im_end|><|im_start|>user<|im_sep|>Bye<|im_end|>");
}

BOOST_AUTO_TEST_CASE(rules_for_what_templates_refuse) {
  const chat_context ctx{"<s>", "</s>", {}};
  const std::vector<chat_message> sys_user{{"system", "Be brief."}, {"user", "Hi"}};
  // Mixtral's template refuses a system message: it goes before the first user message.
  const auto mixtral = chat_template::detect(
      "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' "
      "+ "
      "message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ "
      "message['content'] + eos_token}}{% endif %}{% endfor %}",
      ctx);
  BOOST_REQUIRE(mixtral.has_value());
  BOOST_CHECK(mixtral->type() == kind::llama2);
  BOOST_CHECK_EQUAL(mixtral->apply(sys_user), "<s>[INST] Be brief.\n\nHi [/INST]");
  // A tool result is a user turn there; a later system message too.
  const std::vector<chat_message> tool{{"user", "Weather?"},
                                       {"assistant", "<tool_call>{}</tool_call>"},
                                       {"tool", "<tool_response>18C</tool_response>"},
                                       {"system", "Answer now."}};
  BOOST_CHECK_EQUAL(mixtral->apply(tool),
                    "<s>[INST] Weather? [/INST]<tool_call>{}</tool_call></s>[INST] "
                    "<tool_response>18C</tool_response> [/INST][INST] Answer now. [/INST]");
  // Gemma: the system text, stripped, before the first user turn.
  const auto gemma =
      chat_template::detect("{{ bos_token }}<start_of_turn>", {"<bos>", "<eos>", {}});
  BOOST_REQUIRE(gemma.has_value());
  BOOST_CHECK_EQUAL(
      gemma->apply(sys_user),
      "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n");
  // ChatML as before: role "tool" kept, no BOS.
  BOOST_CHECK_EQUAL(chat_template::chatml().apply(tool, false),
                    "<|im_start|>user\nWeather?<|im_end|>\n<|im_start|>assistant\n<tool_call>{}"
                    "</tool_call><|im_end|>\n<|im_start|>tool\n<tool_response>18C</tool_response>"
                    "<|im_end|>\n<|im_start|>system\nAnswer now.<|im_end|>\n");
}

BOOST_AUTO_TEST_CASE(the_date_option_reaches_llama3_and_mistral_default_system_prompts) {
  chat_context ctx{"<|begin_of_text|>", "<|eot_id|>",
                   std::chrono::year_month_day{std::chrono::year{2025}, std::chrono::March,
                                               std::chrono::day{5}}};
  const auto llama = chat_template::detect(
      "<|start_header_id|><|end_header_id|>{{ bos_token }} Cutting Knowledge Date", ctx);
  BOOST_REQUIRE(llama.has_value());
  const std::vector<chat_message> user{{"user", "Hi"}};
  BOOST_CHECK_EQUAL(llama->apply(user, false),
                    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting "
                    "Knowledge Date: December 2023\nToday Date: 05 Mar 2025\n\n<|eot_id|>"
                    "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");
  ctx.bos_token = "<s>";
  ctx.eos_token = "</s>";
  const auto small = chat_template::detect(
      "{%- set today = strftime_now(\"%Y-%m-%d\") %}\n{%- set default_system_message = \"It is \" "
      "+ today + \".\\nBe \\\"nice\\\"\" %}{{ bos_token }}[SYSTEM_PROMPT][INST]",
      ctx);
  BOOST_REQUIRE(small.has_value());
  BOOST_CHECK(small->type() == kind::mistral_v7_tekken);
  BOOST_CHECK_EQUAL(
      small->apply(user),
      "<s>[SYSTEM_PROMPT]It is 2025-03-05.\nBe \"nice\"[/SYSTEM_PROMPT][INST]Hi[/INST]");
}
