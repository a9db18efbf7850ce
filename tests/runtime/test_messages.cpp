// Message vocabulary: chat_message factories, enum names, troupe::error, CAF serialisation of every
// message type (alone and inside a caf::message), and the troupe::error <-> caf::error mapping.
#define BOOST_TEST_MODULE messages
#include <boost/test/unit_test.hpp>

#include <sstream>

#include "caf/all.hpp"
#include "troupe/troupe.hpp"

namespace troupe {
// Lets BOOST_TEST print roles when a check fails.
std::ostream& boost_test_print_type(std::ostream& os, role r) { return os << to_string(r); }
}  // namespace troupe

using namespace troupe;

namespace {

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

struct serialization_fixture {
  troupe::actor_system_config cfg;
  caf::actor_system sys{cfg};

  /// `x` written with caf::binary_serializer and read back with caf::binary_deserializer.
  template <class T>
  T round_trip(const T& x) {
    std::vector<char> buf;
    caf::binary_serializer sink{sys, buf};
    auto copy = x;
    if (auto err = sink(copy)) BOOST_FAIL("cannot serialise: " << sys.render(err));
    BOOST_TEST(!buf.empty());
    T out;
    caf::binary_deserializer source{sys, buf};
    if (auto err = source(out)) BOOST_FAIL("cannot deserialise: " << sys.render(err));
    BOOST_TEST(source.remaining() == 0u);
    return out;
  }
};

tool_call sample_call() { return {"call_1", "read_file", R"({"path": "a/b.txt", "n": [1, 2]})"}; }

chat_message sample_message_with_images() {
  chat_message m;
  m.role = role::user;
  m.content = {content_part::text("look at "), content_part::image_url("https://x.test/cat.png"),
               content_part::image_base64("image/png", "iVBORw0KGgo="),
               content_part::text("these \xe2\x9c\x93")};
  m.name = "alice";
  return m;
}

chat_message sample_assistant() {
  return chat_message::assistant("calling", {sample_call(), {"call_2", "noop", "{}"}},
                                 "I should read it");
}

}  // namespace

BOOST_AUTO_TEST_SUITE(vocabulary)

BOOST_AUTO_TEST_CASE(chat_message_factories) {
  auto s = chat_message::system("be brief");
  BOOST_TEST(s.role == role::system);
  BOOST_REQUIRE(s.content.size() == 1u);
  BOOST_TEST((s.content[0] == content_part{part_kind::text, "be brief", ""}));
  BOOST_TEST(s.text() == "be brief");

  auto u = chat_message::user("hi");
  BOOST_TEST(u.role == role::user);
  BOOST_TEST(u.text() == "hi");
  BOOST_TEST(u.tool_calls.empty());

  auto a = sample_assistant();
  BOOST_TEST(a.role == role::assistant);
  BOOST_TEST(a.text() == "calling");
  BOOST_TEST(a.reasoning == "I should read it");
  BOOST_REQUIRE(a.tool_calls.size() == 2u);
  BOOST_TEST((a.tool_calls[0] == sample_call()));

  // An assistant turn with only tool calls has no content part at all.
  auto calls_only = chat_message::assistant("", {sample_call()});
  BOOST_TEST(calls_only.content.empty());
  BOOST_TEST(calls_only.text().empty());
  BOOST_TEST(calls_only.reasoning.empty());

  auto t = chat_message::tool(sample_call(), tool_result::failure("ignored", "no such file"));
  BOOST_TEST(t.role == role::tool);
  BOOST_TEST(t.tool_call_id == "call_1");
  BOOST_TEST(t.name == "read_file");
  BOOST_TEST(t.is_error);
  BOOST_TEST(t.text() == "no such file");
  auto ok = chat_message::tool(sample_call(), tool_result::ok("call_1", "contents"));
  BOOST_TEST(!ok.is_error);
  BOOST_TEST(ok.text() == "contents");
}

BOOST_AUTO_TEST_CASE(text_joins_only_the_text_parts) {
  BOOST_TEST(sample_message_with_images().text() == "look at these \xe2\x9c\x93");
  chat_message images_only;
  images_only.content = {content_part::image_url("https://x.test/a.png")};
  BOOST_TEST(images_only.text().empty());
  BOOST_TEST(chat_message{}.text().empty());
  auto img = content_part::image_base64("image/jpeg", "AAAA");
  BOOST_TEST((img == content_part{part_kind::image_data, "AAAA", "image/jpeg"}));
}

