// The scripted model: turn selection, placeholders, streaming deltas, latency without blocking,
// and cancellation, through the model protocol.
#define BOOST_TEST_MODULE scripted_model
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "troupe_fixture.hpp"

using namespace troupe;
using troupe::testing::swarm_fixture;

namespace {

chat_request conversation(std::vector<chat_message> msgs, uint64_t id = 1) {
  chat_request req;
  req.id = id;
  req.messages = std::move(msgs);
  return req;
}

const char* script = R"(
[model]
[[model.rules]]
match = "SPECIAL"
[[model.rules.turns]]
text = "special answer"
[[model.rules]]
[[model.rules.turns]]
reasoning = "thinking about {{prompt}}"
tool_calls = [{ name = "echo", arguments = '{"text": "{{prompt}}"}' }, { id = "mine", name = "noop" }]
[[model.rules.turns]]
tool_calls = [{ name = "noop" }]
repeat = 2
[[model.rules.turns]]
text = "step {{step}}: {{tool_results}}"
)";

}  // namespace

BOOST_FIXTURE_TEST_SUITE(scripted, swarm_fixture)

BOOST_AUTO_TEST_CASE(turns_follow_the_conversation) {
  auto m = model(script);
  caf::scoped_actor self{sys};
  auto ask = [&](const chat_request& req) {
    assistant_turn out;
    self->request(m, std::chrono::seconds(5), chat_atom::value, req)
      .receive([&](assistant_turn& t) { out = std::move(t); },
               [&](caf::error& e) { BOOST_FAIL(caf::to_string(e)); });
    return out;
  };
  std::vector<chat_message> msgs{chat_message::user("say \"hi\"")};
  auto t0 = ask(conversation(msgs));
  BOOST_TEST(t0.reasoning == "thinking about say \"hi\"");
  BOOST_REQUIRE(t0.tool_calls.size() == 2u);
  BOOST_TEST(t0.tool_calls[0].id == "call_0_0");
  BOOST_TEST(t0.tool_calls[0].arguments == R"({"text": "say \"hi\""})");  // JSON-escaped.
  BOOST_TEST(t0.tool_calls[1].id == "mine");
  BOOST_TEST(t0.finish == finish_reason::tool_calls);
  BOOST_TEST(t0.usage.prompt_tokens > 0u);
  // Steps 1 and 2 are the repeated turn; step 3 the final answer with the last results.
  msgs.push_back(chat_message::assistant("", t0.tool_calls));
  msgs.push_back(chat_message::tool(t0.tool_calls[0], tool_result::ok("call_0_0", "r0")));
  msgs.push_back(chat_message::tool(t0.tool_calls[1], tool_result::ok("mine", "r1")));
  auto t1 = ask(conversation(msgs));
  BOOST_TEST(t1.tool_calls.size() == 1u);
  msgs.push_back(chat_message::assistant("", t1.tool_calls));
  msgs.push_back(chat_message::tool(t1.tool_calls[0], tool_result::ok("x", "r2")));
  auto t2 = ask(conversation(msgs));
  BOOST_TEST(t2.tool_calls.size() == 1u);
  msgs.push_back(chat_message::assistant("", t2.tool_calls));
  msgs.push_back(chat_message::tool(t2.tool_calls[0], tool_result::ok("y", "r3")));
  auto t3 = ask(conversation(msgs));
  BOOST_TEST(t3.tool_calls.empty());
  BOOST_TEST(t3.text == "step 3: r3");
  BOOST_TEST(t3.finish == finish_reason::stop);
  // A final answer repeats past the end of the script.
  msgs.push_back(chat_message::assistant(t3.text));
  BOOST_TEST(ask(conversation(msgs)).text == "step 4: ");
  // Rules are matched against the system prompt and first user message, in order.
  auto special = ask(conversation({chat_message::system("a SPECIAL agent"), chat_message::user("x")}));
  BOOST_TEST(special.text == "special answer");
}

