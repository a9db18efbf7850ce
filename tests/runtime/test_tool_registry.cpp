// The tool registry at the message level: routing by name, argument validation, per-tool
// concurrency limits and timeouts, failing tools, replacement, function tools and built-in tools.
#define BOOST_TEST_MODULE tool_registry
#include <boost/test/unit_test.hpp>

#include <deque>
#include <stdexcept>

#include "troupe_fixture.hpp"

using namespace troupe;

namespace {

constexpr auto request_timeout = std::chrono::seconds(10);

/// A tool that holds every call until the test releases it, recording arrivals.
/// - (invoke, call): keeps the promise; answers "answer <id>" when released.
/// - (resume) -> id of the oldest held call, which is now answered ("" if none is held).
/// - (list) -> (in flight now, most in flight at once, ids in arrival order joined by ",").
using gated_tool_actor =
  tool_actor::extend<caf::replies_to<resume_atom>::with<std::string>,
                     caf::replies_to<list_atom>::with<uint32_t, uint32_t, std::string>>;

struct gated_state {
  static inline const char* name = "test.gated_tool";
  std::deque<std::pair<std::string, caf::typed_response_promise<tool_result>>> held;
  uint32_t max_in_flight = 0;
  std::string arrivals;
};

gated_tool_actor::behavior_type gated_tool(gated_tool_actor::stateful_pointer<gated_state> self) {
  return {
    [self](invoke_atom, const tool_call& call) -> caf::result<tool_result> {
      auto& st = self->state;
      auto rp = self->make_response_promise<tool_result>();
      st.held.emplace_back(call.id, rp);
      st.max_in_flight = std::max(st.max_in_flight, static_cast<uint32_t>(st.held.size()));
      st.arrivals += (st.arrivals.empty() ? "" : ",") + call.id;
      return rp;
    },
    [self](resume_atom) -> std::string {
      auto& held = self->state.held;
      if (held.empty()) return {};
      auto [id, rp] = std::move(held.front());
      held.pop_front();
      rp.deliver(tool_result::ok(id, "answer " + id));
      return id;
    },
    [self](list_atom) -> caf::result<uint32_t, uint32_t, std::string> {
      const auto& st = self->state;
      return {static_cast<uint32_t>(st.held.size()), st.max_in_flight, st.arrivals};
    },
  };
}

/// A tool whose handler throws, which kills its actor (CAF reports sec::runtime_error).
tool_actor::behavior_type throwing_tool() {
  return {
    [](invoke_atom, const tool_call&) -> tool_result { throw std::runtime_error("kaboom"); },
  };
}

struct registry_fixture : troupe::testing::swarm_fixture {
  caf::scoped_actor self{sys};
  std::vector<caf::actor> own_actors;  // Stopped at the end so that the system can shut down.

  ~registry_fixture() {
    for (auto& a : own_actors) caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  }

  template <class Handle>
  Handle own(Handle h) {
    own_actors.push_back(caf::actor_cast<caf::actor>(h));
    return h;
  }

  tool_result invoke(const std::string& name, const std::string& arguments = "{}",
                     const std::string& id = "call-1") {
    tool_result out;
    self->request(registry, request_timeout, invoke_atom::value, tool_call{id, name, arguments})
      .receive([&](tool_result& r) { out = std::move(r); },
               [&](caf::error& e) {
                 BOOST_FAIL("invoke answered with an error: " << sys.render(e));
               });
    return out;
  }

  /// Registers and returns the registry's answer: true, or the troupe::error it failed with.
  error try_register(tool_spec spec, tool_actor actor, tool_options options = {}) {
    error out;
    self->request(registry, request_timeout, register_atom::value, std::move(spec), options,
                  std::move(actor))
      .receive([&](bool ok) { BOOST_TEST(ok); },
               [&](caf::error& e) { out = from_caf_error(e, "register"); });
    return out;
  }