BOOST_AUTO_TEST_CASE(enum_names) {
  BOOST_TEST(std::string{to_string(role::system)} == "system");
  BOOST_TEST(std::string{to_string(role::user)} == "user");
  BOOST_TEST(std::string{to_string(role::assistant)} == "assistant");
  BOOST_TEST(std::string{to_string(role::tool)} == "tool");
  BOOST_TEST(std::string{to_string(static_cast<role>(9))} == "unknown");
  BOOST_TEST(std::string{to_string(part_kind::text)} == "text");
  BOOST_TEST(std::string{to_string(part_kind::image_url)} == "image_url");
  BOOST_TEST(std::string{to_string(part_kind::image_data)} == "image_data");
  BOOST_TEST(std::string{to_string(finish_reason::stop)} == "stop");
  BOOST_TEST(std::string{to_string(finish_reason::length)} == "length");
  BOOST_TEST(std::string{to_string(finish_reason::tool_calls)} == "tool_calls");
  BOOST_TEST(std::string{to_string(finish_reason::cancelled)} == "cancelled");
  BOOST_TEST(std::string{to_string(finish_reason::error)} == "error");
  const std::vector<std::string> errc_names = {
    "none",         "invalid_argument", "parse_error",      "not_found",
    "unknown_tool", "malformed_arguments", "invalid_tool_call", "budget_exceeded",
    "timeout",      "cancelled",        "tool_failed",      "model_failed",
    "io_error",     "unsupported",      "internal"};
  for (size_t i = 0; i < errc_names.size(); ++i)
    BOOST_TEST(std::string{to_string(static_cast<errc>(i))} == errc_names[i]);
  BOOST_TEST(std::string{to_string(static_cast<errc>(200))} == "unknown");
  std::ostringstream os;
  os << errc::budget_exceeded;
  BOOST_TEST(os.str() == "budget_exceeded");
}