BOOST_AUTO_TEST_CASE(deltas_stream_before_the_reply) {
  auto m = model(script);
  struct shared {
    std::mutex mtx;
    std::condition_variable cv;
    std::vector<turn_delta> deltas;
  };
  auto sh = std::make_shared<shared>();
  delta_sink_actor sink = sys.spawn([sh]() -> delta_sink_actor::behavior_type {
    return {[sh](delta_atom, const turn_delta& d) {
      std::lock_guard<std::mutex> g{sh->mtx};
      sh->deltas.push_back(d);
      sh->cv.notify_all();
    }};
  });
  caf::scoped_actor self{sys};
  auto req = conversation({chat_message::user("p")}, 42);
  req.stream_to = sink;
  assistant_turn turn;
  self->request(m, std::chrono::seconds(5), chat_atom::value, req)
    .receive([&](assistant_turn& t) { turn = std::move(t); },
             [&](caf::error& e) { BOOST_FAIL(caf::to_string(e)); });
  // The deltas were sent before the reply (reasoning, then one per tool call).
  std::unique_lock<std::mutex> g{sh->mtx};
  BOOST_REQUIRE(sh->cv.wait_for(g, std::chrono::seconds(10), [&] { return sh->deltas.size() >= 3; }));
  const auto& deltas = sh->deltas;
  BOOST_REQUIRE(deltas.size() == 3u);
  BOOST_TEST(deltas[0].reasoning == "thinking about p");
  BOOST_TEST(deltas[1].tool_index == 0);
  BOOST_TEST(deltas[1].tool_name == "echo");
  BOOST_TEST(deltas[2].tool_id == "mine");
  for (const auto& d : deltas) BOOST_TEST(d.request_id == 42u);
  g.unlock();
  self->send_exit(sink, caf::exit_reason::user_shutdown);
  BOOST_TEST(turn.tool_calls.size() == 2u);
}

BOOST_AUTO_TEST_CASE(latency_does_not_block_and_cancel_answers_at_once) {
  std::string slow = script;
  slow.replace(slow.find("[model]\n"), 8, "[model]\nlatency_ms = 300\n");
  auto m = model(slow);
  caf::scoped_actor self{sys};
  auto start = std::chrono::steady_clock::now();
  // Ten requests in flight at once finish in about one latency, not ten.
  std::vector<decltype(self->request(m, std::chrono::seconds(5), chat_atom::value,
                                     chat_request{}))>
    handles;
  for (uint64_t i = 1; i <= 10; ++i)
    handles.push_back(self->request(m, std::chrono::seconds(5), chat_atom::value,
                                    conversation({chat_message::user("q")}, i)));
  for (auto& h : handles)
    h.receive([](assistant_turn& t) { BOOST_TEST(t.finish == finish_reason::tool_calls); },
              [](caf::error& e) { BOOST_FAIL(caf::to_string(e)); });
  auto elapsed = std::chrono::steady_clock::now() - start;
  BOOST_TEST(elapsed < std::chrono::milliseconds(1500));
  BOOST_TEST(elapsed >= std::chrono::milliseconds(300));
  // A cancelled request replies with finish == cancelled without waiting for its latency.
  auto h = self->request(m, std::chrono::seconds(5), chat_atom::value,
                         conversation({chat_message::user("q")}, 77));
  self->send(m, cancel_atom::value, uint64_t{77});
  h.receive([](assistant_turn& t) { BOOST_TEST(t.finish == finish_reason::cancelled); },
            [](caf::error& e) { BOOST_FAIL(caf::to_string(e)); });
}

BOOST_AUTO_TEST_CASE(the_token_budget_stops_a_run) {
  auto m = model(R"(
[model]
[[model.rules]]
[[model.rules.turns]]
tool_calls = [{ name = "noop" }]
repeat = 100
)");
  budgets b;
  b.max_tokens = 200;
  swarm sw{sys, m, registry, b};
  agent_config a;
  a.tools = {"noop"};
  auto rep = sw.run(a, "spend tokens");
  BOOST_TEST(!rep.ok());
  BOOST_TEST(rep.failure.code() == errc::budget_exceeded);
  BOOST_TEST(rep.failure.message().find("max_tokens = 200") != std::string::npos,
             rep.failure.message());
  BOOST_TEST(rep.total_steps < 100u);
}

BOOST_AUTO_TEST_SUITE_END()