  std::vector<std::string> names() {
    std::vector<std::string> out;
    self->request(registry, request_timeout, list_atom::value)
      .receive(
        [&](std::vector<tool_spec>& specs) {
          for (auto& s : specs) out.push_back(s.name);
        },
        [&](caf::error& e) { BOOST_FAIL("list failed: " << sys.render(e)); });
    return out;
  }

  bool unregister(const std::string& name) {
    bool out = false;
    self->request(registry, request_timeout, unregister_atom::value, name)
      .receive([&](bool b) { out = b; },
               [&](caf::error& e) { BOOST_FAIL("unregister failed: " << sys.render(e)); });
    return out;
  }

  tool_actor constant_tool(std::string answer) {
    return own(spawn_function_tool(sys, [answer](const tool_call& c) {
      return tool_result::ok(c.id, answer);
    }));
  }
};

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(registry, registry_fixture)

BOOST_AUTO_TEST_CASE(register_list_and_unregister) {
  BOOST_TEST(names() == (std::vector<std::string>{"echo", "fail", "noop", "wait"}));
  BOOST_TEST(!try_register({"zeta", "z", R"({"type":"object"})"}, constant_tool("z")));
  BOOST_TEST(!try_register({"alpha", "a", R"({"type":"object"})"}, constant_tool("a")));
  BOOST_TEST(names() ==
             (std::vector<std::string>{"alpha", "echo", "fail", "noop", "wait", "zeta"}));
  // The listed spec is the registered one.
  self->request(registry, request_timeout, list_atom::value)
    .receive(
      [&](std::vector<tool_spec>& specs) {
        BOOST_REQUIRE(!specs.empty());
        BOOST_TEST((specs.front() == tool_spec{"alpha", "a", R"({"type":"object"})"}));
      },
      [&](caf::error& e) { BOOST_FAIL(sys.render(e)); });
  BOOST_TEST(unregister("alpha"));
  BOOST_TEST(!unregister("alpha"));
  BOOST_TEST(!unregister("never-registered"));
  BOOST_TEST(names() == (std::vector<std::string>{"echo", "fail", "noop", "wait", "zeta"}));
  auto r = invoke("alpha");
  BOOST_TEST(r.is_error);
  BOOST_TEST(contains(r.content, "unknown tool 'alpha'"), r.content);
}

BOOST_AUTO_TEST_CASE(invoke_routes_by_name_and_keeps_the_call_id) {
  BOOST_TEST(!try_register({"first", "", R"({"type":"object"})"}, constant_tool("from first")));
  BOOST_TEST(!try_register({"second", "", R"({"type":"object"})"}, constant_tool("from second")));
  auto a = invoke("first", "{}", "id-a");
  auto b = invoke("second", "{}", "id-b");
  BOOST_TEST((a == tool_result{"id-a", "from first", false}));
  BOOST_TEST((b == tool_result{"id-b", "from second", false}));
}

BOOST_AUTO_TEST_CASE(an_unknown_tool_is_an_error_result_listing_the_registered_tools) {
  auto r = invoke("nope", "{}", "id-7");
  BOOST_TEST(r.is_error);
  BOOST_TEST(r.call_id == "id-7");
  BOOST_TEST(contains(r.content, "unknown tool 'nope'"), r.content);
  BOOST_TEST(contains(r.content, "echo, fail, noop, wait"), r.content);
}

BOOST_AUTO_TEST_CASE(arguments_that_are_not_json_are_malformed) {
  auto r = invoke("echo", R"({"text": )", "id-1");
  BOOST_TEST(r.is_error);
  BOOST_TEST(r.call_id == "id-1");
  BOOST_TEST(contains(r.content, "malformed arguments"), r.content);
  BOOST_TEST(contains(r.content, "tool 'echo'"), r.content);
}

BOOST_AUTO_TEST_CASE(arguments_that_are_not_an_object_are_malformed) {
  auto r = invoke("noop", "[1, 2]");
  BOOST_TEST(r.is_error);
  BOOST_TEST(contains(r.content, "malformed arguments"), r.content);
  BOOST_TEST(contains(r.content, "must be a JSON object, not array"), r.content);
  auto s = invoke("noop", R"("text")");
  BOOST_TEST(s.is_error);
  BOOST_TEST(contains(s.content, "not string"), s.content);
}

BOOST_AUTO_TEST_CASE(arguments_that_violate_the_schema_name_the_json_pointer) {
  auto wrong_type = invoke("echo", R"({"text": 5})");
  BOOST_TEST(wrong_type.is_error);
  BOOST_TEST(contains(wrong_type.content, "malformed arguments"), wrong_type.content);
  BOOST_TEST(contains(wrong_type.content, "/text: expected string, got integer"),
             wrong_type.content);
  auto missing = invoke("echo", R"({"txt": "hi"})");
  BOOST_TEST(missing.is_error);
  BOOST_TEST(contains(missing.content, "missing required property 'text'"), missing.content);

  // A nested schema: the pointer goes down to the array element.
  BOOST_TEST(!try_register(
    {"nested", "",
     R"({"type":"object","properties":{"items":{"type":"array","items":{"type":"string"}}}})"},
    constant_tool("fine")));
  auto nested = invoke("nested", R"({"items": ["a", "b", 3]})");
  BOOST_TEST(nested.is_error);
  BOOST_TEST(contains(nested.content, "/items/2: expected string, got integer"), nested.content);
  BOOST_TEST(invoke("nested", R"({"items": ["a", "b"]})").content == "fine");
}

BOOST_AUTO_TEST_CASE(registering_an_invalid_schema_is_a_request_error) {
  auto err = try_register({"broken", "", R"({"type": "object",)"}, constant_tool("x"));
  BOOST_TEST(err.code() == errc::parse_error, err.render());
  BOOST_TEST(contains(err.message(), "tool 'broken'"), err.message());
  BOOST_TEST(names() == (std::vector<std::string>{"echo", "fail", "noop", "wait"}));
  auto unnamed = try_register({"", "", "{}"}, constant_tool("x"));
  BOOST_TEST(unnamed.code() == errc::invalid_argument, unnamed.render());
  // register_tool throws the same error.
  try {
    register_tool(sys, registry, {"broken", "", "not json"}, constant_tool("x"));
    BOOST_FAIL("register_tool accepted a schema that is not JSON");
  } catch (const error& e) {
    BOOST_TEST(e.code() == errc::parse_error, e.render());
    BOOST_TEST(contains(e.message(), "tool 'broken'"), e.message());
  }
}

BOOST_AUTO_TEST_CASE(max_concurrency_bounds_calls_in_flight_and_keeps_fifo_order) {
  auto tool = own(sys.spawn(gated_tool));
  BOOST_TEST(!try_register({"gated", "", R"({"type":"object"})"}, tool, {2, 0}));

  // Observes the tool once every message sent to it so far has been handled: the registry
  // answers `list` only after it has handled everything we sent before, and whatever it sent to
  // the tool by then sits in the tool's mailbox ahead of our query.
  auto observe = [&](uint32_t in_flight, uint32_t max_in_flight, const std::string& arrivals) {
    self->request(registry, request_timeout, list_atom::value)
      .receive([](std::vector<tool_spec>&) {}, [&](caf::error& e) { BOOST_FAIL(sys.render(e)); });
    self->request(tool, request_timeout, list_atom::value)
      .receive(
        [&](uint32_t now, uint32_t most, std::string& seen) {
          BOOST_TEST(now == in_flight);
          BOOST_TEST(most == max_in_flight);
          BOOST_TEST(seen == arrivals);
        },
        [&](caf::error& e) { BOOST_FAIL(sys.render(e)); });
  };

  using handle = decltype(self->request(registry, request_timeout, invoke_atom::value,
                                        tool_call{}));
  std::vector<handle> calls;
  for (int i = 0; i < 5; ++i)
    calls.push_back(self->request(registry, request_timeout, invoke_atom::value,
                                  tool_call{"c" + std::to_string(i), "gated", "{}"}));
  observe(2, 2, "c0,c1");

  std::string expected_arrivals = "c0,c1";
  for (int i = 0; i < 5; ++i) {
    auto id = "c" + std::to_string(i);
    std::string released;
    self->request(tool, request_timeout, resume_atom::value)
      .receive([&](std::string& s) { released = s; },
               [&](caf::error& e) { BOOST_FAIL(sys.render(e)); });
    BOOST_TEST(released == id);  // The tool answers the oldest call first.
    calls[i].receive(
      [&](tool_result& r) { BOOST_TEST((r == tool_result{id, "answer " + id, false})); },
      [&](caf::error& e) { BOOST_FAIL(sys.render(e)); });
    // Answering one call lets exactly one queued call through, in the order they were made.
    if (i + 2 < 5) expected_arrivals += ",c" + std::to_string(i + 2);
    observe(static_cast<uint32_t>(std::min(2, 5 - i - 1)), 2, expected_arrivals);
  }
  BOOST_TEST(expected_arrivals == "c0,c1,c2,c3,c4");
}

BOOST_AUTO_TEST_CASE(a_tool_that_never_answers_times_out_as_an_error_result) {
  auto tool = own(sys.spawn(gated_tool));
  BOOST_TEST(!try_register({"silent", "", R"({"type":"object"})"}, tool, {0, 100}));
  auto r = invoke("silent", "{}", "id-s");
  BOOST_TEST(r.is_error);
  BOOST_TEST(r.call_id == "id-s");
  BOOST_TEST(contains(r.content, "tool 'silent' did not answer within 100 ms"), r.content);
  // The registry still serves other tools.
  BOOST_TEST(invoke("noop").content == "ok");
}

BOOST_AUTO_TEST_CASE(a_timed_out_call_frees_its_concurrency_slot) {
  auto tool = own(sys.spawn(gated_tool));
  BOOST_TEST(!try_register({"silent", "", R"({"type":"object"})"}, tool, {1, 100}));
  auto first = invoke("silent", "{}", "a");
  auto second = invoke("silent", "{}", "b");
  BOOST_TEST(contains(first.content, "did not answer within 100 ms"), first.content);
  BOOST_TEST(contains(second.content, "did not answer within 100 ms"), second.content);
}

BOOST_AUTO_TEST_CASE(a_tool_that_throws_or_died_is_an_error_result_and_the_registry_goes_on) {
  auto thrower = own(sys.spawn(throwing_tool));
  BOOST_TEST(!try_register({"thrower", "", R"({"type":"object"})"}, thrower));
  auto r = invoke("thrower", "{}", "id-t");
  BOOST_TEST(r.is_error);
  BOOST_TEST(r.call_id == "id-t");
  BOOST_TEST(contains(r.content, "tool 'thrower' failed"), r.content);
  // The tool's actor is gone now; calling it again is still an answer, not a hang.
  auto again = invoke("thrower", "{}", "id-t2");
  BOOST_TEST(again.is_error);
  BOOST_TEST(contains(again.content, "tool 'thrower' failed"), again.content);
  BOOST_TEST(invoke("echo", R"({"text": "still here"})").content == "still here");
  BOOST_TEST(names().size() == 5u);
}

BOOST_AUTO_TEST_CASE(replacing_a_tool_routes_new_calls_to_the_new_actor) {
  BOOST_TEST(!try_register({"x", "old", R"({"type":"object"})"}, constant_tool("old actor")));
  BOOST_TEST(invoke("x").content == "old actor");
  BOOST_TEST(!try_register({"x", "new", R"({"type":"object"})"}, constant_tool("new actor")));
  BOOST_TEST(invoke("x").content == "new actor");
  BOOST_TEST(names() == (std::vector<std::string>{"echo", "fail", "noop", "wait", "x"}));
}

BOOST_AUTO_TEST_CASE(function_tool_exceptions_become_error_results) {
  auto std_thrower = own(spawn_function_tool(sys, [](const tool_call&) -> tool_result {
    throw std::runtime_error("disk on fire");
  }));
  auto troupe_thrower = own(spawn_function_tool(sys, [](const tool_call&) -> tool_result {
    throw error{errc::not_found, "no such file 'a.txt'"};
  }));
  auto blocking = own(spawn_function_tool(
    sys, [](const tool_call& c) { return tool_result::ok("ignored", "blocking " + c.arguments); },
    true));
  BOOST_TEST(!try_register({"std", "", R"({"type":"object"})"}, std_thrower));
  BOOST_TEST(!try_register({"troupe", "", R"({"type":"object"})"}, troupe_thrower));
  BOOST_TEST(!try_register({"blocking", "", R"({"type":"object"})"}, blocking));
  auto a = invoke("std", "{}", "id-a");
  BOOST_TEST((a == tool_result{"id-a", "tool 'std' failed: disk on fire", true}));
  auto b = invoke("troupe", "{}", "id-b");
  BOOST_TEST((b == tool_result{"id-b", "no such file 'a.txt'", true}));
  // The function tool fills in the call id, whatever the body put there.
  auto c = invoke("blocking", R"({"k":1})", "id-c");
  BOOST_TEST((c == tool_result{"id-c", R"(blocking {"k":1})", false}));
}

BOOST_AUTO_TEST_CASE(builtin_tools_behave_as_documented) {
  BOOST_TEST(builtin_tool_names() == (std::vector<std::string>{"noop", "echo", "wait", "fail"}));
  BOOST_TEST((invoke("noop", "{}", "n") == tool_result{"n", "ok", false}));
  BOOST_TEST((invoke("echo", R"({"text": "héllo \"quoted\""})", "e") ==
              tool_result{"e", "héllo \"quoted\"", false}));
  BOOST_TEST((invoke("wait", R"({"ms": 0})", "w0") == tool_result{"w0", "waited 0 ms", false}));
  BOOST_TEST((invoke("wait", R"({"ms": 20, "text": "done"})", "w1") ==
              tool_result{"w1", "done", false}));
  auto negative = invoke("wait", R"({"ms": -1})");
  BOOST_TEST(negative.is_error);
  BOOST_TEST(contains(negative.content, "/ms: value -1 is less than minimum 0"), negative.content);
  auto too_long = invoke("wait", R"({"ms": 600001})");
  BOOST_TEST(too_long.is_error);
  BOOST_TEST(contains(too_long.content, "/ms: value 600001 is greater than maximum 600000"),
             too_long.content);
  auto no_ms = invoke("wait", R"({"text": "x"})");
  BOOST_TEST(no_ms.is_error);
  BOOST_TEST(contains(no_ms.content, "missing required property 'ms'"), no_ms.content);
  BOOST_TEST((invoke("fail", "{}", "f0") == tool_result{"f0", "fail: as asked", true}));
  BOOST_TEST((invoke("fail", R"({"message": "as you wish"})", "f1") ==
              tool_result{"f1", "as you wish", true}));
}

BOOST_AUTO_TEST_CASE(builtin_tools_can_be_registered_by_name_with_options) {
  auto other = spawn_tool_registry(sys);
  own(other);
  register_builtin_tools(sys, other, {"echo"}, {1, 500});
  std::vector<tool_spec> specs;
  self->request(other, request_timeout, list_atom::value)
    .receive([&](std::vector<tool_spec>& s) { specs = std::move(s); },
             [&](caf::error& e) { BOOST_FAIL(sys.render(e)); });
  BOOST_REQUIRE(specs.size() == 1u);
  BOOST_TEST(specs[0].name == "echo");
  try {
    register_builtin_tools(sys, other, {"echo", "teleport"});
    BOOST_FAIL("an unknown built-in tool was accepted");
  } catch (const error& e) {
    BOOST_TEST(e.code() == errc::not_found, e.render());
    BOOST_TEST(contains(e.message(), "'teleport'"), e.message());
    BOOST_TEST(contains(e.message(), "noop, echo, wait, fail"), e.message());
  }
}

BOOST_AUTO_TEST_SUITE_END()