BOOST_AUTO_TEST_CASE(troupe_error) {
  error none;
  BOOST_TEST(!none);
  BOOST_TEST(none.code() == errc::none);
  BOOST_TEST(none.render() == "none");
  error e{errc::budget_exceeded, "tool-call budget of 3 calls is spent"};
  BOOST_TEST(static_cast<bool>(e));
  BOOST_TEST(e.code() == errc::budget_exceeded);
  BOOST_TEST(e.message() == "tool-call budget of 3 calls is spent");
  BOOST_TEST(std::string{e.what()} == "tool-call budget of 3 calls is spent");
  BOOST_TEST(e.render() == "budget_exceeded: tool-call budget of 3 calls is spent");
  BOOST_TEST((error{errc::timeout, ""}.render() == "timeout"));
  BOOST_TEST((e == error{errc::budget_exceeded, "tool-call budget of 3 calls is spent"}));
  BOOST_TEST(!(e == error{errc::timeout, "tool-call budget of 3 calls is spent"}));
  BOOST_TEST(!(e == error{errc::budget_exceeded, "other"}));
  try {
    throw e;
  } catch (const std::exception& ex) {
    BOOST_TEST(std::string{ex.what()} == e.message());
  }
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_FIXTURE_TEST_SUITE(serialization, serialization_fixture)

BOOST_AUTO_TEST_CASE(tool_types_round_trip) {
  tool_spec spec{"read_file", "Reads a file.",
                 R"({"type":"object","properties":{"path":{"type":"string"}}})"};
  BOOST_TEST((round_trip(spec) == spec));
  BOOST_TEST((round_trip(sample_call()) == sample_call()));
  auto failure = tool_result::failure("call_9", "it broke: \"quoted\"\nnext line");
  BOOST_TEST((round_trip(failure) == failure));
  auto ok = tool_result::ok("call_8", std::string(100'000, 'x'));
  BOOST_TEST((round_trip(ok) == ok));
  tool_options opts{7, 1234};
  BOOST_TEST((round_trip(opts) == opts));
}

BOOST_AUTO_TEST_CASE(chat_types_round_trip) {
  for (const auto& part : sample_message_with_images().content)
    BOOST_TEST((round_trip(part) == part));
  auto images = sample_message_with_images();
  BOOST_TEST((round_trip(images) == images));
  auto assistant = sample_assistant();
  BOOST_TEST((round_trip(assistant) == assistant));
  auto tool = chat_message::tool(sample_call(), tool_result::failure("x", "nope"));
  BOOST_TEST((round_trip(tool) == tool));
  std::vector<chat_message> conversation{chat_message::system("s"), images, assistant, tool};
  BOOST_TEST((round_trip(conversation) == conversation));
  usage u{1'000'000'000'000ull, 42};
  BOOST_TEST((round_trip(u) == u));
  BOOST_TEST(u.total() == 1'000'000'000'042ull);
}

BOOST_AUTO_TEST_CASE(model_types_round_trip) {
  sampling_params sp{0.7f,      0.95f, 40,    0.05f, 1.1f,
                     123456789, 0.25f, -1.5f, {{17, -100.0f}, {3, 2.5f}}};
  BOOST_TEST((round_trip(sp) == sp));
  BOOST_TEST((round_trip(sampling_params{}) == sampling_params{}));
  tool_choice named{tool_choice_mode::named, "read_file"};
  BOOST_TEST((round_trip(named) == named));
  const std::vector<token_logprob> lps{{"te", -0.5f, {{"te", -0.5f}, {"\xe2\x82", -2.25f}}},
                                       {"st", -0.125f, {}}};
  turn_delta d{17, "te", "re", 2, "call_3", "echo", R"({"te)", lps};
  BOOST_TEST((round_trip(d) == d));

  chat_request req;
  req.id = 99;
  req.messages = {chat_message::system("sys"), sample_message_with_images(), sample_assistant()};
  req.tools = {{"echo", "Echoes.", R"({"type":"object"})"}, {"noop", "", "{}"}};
  req.choice = {tool_choice_mode::required, ""};
  req.sampling = sp;
  req.max_tokens = 512;
  req.response_schema = R"({"type":"object"})";
  req.stop = {"\n\n", "END"};
  req.top_logprobs = 5;
  auto back = round_trip(req);
  BOOST_TEST((back == req));
  BOOST_TEST(!back.stream_to);

  assistant_turn turn{"answer", "because", {sample_call()}, {10, 20}, finish_reason::tool_calls,
                      lps};
  BOOST_TEST((round_trip(turn) == turn));
}

BOOST_AUTO_TEST_CASE(a_chat_request_keeps_its_delta_sink) {
  auto sink = sys.spawn([]() -> delta_sink_actor::behavior_type {
    return {[](delta_atom, const turn_delta&) {}};
  });
  chat_request req;
  req.id = 5;
  req.stream_to = sink;
  auto back = round_trip(req);
  BOOST_TEST((back == req));
  BOOST_TEST((back.stream_to == sink));
  caf::anon_send_exit(sink, caf::exit_reason::user_shutdown);
}

BOOST_AUTO_TEST_CASE(agent_result_and_error_round_trip) {
  error e{errc::tool_failed, "tool 'x' failed: boom"};
  BOOST_TEST((round_trip(e) == e));
  BOOST_TEST((round_trip(error{}) == error{}));

  agent_result r;
  r.agent = "worker-3";
  r.text = "";
  r.failure = error{errc::budget_exceeded, "max_steps_per_agent = 4 reached"};
  r.steps = 4;
  r.tool_calls = 9;
  r.critical_steps = 11;
  r.tokens = {300, 70};
  auto back = round_trip(r);
  BOOST_TEST(back.agent == r.agent);
  BOOST_TEST(back.text == r.text);
  BOOST_TEST((back.failure == r.failure));
  BOOST_TEST(!back.ok());
  BOOST_TEST(back.steps == 4u);
  BOOST_TEST(back.tool_calls == 9u);
  BOOST_TEST(back.critical_steps == 11u);
  BOOST_TEST((back.tokens == r.tokens));
}

BOOST_AUTO_TEST_CASE(a_caf_message_of_troupe_types_serialises) {
  auto turn = assistant_turn{"t", "", {sample_call()}, {1, 2}, finish_reason::stop, {}};
  error e{errc::timeout, "late"};
  auto msg = caf::make_message(invoke_atom::value, sample_call(), sample_assistant(), turn, e,
                               std::vector<tool_spec>{{"a", "b", "{}"}});
  std::vector<char> buf;
  caf::binary_serializer sink{sys, buf};
  if (auto err = sink(msg)) BOOST_FAIL("cannot serialise the message: " << sys.render(err));
  caf::message back;
  caf::binary_deserializer source{sys, buf};
  if (auto err = source(back)) BOOST_FAIL("cannot deserialise the message: " << sys.render(err));
  BOOST_TEST(source.remaining() == 0u);
  BOOST_REQUIRE((back.match_elements<invoke_atom, tool_call, chat_message, assistant_turn, error,
                                     std::vector<tool_spec>>()));
  BOOST_TEST((back.get_as<tool_call>(1) == sample_call()));
  BOOST_TEST((back.get_as<chat_message>(2) == sample_assistant()));
  BOOST_TEST((back.get_as<assistant_turn>(3) == turn));
  BOOST_TEST((back.get_as<error>(4) == e));
  BOOST_TEST((back.get_as<std::vector<tool_spec>>(5) == std::vector<tool_spec>{{"a", "b", "{}"}}));
}

BOOST_AUTO_TEST_CASE(without_registration_a_caf_message_cannot_serialise) {
  // The counter-check for the test above: a plain CAF configuration knows none of troupe's types,
  // and CAF 0.17 then silently writes an empty message instead (it only logs "[ERROR]: cannot
  // serialize message ..."), which is what troupe::actor_system_config prevents.
  caf::actor_system_config plain_cfg;
  caf::actor_system plain{plain_cfg};
  auto msg = caf::make_message(sample_call());
  std::vector<char> buf;
  caf::binary_serializer sink{plain, buf};
  if (auto err = sink(msg)) return;  // Refusing outright would be fine too.
  caf::message back;
  caf::binary_deserializer source{plain, buf};
  if (auto err = source(back)) return;
  BOOST_TEST(back.empty());
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_FIXTURE_TEST_SUITE(caf_errors, serialization_fixture)

BOOST_AUTO_TEST_CASE(troupe_errors_survive_caf_error) {
  for (auto code : {errc::invalid_argument, errc::budget_exceeded, errc::internal}) {
    error e{code, "what went wrong, where, and what to do"};
    auto ce = to_caf_error(e);
    BOOST_TEST(ce.category() == error_category);
    BOOST_TEST(ce.code() == static_cast<uint8_t>(code));
    BOOST_TEST((from_caf_error(ce, "ignored") == e));
    // The registered renderer shows the code's name and the message.
    auto rendered = sys.render(ce);
    BOOST_TEST(contains(rendered, std::string{to_string(code)} + ": what went wrong"), rendered);
  }
  // An error with an empty message survives too.
  BOOST_TEST((from_caf_error(to_caf_error(error{errc::cancelled, ""}), "x") ==
              error{errc::cancelled, ""}));
}

BOOST_AUTO_TEST_CASE(caf_system_errors_are_translated) {
  auto timeout = from_caf_error(caf::make_error(caf::sec::request_timeout), "model 'm1'");
  BOOST_TEST(timeout.code() == errc::timeout);
  BOOST_TEST(contains(timeout.message(), "model 'm1'"), timeout.message());
  BOOST_TEST(contains(timeout.message(), "did not answer in time"), timeout.message());

  auto down = from_caf_error(caf::make_error(caf::sec::request_receiver_down), "tool 'x'");
  BOOST_TEST(down.code() == errc::tool_failed);
  BOOST_TEST(contains(down.message(), "tool 'x'"), down.message());

  auto thrown = from_caf_error(caf::make_error(caf::sec::runtime_error), "agent 'a'");
  BOOST_TEST(thrown.code() == errc::internal);
  BOOST_TEST(contains(thrown.message(), "agent 'a' threw"), thrown.message());

  auto other = from_caf_error(caf::make_error(caf::sec::invalid_argument), "the run");
  BOOST_TEST(other.code() == errc::internal);
  BOOST_TEST(contains(other.message(), "the run failed:"), other.message());
}

BOOST_AUTO_TEST_CASE(a_timed_out_request_maps_to_errc_timeout) {
  // A real request that times out, not a hand-made caf::error.
  auto silent = sys.spawn([]() -> tool_actor::behavior_type {
    return {[](invoke_atom, const tool_call&) -> caf::result<tool_result> {
      return caf::delegated<tool_result>{};  // Never answers.
    }};
  });
  caf::scoped_actor self{sys};
  error got;
  self->request(silent, std::chrono::milliseconds(20), invoke_atom::value, sample_call())
    .receive([](tool_result&) { BOOST_FAIL("the silent tool answered"); },
             [&](caf::error& e) { got = from_caf_error(e, "tool 'silent'"); });
  BOOST_TEST(got.code() == errc::timeout, got.render());
  BOOST_TEST(contains(got.message(), "tool 'silent' did not answer in time"), got.message());
  caf::anon_send_exit(silent, caf::exit_reason::user_shutdown);
}

BOOST_AUTO_TEST_SUITE_END()
