// The local engine actor serving a Kimi-format checkpoint (tests/fixtures/deepseek/kimi_chat):
// the reply to a chat request equals the bytes HF transformers + tiktoken + Kimi's real chat
// template produced, alone and with concurrent requests batched together, with the routed experts
// on expert-shard actors or on the kernel threads; a response schema or the tools constrain the
// answer over tiktoken's vocabulary (Kimi's tool-call tokens included); requests it cannot serve
// are refused clearly.

#define BOOST_TEST_MODULE deepseek_engine
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <variant>
#include <vector>

#include "caf/all.hpp"
#include "troupe/caf_types.hpp"
#include "troupe/deepseek/batch_decoder.hpp"
#include "troupe/deepseek/model.hpp"
#include "troupe/error.hpp"
#include "troupe/formats/gguf.hpp"
#include "troupe/json.hpp"
#include "troupe/llama/chat_template.hpp"
#include "troupe/llama/tokenizer.hpp"
#include "troupe/local_model.hpp"

using namespace troupe;
namespace fs = std::filesystem;

namespace {

const fs::path fixture = fs::path(TROUPE_SOURCE_DIR) / "tests/fixtures/deepseek/kimi_chat";
constexpr auto reply_timeout = std::chrono::seconds(240);

std::string read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string chomp(std::string s) {
  if (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
}

struct engine_fixture {
  engine_fixture() : sys(cfg), self(sys) {}
  ~engine_fixture() {
    if (model) caf::anon_send_exit(model, caf::exit_reason::user_shutdown);
  }
  void start(int shards, int64_t context = 256, const fs::path& path = fixture) {
    local_model_config c;
    c.model = path.string();
    c.expert_shards = shards;
    c.context = context;
    model = spawn_local_model(sys, c);
  }
  chat_request request(uint64_t id) const {
    chat_request r;
    r.id = id;
    r.messages.push_back(chat_message::user(chomp(read(fixture / "generate_prompt.txt"))));
    r.max_tokens = 16;
    return r;
  }
  troupe::actor_system_config cfg;
  caf::actor_system sys;
  caf::scoped_actor self;
  model_actor model;
};

}  // namespace

BOOST_FIXTURE_TEST_CASE(replies_match_hf_alone_and_batched, engine_fixture) {
  const std::string expected = chomp(read(fixture / "generate_expected.bin"));
  for (int shards : {2, 0}) {
    BOOST_TEST_CONTEXT("expert shards " << shards) {
      start(shards);
      // Three at once: they share the steps (continuous batching) and each gets the same text.
      std::vector<decltype(self->request(model, reply_timeout, chat_atom::value, chat_request{}))> handles;
      for (uint64_t id = 1; id <= 3; ++id)
        handles.push_back(self->request(model, reply_timeout, chat_atom::value, request(id)));
      for (auto& h : handles) {
        h.receive(
            [&](assistant_turn& t) {
              BOOST_CHECK_EQUAL(t.text, expected);
              BOOST_CHECK_EQUAL(t.usage.completion_tokens, 16u);
              BOOST_CHECK(t.finish == finish_reason::length);
            },
            [&](caf::error& e) { BOOST_FAIL("request failed: " << sys.render(e)); });
      }
      // Once more: the prompt comes from the prefix cache (all but its last two tokens) and
      // the answer is the same.
      self->request(model, reply_timeout, chat_atom::value, request(4))
        .receive(
          [&](assistant_turn& t) {
            BOOST_CHECK_EQUAL(t.usage.cached_prompt_tokens, t.usage.prompt_tokens - 2);
            BOOST_CHECK_EQUAL(t.text, expected);
          },
          [&](caf::error& e) { BOOST_FAIL("request failed: " << sys.render(e)); });
      caf::anon_send_exit(model, caf::exit_reason::user_shutdown);
      model = nullptr;
    }
  }
}

BOOST_FIXTURE_TEST_CASE(a_response_schema_shapes_the_answer, engine_fixture) {
  // The fixture's weights are random: unconstrained, it writes no JSON at all (the HF text
  // above). Constrained by the schema over tiktoken's vocabulary, every answer is a valid
  // instance that ends before max_tokens, greedy or sampled, alone or beside other requests.
  start(2);
  const std::string schema =
      R"({"type":"object","properties":{"name":{"type":"string","maxLength":12},)"
      R"("age":{"type":"integer"},"tags":{"type":"array","items":{"enum":["a","b"]},"maxItems":3}},)"
      R"("required":["name","age","tags"]})";
  std::vector<decltype(self->request(model, reply_timeout, chat_atom::value, chat_request{}))> handles;
  for (uint64_t i = 0; i < 4; ++i) {
    auto req = request(20 + i);
    req.max_tokens = 96;
    req.response_schema = schema;
    if (i > 0) {
      req.sampling.temperature = 1.0f;
      req.sampling.seed = i;
    }
    handles.push_back(self->request(model, reply_timeout, chat_atom::value, req));
  }
  for (auto& h : handles) {
    h.receive(
        [&](assistant_turn& t) {
          BOOST_TEST_MESSAGE("answer (" << t.usage.completion_tokens << " tokens): " << t.text);
          BOOST_TEST_CONTEXT(t.text) {
            BOOST_CHECK(t.finish == finish_reason::stop);
            BOOST_CHECK(json::validate(json::parse(t.text), json::parse(schema)).empty());
            BOOST_CHECK_LE(t.usage.completion_tokens, 96u);
          }
        },
        [&](caf::error& e) { BOOST_FAIL("request failed: " << sys.render(e)); });
  }
}

BOOST_FIXTURE_TEST_CASE(tool_calls_follow_kimi_syntax_and_the_schemas, engine_fixture) {
  // The random model, constrained to Kimi K2's tool-call sections (special tokens included):
  // every turn parses into calls of declared tools whose arguments validate, under required,
  // named and automatic tool choice, greedy and sampled.
  start(0, 1024);  // the tool declarations make a prompt of ~400 tokens
  const std::vector<tool_spec> tools = {
      {"get_weather", "Weather for a city",
       R"({"type":"object","properties":{"city":{"type":"string","maxLength":16},)"
       R"("days":{"type":"integer","minimum":1,"maximum":7}},"required":["city","days"]})"},
      {"get_time", "The time in a zone",
       R"({"type":"object","properties":{"zone":{"enum":["UTC","CET"]}},"required":["zone"]})"}};
  const tool_choice choices[] = {{tool_choice_mode::required, ""},
                                 {tool_choice_mode::required, ""},
                                 {tool_choice_mode::named, "get_time"},
                                 {tool_choice_mode::automatic, ""}};
  int calls_seen = 0;
  for (int i = 0; i < 4; ++i) {
    auto req = request(40 + static_cast<uint64_t>(i));
    req.max_tokens = 128;
    req.tools = tools;
    req.choice = choices[i];
    if (i % 2 == 1) {
      req.sampling.temperature = 1.0f;
      req.sampling.seed = static_cast<uint64_t>(i);
    }
    self->request(model, reply_timeout, chat_atom::value, req)
        .receive(
            [&](assistant_turn& t) {
              BOOST_TEST_MESSAGE("turn " << i << ": " << t.tool_calls.size() << " calls, text '"
                                         << t.text << "', " << t.usage.completion_tokens
                                         << " tokens");
              BOOST_TEST_CONTEXT("turn " << i) {
                if (req.choice.mode != tool_choice_mode::automatic) {
                  BOOST_CHECK(!t.tool_calls.empty());
                  BOOST_CHECK(t.finish == finish_reason::tool_calls);
                }
                if (req.choice.mode == tool_choice_mode::named) BOOST_CHECK_EQUAL(t.tool_calls.size(), 1u);
                for (const auto& c : t.tool_calls) {
                  BOOST_TEST_MESSAGE("  " << c.id << " " << c.name << " " << c.arguments);
                  const auto spec = std::find_if(tools.begin(), tools.end(),
                                                 [&](const tool_spec& s) { return s.name == c.name; });
                  BOOST_REQUIRE(spec != tools.end());
                  if (req.choice.mode == tool_choice_mode::named) BOOST_CHECK_EQUAL(c.name, "get_time");
                  BOOST_CHECK(json::validate(json::parse(c.arguments), json::parse(spec->parameters)).empty());
                  ++calls_seen;
                }
              }
            },
            [&](caf::error& e) { BOOST_FAIL("turn " << i << " failed: " << sys.render(e)); });
  }
  BOOST_CHECK_GE(calls_seen, 3);
}

BOOST_AUTO_TEST_CASE(a_directory_without_config_is_a_clear_error) {
  troupe::actor_system_config cfg;
  caf::actor_system sys{cfg};
  local_model_config c;
  c.model = fs::temp_directory_path().string();
  try {
    spawn_local_model(sys, c);
    BOOST_FAIL("no error");
  } catch (const error& e) {
    BOOST_CHECK(e.code() == errc::not_found);
    BOOST_CHECK_NE(e.message().find("config.json"), std::string::npos);
  }
}

// A deepseek2 GGUF file (llama.cpp's own conversion of the Moonlight-like fixture) through the
// engine: the file's tokenizer and chat template, the DeepSeek forward pass, routed experts on
// expert-shard actors or on the kernel threads. The reply is what greedy decoding by the
// library's decoder gives for the same prompt ids (that decoder is held to HF transformers by
// test_deepseek_gguf).
BOOST_FIXTURE_TEST_CASE(a_deepseek2_gguf_file_is_served_like_its_checkpoint, engine_fixture) {
  const fs::path file =
      fs::path(TROUPE_SOURCE_DIR) / "tests/fixtures/deepseek/moonlight_gguf/moonlight-q8_0.gguf";
  const gguf_file gguf = gguf_file::open(file);
  const auto tok = llama::tokenizer::from_gguf(gguf);
  const auto tmpl = llama::chat_template::from_gguf(gguf);
  const std::vector<llama::chat_message> conversation{{"user", "Hello there"}};
  const std::vector<int32_t> ids =
      tok.encode(tmpl.apply(conversation, true), !tmpl.begins_with_bos(), true);
  deepseek::batch_decoder decoder(deepseek::model::load_gguf(file));
  const uint32_t seq = decoder.open(256);
  std::string expected;
  size_t generated = 0;
  const deepseek::batch_decoder::chunk prompt{seq, ids};
  std::span<const float> logits = decoder.decode({&prompt, 1});
  for (; generated < 12; ++generated) {
    const auto next =
        static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    if (tok.is_end_of_generation(next) || next >= tok.vocab_size()) break;
    expected += tok.token_to_piece(next);
    const deepseek::batch_decoder::chunk step{seq, std::span<const int32_t>(&next, 1)};
    logits = decoder.decode({&step, 1});
  }
  BOOST_TEST_MESSAGE(ids.size() << " prompt ids, " << generated << " tokens expected");
  BOOST_REQUIRE_GT(generated, 0u);
  for (int shards : {2, 0}) {
    BOOST_TEST_CONTEXT("expert shards " << shards) {
      start(shards, 256, file);
      chat_request r;
      r.id = 7;
      r.messages.push_back(chat_message::user("Hello there"));
      r.max_tokens = 12;
      self->request(model, reply_timeout, chat_atom::value, r)
          .receive(
              [&](assistant_turn& t) {
                BOOST_CHECK_EQUAL(t.text, expected);
                BOOST_CHECK_EQUAL(t.usage.completion_tokens, generated);
              },
              [&](caf::error& e) { BOOST_FAIL("request failed: " << sys.render(e)); });
      caf::anon_send_exit(model, caf::exit_reason::user_shutdown);
      model = nullptr;
    }
  }
}
