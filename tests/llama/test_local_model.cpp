// The batched forward pass and the local engine actor (continuous batching, streaming, cancel,
// KV admission) against the llama.cpp fixture: batching must not change a single token.

#define BOOST_TEST_MODULE local_model
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cstdlib>
#include <chrono>
#include <map>
#include <thread>
#include <variant>
#include <string>
#include <vector>

#include "caf/all.hpp"
#include "llama/llama_test_support.hpp"
#include "troupe/caf_types.hpp"
#include "troupe/error.hpp"
#include "troupe/json.hpp"
#include "troupe/llama/batch_decoder.hpp"
#include "troupe/llama/tokenizer.hpp"
#include "troupe/local_model.hpp"

using namespace troupe;
using troupe::llama::batch_decoder;
using troupe::llama::kv_cache_type;
using troupe::llama::llama_model;

namespace {

constexpr auto reply_timeout = std::chrono::seconds(300);

bool have_model() {
  if (!llama::test::smollm2_path().empty()) return true;
  BOOST_TEST_MESSAGE("SKIPPED: SmolLM2-135M-Instruct.Q4_1.gguf not found (set TROUPE_MODEL_DIR "
                     "or run scripts/install-deps)");
  return false;
}

int32_t arg_max(std::span<const float> logits) {
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

/// The embedded model's tokenizer.
llama::tokenizer smollm2_tokenizer() {
  return llama::tokenizer::from_gguf(llama_model::load(llama::test::smollm2_path())->file());
}

/// A fixture case whose prompt is a ChatML conversation, as troupe messages.
struct chat_case {
  std::string name;
  std::vector<chat_message> messages;
  std::vector<int32_t> prompt_tokens;
  std::vector<int32_t> greedy;  // llama.cpp's 64 greedy tokens
};

/// Splits "<|im_start|>role\ncontent<|im_end|>\n..." (ending with the assistant header).
std::vector<chat_message> parse_chatml(const std::string& prompt) {
  std::vector<chat_message> out;
  const std::string start = "<|im_start|>", end = "<|im_end|>";
  size_t pos = 0;
  for (;;) {
    const size_t s = prompt.find(start, pos);
    const size_t e = prompt.find(end, s);
    if (s == std::string::npos || e == std::string::npos) break;
    const std::string body = prompt.substr(s + start.size(), e - s - start.size());
    const size_t nl = body.find('\n');
    const std::string role = body.substr(0, nl), text = body.substr(nl + 1);
    if (role == "system") out.push_back(chat_message::system(text));
    else if (role == "user") out.push_back(chat_message::user(text));
    else out.push_back(chat_message::assistant(text));
    pos = e + end.size();
  }
  return out;
}

std::vector<chat_case> chat_cases() {
  std::vector<chat_case> out;
  const json::value fixture = llama::test::reference_fixture();
  for (const json::value& c : fixture.find("cases")->as_array()) {
    const std::string name = c.find("name")->as_string();
    if (name.rfind("chat_", 0) != 0) continue;
    out.push_back({name, parse_chatml(c.find("prompt")->as_string()),
                   llama::test::ids_of(*c.find("prompt_tokens")),
                   llama::test::ids_of(*c.find("greedy_tokens"))});
  }
  return out;
}

/// What llama.cpp's greedy tokens say the engine must answer with max_tokens = 64.
struct expected_answer {
  std::string text;
  finish_reason finish;
  uint64_t tokens;
};

expected_answer expected_of(const llama::tokenizer& tok, const std::vector<int32_t>& greedy) {
  auto end = std::find_if(greedy.begin(), greedy.end(),
                          [&](int32_t t) { return tok.is_end_of_generation(t); });
  std::vector<int32_t> kept(greedy.begin(), end);
  return {tok.decode(kept), end == greedy.end() ? finish_reason::length : finish_reason::stop,
          kept.size()};
}

struct engine_fixture {
  engine_fixture() : sys(cfg), self(sys) {}
  ~engine_fixture() {
    if (model) caf::anon_send_exit(model, caf::exit_reason::user_shutdown);
  }
  void start(local_model_config c = {}) {
    c.model = llama::test::smollm2_path().string();
    model = spawn_local_model(sys, c);
  }
  /// Sends a request and returns its reply or error (deltas stay in the mailbox).
  std::variant<assistant_turn, error> ask(const chat_request& req) {
    std::variant<assistant_turn, error> out;
    self->request(model, reply_timeout, chat_atom::value, req)
      .receive([&](assistant_turn& t) { out = std::move(t); },
               [&](caf::error& e) { out = from_caf_error(e, "chat"); });
    return out;
  }
  troupe::actor_system_config cfg;
  caf::actor_system sys;
  caf::scoped_actor self;
  model_actor model;
};

chat_request request_for(uint64_t id, std::vector<chat_message> messages, uint32_t max_tokens) {
  chat_request r;
  r.id = id;
  r.messages = std::move(messages);
  r.max_tokens = max_tokens;
  return r;
}

}  // namespace

namespace {

/// Eight fixture prompts prefilled in one step, then decoded together one token per step with a
/// `kv` cache: llama.cpp's logits and tokens (run with the same cache type) for every sequence.
void check_batched_against_llama_cpp(kv_cache_type kv) {
  const json::value fixture = llama::test::reference_fixture(kv == kv_cache_type::f16);
  const auto& cases = fixture.find("cases")->as_array();
  auto model = llama_model::load(llama::test::smollm2_path());
  batch_decoder dec(model, 2, kv);
  const size_t n = std::min<size_t>(cases.size(), 8);
  const auto vocab = static_cast<size_t>(model->hparams().vocab);
  std::vector<std::vector<int32_t>> prompts, expected, got(n);
  std::vector<uint32_t> seqs;
  std::vector<batch_decoder::chunk> chunks;
  for (size_t i = 0; i < n; ++i) {
    prompts.push_back(llama::test::ids_of(*cases[i].find("prompt_tokens")));
    expected.push_back(llama::test::ids_of(*cases[i].find("greedy_tokens")));
    seqs.push_back(dec.open(256));
  }
  for (size_t i = 0; i < n; ++i) chunks.push_back({seqs[i], prompts[i]});
  // All prompts in one step, then every sequence one token per step.
  auto logits = dec.decode(chunks);
  for (size_t i = 0; i < n; ++i) {
    // The first-step logits of llama.cpp's top 50, bit for bit.
    for (const json::value& pair : cases[i].find("first_logits")->find("top")->as_array()) {
      const auto id = static_cast<size_t>(pair.as_array()[0].as_int());
      BOOST_CHECK_EQUAL(logits[i * vocab + id],
                        static_cast<float>(pair.as_array()[1].as_number()));
    }
  }
  std::vector<int32_t> next(n);
  for (size_t step = 0; step < expected[0].size(); ++step) {
    for (size_t i = 0; i < n; ++i) {
      next[i] = arg_max(logits.subspan(i * vocab, vocab));
      got[i].push_back(next[i]);
      chunks[i] = {seqs[i], std::span<const int32_t>(&next[i], 1)};
    }
    logits = dec.decode(chunks);
  }
  for (size_t i = 0; i < n; ++i) {
    BOOST_TEST_CONTEXT("prompt " << cases[i].find("name")->as_string()) {
      BOOST_CHECK_EQUAL_COLLECTIONS(got[i].begin(), got[i].end(), expected[i].begin(),
                                    expected[i].end());
      BOOST_CHECK_EQUAL(dec.position(seqs[i]),
                        static_cast<int64_t>(prompts[i].size() + expected[i].size()));
    }
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(batched_decoding_gives_llama_cpp_tokens_for_every_sequence) {
  if (!have_model()) return;
  check_batched_against_llama_cpp(kv_cache_type::f32);
}

BOOST_AUTO_TEST_CASE(batched_decoding_with_an_f16_kv_cache_gives_llama_cpp_tokens) {
  if (!have_model()) return;
  check_batched_against_llama_cpp(kv_cache_type::f16);
}

BOOST_AUTO_TEST_CASE(a_refused_step_changes_nothing) {
  if (!have_model()) return;
  auto model = llama_model::load(llama::test::smollm2_path());
  batch_decoder dec(model, 1);
  const uint32_t a = dec.open(8), b = dec.open(4);
  const std::vector<int32_t> three{1, 2, 3}, five{1, 2, 3, 4, 5};
  const int32_t bad = 1 << 20;
  auto refused = [&](std::vector<batch_decoder::chunk> chunks, errc code) {
    try {
      dec.decode(chunks);
      BOOST_ERROR("the step was not refused");
    } catch (const error& e) {
      BOOST_CHECK_EQUAL(e.code(), code);
      BOOST_TEST_MESSAGE(e.message());
    }
    BOOST_CHECK_EQUAL(dec.position(a), 0);
    BOOST_CHECK_EQUAL(dec.position(b), 0);
  };
  refused({{a, three}, {b, five}}, errc::budget_exceeded);  // b holds 4 positions
  refused({{a, three}, {a, three}}, errc::invalid_argument);
  refused({{a, three}, {77, three}}, errc::invalid_argument);
  refused({{a, {}}}, errc::invalid_argument);
  refused({{a, std::span<const int32_t>(&bad, 1)}}, errc::invalid_argument);
  refused({}, errc::invalid_argument);
  dec.decode(std::vector<batch_decoder::chunk>{{a, three}, {b, three}});
  BOOST_CHECK_EQUAL(dec.position(a), 3);
  BOOST_CHECK_EQUAL(dec.open_sequences(), 2u);
  dec.close(b);
  BOOST_CHECK_EQUAL(dec.open_sequences(), 1u);
  BOOST_CHECK_THROW(dec.position(b), error);
}

namespace {

/// Every fixture prompt computed in two parts: its first k tokens copied from a sequence that ran
/// the whole prompt (copy_prefix), or that sequence cut back to k (truncate), then the rest, of
/// two tokens or more. Both give llama.cpp's logits for the whole prompt in one prefill, bit for
/// bit, with either cache type: the embedded model's products (Q4_1, Q8_0 output) sum per token,
/// and attention sums alike in any chunk of several tokens. (A rest of one token would not:
/// attention_head_args::single_token; the engine never copies that far.)
void check_prompts_in_two_parts(kv_cache_type kv) {
  const json::value fixture = llama::test::reference_fixture(kv == kv_cache_type::f16);
  auto model = llama_model::load(llama::test::smollm2_path());
  batch_decoder dec(model, 2, kv);
  const auto vocab = static_cast<size_t>(model->hparams().vocab);
  size_t checked = 0;
  for (const json::value& c : fixture.find("cases")->as_array()) {
    const auto prompt = llama::test::ids_of(*c.find("prompt_tokens"));
    if (prompt.size() < 4) continue;
    const auto n = static_cast<int64_t>(prompt.size());
    for (int64_t k : {int64_t{1}, n / 2, n - 2}) {
      BOOST_TEST_CONTEXT(c.find("name")->as_string() << ", first " << k << " tokens copied") {
        const uint32_t whole = dec.open(n), part = dec.open(n + 4);
        dec.decode(std::vector<batch_decoder::chunk>{{whole, prompt}});
        dec.copy_prefix(whole, part, k);
        BOOST_CHECK_EQUAL(dec.position(part), k);
        const auto rest = std::span(prompt).subspan(static_cast<size_t>(k));
        std::vector<float> copied;
        {
          auto l = dec.decode(std::vector<batch_decoder::chunk>{{part, rest}});
          copied.assign(l.begin(), l.end());
        }
        dec.truncate(whole, k);
        auto cut = dec.decode(std::vector<batch_decoder::chunk>{{whole, rest}});
        for (const json::value& pair : c.find("first_logits")->find("top")->as_array()) {
          const auto id = static_cast<size_t>(pair.as_array()[0].as_int());
          const auto want = static_cast<float>(pair.as_array()[1].as_number());
          BOOST_CHECK_EQUAL(copied[id], want);
        }
        BOOST_CHECK(std::equal(copied.begin(), copied.begin() + static_cast<ptrdiff_t>(vocab),
                               cut.begin()));
        dec.close(whole);
        dec.close(part);
        ++checked;
      }
    }
  }
  BOOST_CHECK_GE(checked, 60u);
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_prompt_continued_from_a_copied_prefix_gives_llama_cpp_logits) {
  if (!have_model()) return;
  check_prompts_in_two_parts(kv_cache_type::f32);
}

BOOST_AUTO_TEST_CASE(a_prompt_continued_from_a_copied_f16_prefix_gives_llama_cpp_logits) {
  if (!have_model()) return;
  check_prompts_in_two_parts(kv_cache_type::f16);
}

BOOST_AUTO_TEST_CASE(copy_prefix_and_truncate_refuse_what_does_not_fit) {
  if (!have_model()) return;
  auto model = llama_model::load(llama::test::smollm2_path());
  batch_decoder dec(model, 1);
  const uint32_t a = dec.open(8), b = dec.open(2);
  const std::vector<int32_t> three{1, 2, 3};
  dec.decode(std::vector<batch_decoder::chunk>{{a, three}});
  auto refused = [&](auto op, const char* what) {
    try {
      op();
      BOOST_ERROR("not refused: " << what);
    } catch (const error& e) {
      BOOST_CHECK_EQUAL(e.code(), errc::invalid_argument);
      BOOST_TEST_MESSAGE(e.message());
    }
    BOOST_CHECK_EQUAL(dec.position(a), 3);
    BOOST_CHECK_EQUAL(dec.position(b), 0);
  };
  refused([&] { dec.copy_prefix(a, a, 1); }, "into itself");
  refused([&] { dec.copy_prefix(a, b, 4); }, "more than the source holds");
  refused([&] { dec.copy_prefix(a, b, 3); }, "more than the destination's capacity");
  refused([&] { dec.copy_prefix(a, 9, 1); }, "an unknown destination");
  refused([&] { dec.truncate(a, 4); }, "truncate beyond the position");
  refused([&] { dec.truncate(a, -1); }, "a negative truncation");
  dec.copy_prefix(a, b, 2);
  BOOST_CHECK_EQUAL(dec.position(b), 2);
  BOOST_CHECK(dec.interchangeable(8, 100000));  // no LongRoPE factors in SmolLM2
}

BOOST_FIXTURE_TEST_CASE(concurrent_requests_each_get_llama_cpp_answer, engine_fixture) {
  if (!have_model()) return;
  start();
  const auto tok = smollm2_tokenizer();
  const auto cases = chat_cases();
  BOOST_REQUIRE_GE(cases.size(), 8u);
  // Every request goes out before any reply is read: they share the batch.
  std::map<uint64_t, std::variant<assistant_turn, error>> replies;
  std::vector<decltype(self->request(model, reply_timeout, chat_atom::value, chat_request{}))>
    handles;
  for (size_t i = 0; i < cases.size(); ++i) {
    handles.push_back(self->request(model, reply_timeout, chat_atom::value,
                                    request_for(i + 1, cases[i].messages, 64)));
  }
  for (size_t i = 0; i < cases.size(); ++i) {
    handles[i].receive([&](assistant_turn& t) { replies[i] = std::move(t); },
                       [&](caf::error& e) { replies[i] = from_caf_error(e, "chat"); });
  }
  for (size_t i = 0; i < cases.size(); ++i) {
    BOOST_TEST_CONTEXT("prompt " << cases[i].name) {
      auto* turn = std::get_if<assistant_turn>(&replies[i]);
      if (!turn) BOOST_FAIL("request failed: " << std::get<error>(replies[i]).render());
      const auto want = expected_of(tok, cases[i].greedy);
      BOOST_CHECK_EQUAL(turn->text, want.text);
      BOOST_CHECK_EQUAL(turn->finish, want.finish);
      BOOST_CHECK_EQUAL(turn->usage.completion_tokens, want.tokens);
      BOOST_CHECK_EQUAL(turn->usage.prompt_tokens, cases[i].prompt_tokens.size());
    }
  }
}

BOOST_FIXTURE_TEST_CASE(streamed_deltas_add_up_to_the_reply, engine_fixture) {
  if (!have_model()) return;
  start();
  const auto cases = chat_cases();
  auto req = request_for(42, cases.front().messages, 24);
  req.stream_to = caf::actor_cast<delta_sink_actor>(self);
  auto reply = ask(req);
  auto* turn = std::get_if<assistant_turn>(&reply);
  BOOST_REQUIRE(turn);
  std::string streamed;
  size_t deltas = 0;
  bool more = true;
  while (more) {
    self->receive(
      [&](delta_atom, const turn_delta& d) {
        BOOST_CHECK_EQUAL(d.request_id, 42u);
        streamed += d.text;
        ++deltas;
      },
      caf::after(std::chrono::milliseconds(0)) >> [&] { more = false; });
  }
  BOOST_CHECK_GT(deltas, 1u);
  BOOST_CHECK_EQUAL(streamed, turn->text);
}

BOOST_FIXTURE_TEST_CASE(cancel_ends_a_running_request_with_its_text_so_far, engine_fixture) {
  if (!have_model()) return;
  start();
  auto req = request_for(7, {chat_message::user("Write a very long story about a lighthouse.")},
                         1500);
  req.stream_to = caf::actor_cast<delta_sink_actor>(self);
  auto handle = self->request(model, reply_timeout, chat_atom::value, req);
  // Cancel once the first text has streamed: the request is running then.
  self->receive([&](delta_atom, const turn_delta&) {},
                caf::after(reply_timeout) >> [] { BOOST_FAIL("no delta"); });
  self->send(model, cancel_atom::value, uint64_t{7});
  handle.receive(
    [&](assistant_turn& t) {
      BOOST_CHECK_EQUAL(t.finish, finish_reason::cancelled);
      BOOST_CHECK(!t.text.empty());
      BOOST_CHECK_LT(t.usage.completion_tokens, 1500u);
    },
    [&](caf::error& e) { BOOST_ERROR("cancel gave an error: " << to_string(e)); });
  // The engine still serves afterwards.
  auto again = ask(request_for(8, {chat_message::user("Say hi.")}, 4));
  BOOST_CHECK(std::holds_alternative<assistant_turn>(again));
}

/// The replies to requests sent together and what streamed for each (by request id).
struct together {
  std::vector<std::variant<assistant_turn, error>> replies;  ///< In request order.
  std::map<uint64_t, std::string> text;
  std::map<uint64_t, std::vector<token_logprob>> logprobs;
};

/// Sends every request before reading any reply (they share the batch); requests with
/// stream_to = self stream to the test.
together ask_together(engine_fixture& f, const std::vector<chat_request>& requests) {
  std::vector<decltype(f.self->request(f.model, reply_timeout, chat_atom::value, chat_request{}))>
    handles;
  for (const auto& r : requests)
    handles.push_back(f.self->request(f.model, reply_timeout, chat_atom::value, r));
  std::vector<std::variant<assistant_turn, error>> replies(requests.size());
  for (size_t i = 0; i < requests.size(); ++i)
    handles[i].receive([&](assistant_turn& t) { replies[i] = std::move(t); },
                       [&](caf::error& e) { replies[i] = from_caf_error(e, "chat"); });
  together out{std::move(replies), {}, {}};
  for (bool more = true; more;) {  // A request's deltas come before its reply.
    f.self->receive(
      [&](delta_atom, const turn_delta& d) {
        out.text[d.request_id] += d.text;
        auto& lps = out.logprobs[d.request_id];
        lps.insert(lps.end(), d.logprobs.begin(), d.logprobs.end());
      },
      caf::after(std::chrono::milliseconds(0)) >> [&] { more = false; });
  }
  return out;
}

/// Stop strings that span a token boundary in the middle of llama.cpp's greedy answer: each
/// answer ends right before the string's first occurrence, on the token that completed it, and
/// what streamed is exactly the reply (no byte of the stop string leaked while it was held back).
BOOST_FIXTURE_TEST_CASE(stop_strings_end_answers_before_them, engine_fixture) {
  if (!have_model()) return;
  start();
  const auto tok = smollm2_tokenizer();
  std::vector<chat_request> requests;
  std::vector<std::string> want_text;
  std::vector<uint64_t> want_tokens;
  for (const auto& c : chat_cases()) {
    const auto want = expected_of(tok, c.greedy);
    auto upto = [&](size_t n) { return c.greedy.begin() + static_cast<ptrdiff_t>(n); };
    std::vector<int32_t> kept(c.greedy.begin(), upto(want.tokens));
    if (kept.size() < 8) continue;
    const size_t boundary = tok.decode({kept.begin(), kept.begin() + static_cast<ptrdiff_t>(
                                                                       kept.size() / 2)})
                              .size();
    if (boundary < 2 || boundary + 3 > want.text.size()) continue;
    const std::string stop = want.text.substr(boundary - 2, 5);
    if (std::any_of(stop.begin(), stop.end(), [](char ch) { return ch & 0x80; })) continue;
    // The token whose text completes the first occurrence ends the turn.
    uint64_t tokens = 1;
    while (tok.decode({kept.begin(), kept.begin() + static_cast<ptrdiff_t>(tokens)}).find(stop) ==
           std::string::npos)
      ++tokens;
    auto r = request_for(requests.size() + 1, c.messages, 64);
    r.stop = {"\x01 never appears", stop, ""};
    r.stream_to = caf::actor_cast<delta_sink_actor>(self);
    requests.push_back(std::move(r));
    want_text.push_back(want.text.substr(0, want.text.find(stop)));
    want_tokens.push_back(tokens);
  }
  BOOST_REQUIRE_GE(requests.size(), 6u);
  auto [replies, streamed, unused] = ask_together(*this, requests);
  for (size_t i = 0; i < requests.size(); ++i) {
    BOOST_TEST_CONTEXT("request " << i + 1 << ", stop " << requests[i].stop[1]) {
      auto* turn = std::get_if<assistant_turn>(&replies[i]);
      if (!turn) BOOST_FAIL("request failed: " << std::get<error>(replies[i]).render());
      BOOST_CHECK_EQUAL(turn->text, want_text[i]);
      BOOST_CHECK_EQUAL(turn->finish, finish_reason::stop);
      BOOST_CHECK_EQUAL(turn->usage.completion_tokens, want_tokens[i]);
      BOOST_CHECK_EQUAL(streamed[requests[i].id], turn->text);
    }
  }
}

/// Each fixture case's first_logits (llama.cpp's top 50 and statistics), by case name.
std::map<std::string, json::value> first_logits_by_case() {
  std::map<std::string, json::value> out;
  const json::value fixture = llama::test::reference_fixture();
  for (const json::value& c : fixture.find("cases")->as_array())
    out.emplace(c.find("name")->as_string(), *c.find("first_logits"));
  return out;
}

/// Log-probabilities: the first step's are llama.cpp's logits minus their log-sum-exp (the
/// fixture's top five), every greedy token is its step's most likely, and what streamed is what
/// the reply holds, token for token.
BOOST_FIXTURE_TEST_CASE(logprobs_are_llama_cpp_log_softmax, engine_fixture) {
  if (!have_model()) return;
  start();
  const auto tok = smollm2_tokenizer();
  const auto first = first_logits_by_case();
  const auto cases = chat_cases();
  std::vector<chat_request> requests;
  for (const auto& c : cases) {
    auto r = request_for(requests.size() + 1, c.messages, 12);
    r.top_logprobs = 5;
    r.stream_to = caf::actor_cast<delta_sink_actor>(self);
    requests.push_back(std::move(r));
  }
  auto got = ask_together(*this, requests);
  for (size_t i = 0; i < requests.size(); ++i) {
    BOOST_TEST_CONTEXT(cases[i].name) {
      auto* turn = std::get_if<assistant_turn>(&got.replies[i]);
      if (!turn) BOOST_FAIL("request failed: " << std::get<error>(got.replies[i]).render());
      BOOST_REQUIRE_EQUAL(turn->logprobs.size(), turn->usage.completion_tokens);
      BOOST_CHECK(got.logprobs[requests[i].id] == turn->logprobs);
      std::string text;
      for (const auto& t : turn->logprobs) {
        text += t.token;
        BOOST_REQUIRE_EQUAL(t.top.size(), 5u);
        BOOST_CHECK_EQUAL(t.top[0].token, t.token);  // greedy: the most likely
        BOOST_CHECK_EQUAL(t.top[0].logprob, t.logprob);
        BOOST_CHECK_LE(t.logprob, 0.0f);
        for (size_t j = 1; j < t.top.size(); ++j)
          BOOST_CHECK_LE(t.top[j].logprob, t.top[j - 1].logprob);
      }
      BOOST_CHECK_EQUAL(text, turn->text);
      const json::value& ref = first.at(cases[i].name);
      const double lse = ref.find("logsumexp")->as_number();
      const auto& top = ref.find("top")->as_array();
      for (size_t j = 0; j < 5; ++j) {
        const auto id = static_cast<int32_t>(top[j].as_array()[0].as_int());
        BOOST_CHECK_EQUAL(turn->logprobs[0].top[j].token, tok.decode(std::vector<int32_t>{id}));
        const double want = top[j].as_array()[1].as_number() - lse;
        BOOST_CHECK_SMALL(turn->logprobs[0].top[j].logprob - want, 2e-5);
      }
    }
  }
}

/// A logit bias of -100 on llama.cpp's greedy first token makes the answer start with its
/// second most likely one (the fixture's first-step logits); +100 on its eighth forces that;
/// a token id outside the vocabulary is refused with the range.
BOOST_FIXTURE_TEST_CASE(logit_biases_ban_and_force_llama_cpp_tokens, engine_fixture) {
  if (!have_model()) return;
  start();
  const auto tok = smollm2_tokenizer();
  const auto first = first_logits_by_case();
  const auto cases = chat_cases();
  std::vector<chat_request> requests;
  std::vector<std::string> want;
  for (const auto& c : cases) {
    const auto& top = first.at(c.name).find("top")->as_array();
    auto id_at = [&](size_t j) { return static_cast<int32_t>(top[j].as_array()[0].as_int()); };
    if (top[1].as_array()[1].as_number() == top[2].as_array()[1].as_number()) continue;  // a tie
    auto ban = request_for(requests.size() + 1, c.messages, 1);
    ban.sampling.logit_bias = {{id_at(0), -100.0f}};
    requests.push_back(ban);
    want.push_back(tok.decode(std::vector<int32_t>{id_at(1)}));
    auto force = request_for(requests.size() + 1, c.messages, 1);
    force.sampling.logit_bias = {{id_at(7), 100.0f}};
    requests.push_back(force);
    want.push_back(tok.decode(std::vector<int32_t>{id_at(7)}));
  }
  BOOST_REQUIRE_GE(requests.size(), 12u);
  auto got = ask_together(*this, requests);
  for (size_t i = 0; i < requests.size(); ++i) {
    BOOST_TEST_CONTEXT("request " << i + 1) {
      auto* turn = std::get_if<assistant_turn>(&got.replies[i]);
      if (!turn) BOOST_FAIL("request failed: " << std::get<error>(got.replies[i]).render());
      BOOST_CHECK_EQUAL(turn->text, want[i]);
    }
  }
  auto bad = request_for(99, cases.front().messages, 1);
  bad.sampling.logit_bias = {{49152, 1.0f}};
  auto reply = ask(bad);
  auto* e = std::get_if<error>(&reply);
  BOOST_REQUIRE(e);
  BOOST_CHECK(e->code() == errc::invalid_argument);
  BOOST_CHECK_NE(e->message().find("from 0 to 49151"), std::string::npos);
}

/// Greedy decoding under the repetition, frequency and presence penalties gives llama.cpp's
/// tokens through its own penalty samplers (tests/fixtures/llama/smollm2_penalties.json, from
/// tools/reference/llama_cpp_penalties_reference.py), all requests in one batch.
BOOST_FIXTURE_TEST_CASE(penalised_sampling_gives_llama_cpp_tokens, engine_fixture) {
  if (!have_model()) return;
  start();
  const auto tok = smollm2_tokenizer();
  std::map<std::string, chat_case> cases;
  for (auto& c : chat_cases()) cases.emplace(c.name, std::move(c));
  const auto fixture = llama::test::llama_fixture("smollm2_penalties.json");
  std::vector<chat_request> requests;
  std::vector<expected_answer> want;
  std::vector<std::string> names;
  for (const json::value& run : fixture.find("runs")->as_array()) {
    const auto& c = cases.at(run.find("case")->as_string());
    auto r = request_for(requests.size() + 1, c.messages, 64);
    r.sampling.temperature = 0;
    r.sampling.repetition_penalty = static_cast<float>(run.find("repetition_penalty")->as_number());
    r.sampling.frequency_penalty = static_cast<float>(run.find("frequency_penalty")->as_number());
    r.sampling.presence_penalty = static_cast<float>(run.find("presence_penalty")->as_number());
    requests.push_back(std::move(r));
    want.push_back(expected_of(tok, llama::test::ids_of(*run.find("greedy_tokens"))));
    names.push_back(c.name + "/" + run.find("setting")->as_string());
  }
  BOOST_REQUIRE_GE(requests.size(), 30u);
  auto replies = ask_together(*this, requests).replies;
  size_t differ_from_plain = 0;
  for (size_t i = 0; i < requests.size(); ++i) {
    BOOST_TEST_CONTEXT(names[i]) {
      auto* turn = std::get_if<assistant_turn>(&replies[i]);
      if (!turn) BOOST_FAIL("request failed: " << std::get<error>(replies[i]).render());
      BOOST_CHECK_EQUAL(turn->text, want[i].text);
      BOOST_CHECK_EQUAL(turn->finish, want[i].finish);
      BOOST_CHECK_EQUAL(turn->usage.completion_tokens, want[i].tokens);
      const auto& c = cases.at(names[i].substr(0, names[i].find('/')));
      if (want[i].text != expected_of(tok, c.greedy).text) ++differ_from_plain;
    }
  }
  // The penalties are felt: most answers are not the unpenalised greedy ones.
  BOOST_CHECK_GT(differ_from_plain, requests.size() / 2);
}

BOOST_FIXTURE_TEST_CASE(kv_admission_queues_what_does_not_fit_and_refuses_what_never_fits,
                        engine_fixture) {
  if (!have_model()) return;
  // Room for one sequence of 160 positions at a time (SmolLM2: 46,080 bytes a position).
  local_model_config c;
  c.kv_budget_bytes = 160 * 46'080;
  c.context = 512;
  start(c);
  const auto cases = chat_cases();
  auto first = self->request(model, reply_timeout, chat_atom::value,
                             request_for(1, cases[0].messages, 64));  // 37 + 64 positions
  auto second = self->request(model, reply_timeout, chat_atom::value,
                              request_for(2, cases[1].messages, 64));  // waits for the first
  for (auto* h : {&first, &second}) {
    h->receive([&](assistant_turn& t) { BOOST_CHECK(!t.text.empty()); },
               [&](caf::error& e) { BOOST_ERROR("queued request failed: " << to_string(e)); });
  }
  // A reservation larger than the whole budget is refused, naming the budget.
  auto huge = ask(request_for(3, cases[0].messages, 400));
  BOOST_REQUIRE(std::holds_alternative<error>(huge));
  BOOST_CHECK_EQUAL(std::get<error>(huge).code(), errc::budget_exceeded);
  BOOST_CHECK_NE(std::get<error>(huge).message().find("KV"), std::string::npos);
  // A prompt longer than the context is refused, naming the lengths.
  std::string long_text;
  for (int i = 0; i < 400; ++i) long_text += "lighthouse keeper ";
  auto too_long = ask(request_for(4, {chat_message::user(long_text)}, 8));
  BOOST_REQUIRE(std::holds_alternative<error>(too_long));
  BOOST_CHECK_EQUAL(std::get<error>(too_long).code(), errc::invalid_argument);
  BOOST_CHECK_NE(std::get<error>(too_long).message().find("512 positions"), std::string::npos);
  // Bad requests: no messages; a response schema that cannot be used; a named tool not declared.
  auto empty = ask(request_for(5, {}, 8));
  BOOST_REQUIRE(std::holds_alternative<error>(empty));
  BOOST_CHECK_EQUAL(std::get<error>(empty).code(), errc::invalid_argument);
  auto schema = request_for(6, {chat_message::user("hi")}, 8);
  schema.response_schema = R"({"type":"objekt"})";
  auto refused = ask(schema);
  BOOST_REQUIRE(std::holds_alternative<error>(refused));
  BOOST_CHECK_EQUAL(std::get<error>(refused).code(), errc::invalid_argument);
  BOOST_CHECK_NE(std::get<error>(refused).message().find("unknown type 'objekt'"),
                 std::string::npos);
  auto named = request_for(7, {chat_message::user("hi")}, 8);
  named.tools = {{"list_dir", "List", R"({"type":"object"})"}};
  named.choice = {tool_choice_mode::named, "read_file"};
  auto unknown = ask(named);
  BOOST_REQUIRE(std::holds_alternative<error>(unknown));
  BOOST_CHECK_NE(std::get<error>(unknown).message().find("'read_file'"), std::string::npos);
}

namespace {

/// The same requests on an engine without a prefix cache, for the answers to compare with.
struct uncached_engine {
  uncached_engine() : sys(cfg), self(sys) {
    local_model_config c;
    c.model = llama::test::smollm2_path().string();
    c.prefix_cache = false;
    model = spawn_local_model(sys, c);
  }
  ~uncached_engine() { caf::anon_send_exit(model, caf::exit_reason::user_shutdown); }
  /// `req` without its delta sink (an actor of another system, whose mailbox would keep this
  /// engine alive through the deltas' sender).
  assistant_turn ask(chat_request req) {
    req.stream_to = nullptr;
    assistant_turn out;
    self->request(model, reply_timeout, chat_atom::value, req)
      .receive([&](assistant_turn& t) { out = std::move(t); },
               [&](caf::error& e) { BOOST_FAIL("uncached request failed: " << to_string(e)); });
    BOOST_CHECK_EQUAL(out.usage.cached_prompt_tokens, 0u);
    return out;
  }
  troupe::actor_system_config cfg;
  caf::actor_system sys;
  caf::scoped_actor self;
  model_actor model;
};

assistant_turn answer(std::variant<assistant_turn, error> reply) {
  if (auto* e = std::get_if<error>(&reply)) BOOST_FAIL("request failed: " << e->render());
  return std::get<assistant_turn>(std::move(reply));
}

/// A system prompt of about 300 tokens, as a sub-agent's instructions and tools make one.
std::string long_system_prompt() {
  std::string s = "You are a research sub-agent of a lighthouse survey. Answer in one sentence. ";
  for (int i = 0; i < 12; ++i)
    s += "Tool " + std::to_string(i) + ": read_record takes a record number and returns the "
         "keeper's log entry for that lighthouse. ";
  return s;
}

}  // namespace

BOOST_FIXTURE_TEST_CASE(an_agents_next_turn_starts_from_its_previous_turns_cache,
                        engine_fixture) {
  if (!have_model()) return;
  start();
  uncached_engine plain;
  std::vector<chat_message> conversation{
    chat_message::system("You are a terse assistant."),
    chat_message::user("Name one famous lighthouse.")};
  const auto first = answer(ask(request_for(1, conversation, 32)));
  BOOST_CHECK_EQUAL(first.usage.cached_prompt_tokens, 0u);  // nothing ran before it
  BOOST_CHECK_EQUAL(first.text, plain.ask(request_for(1, conversation, 32)).text);
  conversation.push_back(chat_message::assistant(first.text));
  conversation.push_back(chat_message::user("Where is it?"));
  const auto second = answer(ask(request_for(2, conversation, 32)));
  // All of the first turn's prompt (a beginning of this one) came from the cache; its answer's
  // positions were computed one token at a time, not as a prompt, so they are computed again.
  BOOST_CHECK_EQUAL(second.usage.cached_prompt_tokens, first.usage.prompt_tokens);
  const auto want = plain.ask(request_for(2, conversation, 32));
  BOOST_CHECK_EQUAL(second.text, want.text);
  BOOST_CHECK_EQUAL(second.usage.prompt_tokens, want.usage.prompt_tokens);
  BOOST_CHECK_EQUAL(second.usage.completion_tokens, want.usage.completion_tokens);
  // The same request again: all but its last two prompt tokens are cached (two are computed, as
  // a prompt's chunk, for the logits of its end).
  const auto again = answer(ask(request_for(3, conversation, 32)));
  BOOST_CHECK_EQUAL(again.usage.cached_prompt_tokens, again.usage.prompt_tokens - 2);
  BOOST_CHECK_EQUAL(again.text, want.text);
}

BOOST_FIXTURE_TEST_CASE(requests_sharing_a_system_prompt_compute_it_once, engine_fixture) {
  if (!have_model()) return;
  start();
  uncached_engine plain;
  const std::string system = long_system_prompt();
  const char* questions[] = {"What is record 3?", "Summarise record 7.", "Which tool reads logs?",
                             "Is record 11 old?", "Say hello.", "Count to three."};
  // All six arrive at once: the first prefills the system prompt, the others wait for it and
  // copy it.
  std::vector<decltype(self->request(model, reply_timeout, chat_atom::value, chat_request{}))>
    handles;
  std::vector<chat_request> requests;
  for (size_t i = 0; i < std::size(questions); ++i) {
    requests.push_back(request_for(
      i + 1, {chat_message::system(system), chat_message::user(questions[i])}, 24));
    handles.push_back(self->request(model, reply_timeout, chat_atom::value, requests.back()));
  }
  uint64_t cached = 0, prompt = 0;
  for (size_t i = 0; i < handles.size(); ++i) {
    handles[i].receive(
      [&](assistant_turn& t) {
        BOOST_TEST_CONTEXT("request " << i + 1) {
          BOOST_CHECK_GT(t.usage.prompt_tokens, 250u);
          if (i == 0) BOOST_CHECK_EQUAL(t.usage.cached_prompt_tokens, 0u);
          else BOOST_CHECK_GT(t.usage.cached_prompt_tokens, 250u);
          cached += t.usage.cached_prompt_tokens;
          prompt += t.usage.prompt_tokens;
          BOOST_CHECK_EQUAL(t.text, plain.ask(requests[i]).text);
        }
      },
      [&](caf::error& e) { BOOST_ERROR("request failed: " << to_string(e)); });
  }
  BOOST_TEST_MESSAGE("prompt tokens " << prompt << ", from the cache " << cached);
}

BOOST_FIXTURE_TEST_CASE(a_request_cancelled_while_it_waits_for_a_shared_prefill, engine_fixture) {
  if (!have_model()) return;
  // Three requests share a system prompt of ~1,200 tokens, which the first prefills over several
  // steps (256 tokens each, seconds here) while the other two wait for it. The second is
  // cancelled while it waits: it is answered before the first has any text, and the others
  // finish as without it.
  start();
  uncached_engine plain;
  std::string system;
  for (int i = 0; i < 4; ++i) system += long_system_prompt();
  std::vector<chat_request> requests;
  for (uint64_t id = 1; id <= 3; ++id)
    requests.push_back(request_for(id, {chat_message::system(system),
                                        chat_message::user("Say " + std::to_string(id) + ".")},
                                   12));
  requests[0].stream_to = caf::actor_cast<delta_sink_actor>(self);
  std::vector<decltype(self->request(model, reply_timeout, chat_atom::value, chat_request{}))>
    handles;
  for (const auto& r : requests)
    handles.push_back(self->request(model, reply_timeout, chat_atom::value, r));
  // The first step (which admits all three) has started by then; the prefill takes seconds.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  self->send(model, cancel_atom::value, uint64_t{2});
  handles[1].receive(
    [&](assistant_turn& t) {
      BOOST_CHECK_EQUAL(t.finish, finish_reason::cancelled);
      BOOST_CHECK_EQUAL(t.usage.completion_tokens, 0u);
    },
    [&](caf::error& e) { BOOST_ERROR("the cancelled request failed: " << to_string(e)); });
  // Whatever the engine streamed before that reply is in the mailbox now: nothing yet.
  bool text_before = false;
  self->receive([&](delta_atom, const turn_delta&) { text_before = true; },
                caf::after(std::chrono::milliseconds(0)) >> [] {});
  BOOST_CHECK_MESSAGE(!text_before, "the first request had text before the cancel was answered");
  for (size_t i : {size_t{0}, size_t{2}}) {
    handles[i].receive(
      [&](assistant_turn& t) { BOOST_CHECK_EQUAL(t.text, plain.ask(requests[i]).text); },
      [&](caf::error& e) { BOOST_ERROR("request " << i + 1 << " failed: " << to_string(e)); });
  }
  // The cancelled request's sequence held nothing: asked again, it copies the shared prompt.
  requests[1].id = 4;
  const auto again = answer(ask(requests[1]));
  BOOST_CHECK_GT(again.usage.cached_prompt_tokens, 1000u);
  BOOST_CHECK_EQUAL(again.text, plain.ask(requests[1]).text);
}

BOOST_FIXTURE_TEST_CASE(idle_caches_give_way_to_requests_that_need_their_room, engine_fixture) {
  if (!have_model()) return;
  // Room for 160 positions (SmolLM2: 46,080 bytes each, and ~11 positions' worth of pages a
  // sequence may commit beyond its positions): a finished request of ~28 positions stays cached
  // while the same small request fits beside it, and is evicted for one of ~140 positions.
  local_model_config c;
  c.kv_budget_bytes = 160 * 46'080;
  c.context = 512;
  start(c);
  const std::vector<chat_message> small{chat_message::system("Be brief."),
                                        chat_message::user("Say one word.")};
  const auto a = answer(ask(request_for(1, small, 8)));
  const auto a_again = answer(ask(request_for(2, small, 8)));
  BOOST_CHECK_EQUAL(a_again.usage.cached_prompt_tokens, a.usage.prompt_tokens - 2);
  BOOST_CHECK_EQUAL(a_again.text, a.text);
  // The idle cache must go (no wait, no refusal).
  const auto big = answer(ask(request_for(
    3, {chat_message::system("Tell stories."), chat_message::user("A long story, please.")},
    120)));
  BOOST_CHECK(!big.text.empty());
  const auto a_third = answer(ask(request_for(4, small, 8)));
  BOOST_CHECK_LT(a_third.usage.cached_prompt_tokens, 8u);  // only the template's first tokens
  BOOST_CHECK_EQUAL(a_third.text, a.text);
}

namespace {

const char* const read_file_schema =
  R"({"type":"object","properties":{"path":{"type":"string","minLength":1},)"
  R"("max_lines":{"type":"integer"},"encoding":{"enum":["utf-8","latin-1"]}},)"
  R"("required":["path"],"additionalProperties":false})";
const char* const list_dir_schema =
  R"({"type":"object","properties":{"path":{"type":"string"},"recursive":{"type":"boolean"}},)"
  R"("required":["path","recursive"],"additionalProperties":false})";

std::vector<tool_spec> file_tools() {
  return {{"read_file", "Read a text file and return its lines.", read_file_schema},
          {"list_dir", "List the entries of a directory.", list_dir_schema}};
}

/// Runs for the sampled tool-call check: TROUPE_TOOL_RUNS, else a CI-sized 8.
int tool_runs() {
  if (const char* n = std::getenv("TROUPE_TOOL_RUNS"); n && *n) return std::max(1, std::atoi(n));
  return 8;
}

}  // namespace

BOOST_FIXTURE_TEST_CASE(sampled_tool_calls_always_follow_the_schema, engine_fixture) {
  if (!have_model()) return;
  start();
  const auto tools = file_tools();
  const int runs = tool_runs();
  int valid = 0;
  std::vector<decltype(self->request(model, reply_timeout, chat_atom::value, chat_request{}))>
    handles;
  for (int i = 0; i < runs; ++i) {
    auto req = request_for(100 + i, {chat_message::user("Show me the first 20 lines of notes.txt.")},
                           200);
    req.tools = tools;
    req.choice = {tool_choice_mode::required, ""};
    req.sampling.temperature = 1.0f;
    req.sampling.seed = static_cast<uint64_t>(i + 1);
    handles.push_back(self->request(model, reply_timeout, chat_atom::value, req));
  }
  for (int i = 0; i < runs; ++i) {
    handles[static_cast<size_t>(i)].receive(
      [&](assistant_turn& t) {
        BOOST_TEST_CONTEXT("seed " << i + 1 << ": " << t.text) {
          BOOST_CHECK_EQUAL(t.finish, finish_reason::tool_calls);
          BOOST_REQUIRE(!t.tool_calls.empty());
          bool all_valid = true;
          for (const auto& c : t.tool_calls) {
            const char* schema = c.name == "read_file" ? read_file_schema
                                 : c.name == "list_dir" ? list_dir_schema
                                                        : nullptr;
            BOOST_REQUIRE_MESSAGE(schema != nullptr, "unknown tool " << c.name);
            const auto why = json::validate(json::parse(c.arguments), json::parse(schema));
            BOOST_CHECK_MESSAGE(why.empty(), c.name << " " << c.arguments << ": " << why);
            all_valid = all_valid && why.empty();
            BOOST_CHECK_EQUAL(c.id.rfind("call_" + std::to_string(100 + i) + "_", 0), 0u);
          }
          valid += all_valid ? 1 : 0;
        }
      },
      [&](caf::error& e) { BOOST_ERROR("seed " << i + 1 << ": " << to_string(e)); });
  }
  BOOST_TEST_MESSAGE(valid << " of " << runs << " sampled turns made only valid calls");
  BOOST_CHECK_EQUAL(valid, runs);
}

BOOST_FIXTURE_TEST_CASE(a_named_tool_choice_and_streamed_calls, engine_fixture) {
  if (!have_model()) return;
  start();
  auto req = request_for(9, {chat_message::user("What is in the src folder?")}, 120);
  req.tools = file_tools();
  req.choice = {tool_choice_mode::named, "list_dir"};
  req.stream_to = caf::actor_cast<delta_sink_actor>(self);
  auto reply = ask(req);
  auto* turn = std::get_if<assistant_turn>(&reply);
  BOOST_REQUIRE(turn);
  BOOST_REQUIRE_EQUAL(turn->tool_calls.size(), 1u);
  BOOST_CHECK_EQUAL(turn->tool_calls[0].name, "list_dir");
  BOOST_CHECK(json::validate(json::parse(turn->tool_calls[0].arguments),
                             json::parse(list_dir_schema)).empty());
  BOOST_CHECK(turn->text.find("<tool_call>") == std::string::npos);
  // The call was streamed as one complete delta.
  std::vector<turn_delta> calls;
  bool more = true;
  while (more) {
    self->receive(
      [&](delta_atom, const turn_delta& d) {
        if (d.tool_index >= 0) calls.push_back(d);
      },
      caf::after(std::chrono::milliseconds(0)) >> [&] { more = false; });
  }
  BOOST_REQUIRE_EQUAL(calls.size(), 1u);
  BOOST_CHECK_EQUAL(calls[0].tool_name, "list_dir");
  BOOST_CHECK_EQUAL(calls[0].arguments, turn->tool_calls[0].arguments);
  BOOST_CHECK_EQUAL(calls[0].tool_id, turn->tool_calls[0].id);
}

BOOST_FIXTURE_TEST_CASE(a_response_schema_shapes_the_answer, engine_fixture) {
  if (!have_model()) return;
  start();
  const std::string schema =
    R"({"type":"object","properties":{"city":{"type":"string","minLength":1,"maxLength":40},)"
    R"("country":{"type":"string"},"population":{"type":"integer"}},)"
    R"("required":["city","country","population"]})";
  for (int i = 0; i < 3; ++i) {
    auto req = request_for(20 + i, {chat_message::user("Describe Paris as JSON.")}, 120);
    req.response_schema = schema;
    req.sampling.temperature = 0.8f;
    req.sampling.seed = static_cast<uint64_t>(i);
    auto reply = ask(req);
    auto* turn = std::get_if<assistant_turn>(&reply);
    if (!turn) BOOST_FAIL(std::get<error>(reply).render());
    BOOST_TEST_CONTEXT(turn->text) {
      BOOST_CHECK_EQUAL(turn->finish, finish_reason::stop);
      BOOST_CHECK(json::validate(json::parse(turn->text), json::parse(schema)).empty());
    }
  }
}

BOOST_FIXTURE_TEST_CASE(an_f16_kv_cache_admits_twice_the_positions, engine_fixture) {
  if (!have_model()) return;
  // The budget of the test above (160 positions of f32 cache) holds 320 of f16 cache: a request
  // reserving 37 + 250 positions is refused with f32 and answered with f16, and a chat answer is
  // llama.cpp's with its f16 cache.
  local_model_config c;
  c.kv_budget_bytes = 160 * 46'080;
  c.context = 512;
  c.kv_cache_type = "f16";
  start(c);
  const auto cases = chat_cases();
  auto roomy = ask(request_for(1, cases[0].messages, 250));
  BOOST_CHECK(std::holds_alternative<assistant_turn>(roomy));
  const json::value f16_fixture = llama::test::reference_fixture(true);
  bool compared = false;
  for (const json::value& fc : f16_fixture.find("cases")->as_array()) {
    if (fc.find("name")->as_string() != cases[1].name) continue;
    compared = true;
    const auto tok = llama::tokenizer::from_gguf(llama_model::load(
        llama::test::smollm2_path())->file());
    const expected_answer want =
        expected_of(tok, llama::test::ids_of(*fc.find("greedy_tokens")));
    auto got = ask(request_for(2, cases[1].messages, 64));
    BOOST_REQUIRE(std::holds_alternative<assistant_turn>(got));
    BOOST_CHECK_EQUAL(std::get<assistant_turn>(got).text, want.text);
    BOOST_CHECK_EQUAL(std::get<assistant_turn>(got).usage.completion_tokens, want.tokens);
  }
  BOOST_CHECK(compared);
  troupe::actor_system_config cfg32;
  caf::actor_system sys32{cfg32};
  c.kv_cache_type = "f32";
  c.model = llama::test::smollm2_path().string();
  auto model32 = spawn_local_model(sys32, c);
  caf::scoped_actor self32{sys32};
  self32->request(model32, reply_timeout, chat_atom::value, request_for(3, cases[0].messages, 250))
    .receive([&](assistant_turn&) { BOOST_ERROR("the f32 cache admitted 287 positions of 160"); },
             [&](caf::error& e) {
               BOOST_CHECK_EQUAL(from_caf_error(e, "chat").code(), errc::budget_exceeded);
             });
  caf::anon_send_exit(model32, caf::exit_reason::user_shutdown);
  // An unknown cache type is refused when the engine starts, naming the accepted ones.
  c.kv_cache_type = "q8_0";
  try {
    spawn_local_model(sys32, c);
    BOOST_ERROR("no error for kv_cache_type q8_0");
  } catch (const error& e) {
    BOOST_CHECK_EQUAL(e.code(), errc::invalid_argument);
    BOOST_CHECK_NE(e.message().find("f32 or f16"), std::string::npos);
  }
}

BOOST_AUTO_TEST_CASE(a_missing_or_bad_model_file_is_a_clear_error) {
  troupe::actor_system_config cfg;
  caf::actor_system sys{cfg};
  local_model_config c;
  c.model = "/nonexistent/model.gguf";
  try {
    spawn_local_model(sys, c);
    BOOST_ERROR("no error for a missing file");
  } catch (const error& e) {
    BOOST_CHECK_EQUAL(e.code(), errc::not_found);
    BOOST_CHECK_NE(e.message().find("/nonexistent/model.gguf"), std::string::npos);
  }
  c.model = std::string(TROUPE_SOURCE_DIR) + "/README.md";  // not a GGUF file
  BOOST_CHECK_THROW(spawn_local_model(sys, c), error);
  c.model = "smollm2";
  c.threads = 0;
  BOOST_CHECK_THROW(spawn_local_model(sys, c), error);
}

