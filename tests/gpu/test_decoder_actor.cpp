// Decoder actors (include/troupe/gpu/decoder_actor.hpp, decoder_protocol.hpp) on the CPU: the
// step messages through CAF's binary serializer (logits as bytes: -inf and NaN survive), the CPU
// decoder actor against a batch_decoder driven directly (bit-identical logits, same greedy
// tokens), failures that reply with an error and leave the actor serving, and the actor serving
// a second process over loopback (the child drives a greedy continuation through remote_actor).
#define BOOST_TEST_MODULE decoder_actor
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include "caf/all.hpp"
#include "caf/io/all.hpp"
#include "troupe/caf_types.hpp"
#include "troupe/deepseek/batch_decoder.hpp"
#include "troupe/gpu/decoder_actor.hpp"
#include "troupe/gpu/nccl_id.hpp"

namespace gpu = troupe::gpu;
namespace ds = troupe::deepseek;

namespace {

std::filesystem::path fixture() {
  const char* env = std::getenv("TROUPE_SOURCE_DIR");
  return std::filesystem::path(env != nullptr ? env : TROUPE_SOURCE_DIR) / "tests/fixtures/deepseek/k25_int4";
}

struct config : troupe::actor_system_config {
  explicit config(bool network) {
    gpu::add_gpu_message_types(*this);
    if (network) load<caf::io::middleman>();
  }
};

const std::vector<int32_t> prompt_a{1, 2, 3, 4, 5, 6, 7}, prompt_b{300, 17, 42};

// Asks `a` and returns the reply or throws the troupe::error it failed with.
template <class R, class... Ts>
R ask(caf::scoped_actor& self, const gpu::decoder_actor& a, const Ts&... xs) {
  R out{};
  std::string failure;
  troupe::errc code = troupe::errc::none;
  self->request(a, std::chrono::seconds(60), xs...)
      .receive([&](const R& r) { out = r; },
               [&](caf::error& e) {
                 const auto t = troupe::from_caf_error(e, "decoder actor");
                 failure = t.message();
                 code = t.code();
               });
  if (!failure.empty()) throw troupe::error(code, failure);
  return out;
}

// Greedy continuation of `prompt` for `n` tokens through the actor (prefill chunk, then one token
// per step), each step one message.
std::vector<int32_t> greedy_via(caf::scoped_actor& self, const gpu::decoder_actor& a,
                                const std::vector<int32_t>& prompt, int n) {
  const auto seq = ask<uint32_t>(self, a, gpu::gpu_open_atom::value, int64_t{64});
  std::vector<int32_t> out;
  gpu::decode_batch b;
  b.add(seq, prompt.data(), prompt.size());
  for (int i = 0; i < n; ++i) {
    const auto r = ask<gpu::decode_result>(self, a, gpu::gpu_decode_atom::value, b);
    out.push_back(r.greedy.at(0));
    b = {};
    b.add(seq, &out.back(), 1);
  }
  ask<bool>(self, a, gpu::gpu_close_atom::value, seq);
  return out;
}

std::vector<int32_t> greedy_direct(ds::batch_decoder& d, const std::vector<int32_t>& prompt, int n) {
  const uint32_t seq = d.open(64);
  ds::batch_decoder::chunk ch{seq, prompt};
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) {
    const auto logits = d.decode({&ch, 1});
    out.push_back(static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin()));
    ch.tokens = {&out.back(), 1};
  }
  d.close(seq);
  return out;
}

bool read_exactly(int fd, void* out, size_t n, int ms) {
  auto* p = static_cast<char*>(out);
  while (n > 0) {
    pollfd pfd{fd, POLLIN, 0};
    if (::poll(&pfd, 1, ms) != 1) return false;
    const ssize_t got = ::read(fd, p, n);
    if (got <= 0) return false;
    p += got;
    n -= static_cast<size_t>(got);
  }
  return true;
}

}  // namespace

BOOST_AUTO_TEST_CASE(messages_round_trip_with_non_finite_logits) {
  config cfg(false);
  caf::actor_system sys{cfg};
  gpu::decode_batch b;
  const int32_t t1[] = {5, 6, 7}, t2[] = {9};
  b.add(3, t1, 3);
  b.add(8, t2, 1);
  b.want_logits = true;
  BOOST_TEST(b.well_formed());
  BOOST_TEST(b.offsets == (std::vector<uint32_t>{0, 3, 4}), boost::test_tools::per_element());
  const std::vector<float> logits{1.5f, -std::numeric_limits<float>::infinity(), std::nanf(""),
                                  std::numeric_limits<float>::infinity()};
  gpu::decode_result r;
  r.greedy = {3, 0};
  r.logits.resize(logits.size() * 4);
  std::memcpy(r.logits.data(), logits.data(), r.logits.size());
  std::vector<char> buf;
  {
    caf::binary_serializer sink{sys, buf};
    auto msg = caf::make_message(b, r);
    BOOST_TEST_REQUIRE(!sink(msg));
  }
  caf::message got;
  {
    caf::binary_deserializer source{sys, buf};
    BOOST_TEST_REQUIRE(!source(got));
  }
  BOOST_TEST_REQUIRE((got.match_elements<gpu::decode_batch, gpu::decode_result>()));
  const auto& b2 = got.get_as<gpu::decode_batch>(0);
  const auto& r2 = got.get_as<gpu::decode_result>(1);
  BOOST_TEST(b2.seqs == b.seqs, boost::test_tools::per_element());
  BOOST_TEST(b2.tokens == b.tokens, boost::test_tools::per_element());
  BOOST_TEST(b2.offsets == b.offsets, boost::test_tools::per_element());
  BOOST_TEST(b2.want_logits);
  BOOST_TEST(r2.greedy == r.greedy, boost::test_tools::per_element());
  BOOST_TEST(r2.logits == r.logits, boost::test_tools::per_element());  // bytes: NaN and ±inf too
  // offsets that do not describe the tokens
  gpu::decode_batch bad = b;
  bad.offsets = {0, 5, 4};
  BOOST_TEST(!bad.well_formed());
  bad.offsets = {0, 3};
  BOOST_TEST(!bad.well_formed());
}

BOOST_AUTO_TEST_CASE(cpu_actor_equals_the_decoder_driven_directly) {
  config cfg(false);
  caf::actor_system sys{cfg};
  auto m = ds::model::load(fixture());
  auto a = gpu::spawn_cpu_decoder_actor(sys, m, 2);
  caf::scoped_actor self{sys};
  ds::batch_decoder direct(m, {.threads = 2});
  const int64_t V = m->cfg().vocab_size;
  // Two sequences in one message, logits asked for.
  const auto s1 = ask<uint32_t>(self, a, gpu::gpu_open_atom::value, int64_t{32});
  const auto s2 = ask<uint32_t>(self, a, gpu::gpu_open_atom::value, int64_t{32});
  gpu::decode_batch b;
  b.add(s1, prompt_a.data(), prompt_a.size());
  b.add(s2, prompt_b.data(), prompt_b.size());
  b.want_logits = true;
  const auto r = ask<gpu::decode_result>(self, a, gpu::gpu_decode_atom::value, b);
  const uint32_t d1 = direct.open(32), d2 = direct.open(32);
  const ds::batch_decoder::chunk chunks[] = {{d1, prompt_a}, {d2, prompt_b}};
  const auto want = direct.decode(chunks);
  BOOST_TEST_REQUIRE(r.logits.size() == static_cast<size_t>(2 * V) * 4);
  BOOST_TEST(std::memcmp(r.logits.data(), want.data(), r.logits.size()) == 0);
  for (int i = 0; i < 2; ++i) {
    const auto row = want.subspan(static_cast<size_t>(i * V), static_cast<size_t>(V));
    BOOST_TEST(r.greedy[static_cast<size_t>(i)] == std::max_element(row.begin(), row.end()) - row.begin());
  }
  ask<bool>(self, a, gpu::gpu_close_atom::value, s1);
  ask<bool>(self, a, gpu::gpu_close_atom::value, s2);
  // Greedy continuations, one message per step.
  BOOST_TEST(greedy_via(self, a, prompt_a, 8) == greedy_direct(direct, prompt_a, 8),
             boost::test_tools::per_element());
  self->send_exit(a, caf::exit_reason::user_shutdown);
}

BOOST_AUTO_TEST_CASE(failures_reply_errors_and_the_actor_keeps_serving) {
  config cfg(false);
  caf::actor_system sys{cfg};
  auto m = ds::model::load(fixture());
  auto a = gpu::spawn_cpu_decoder_actor(sys, m, 1);
  caf::scoped_actor self{sys};
  auto code_of = [&](auto f) {
    try {
      f();
    } catch (const troupe::error& e) {
      BOOST_TEST_MESSAGE(e.message());
      return e.code();
    }
    return troupe::errc::none;
  };
  BOOST_TEST(code_of([&] { ask<uint32_t>(self, a, gpu::gpu_open_atom::value, int64_t{0}); }) ==
             troupe::errc::invalid_argument);
  gpu::decode_batch unknown;
  unknown.add(12345, prompt_a.data(), prompt_a.size());
  BOOST_TEST(code_of([&] { ask<gpu::decode_result>(self, a, gpu::gpu_decode_atom::value, unknown); }) ==
             troupe::errc::invalid_argument);
  const auto s = ask<uint32_t>(self, a, gpu::gpu_open_atom::value, int64_t{4});
  gpu::decode_batch too_long;
  too_long.add(s, prompt_a.data(), prompt_a.size());  // 7 tokens into 4 positions
  BOOST_TEST(code_of([&] { ask<gpu::decode_result>(self, a, gpu::gpu_decode_atom::value, too_long); }) ==
             troupe::errc::budget_exceeded);
  gpu::decode_batch malformed = too_long;
  malformed.offsets.back() = 3;
  BOOST_TEST(code_of([&] { ask<gpu::decode_result>(self, a, gpu::gpu_decode_atom::value, malformed); }) ==
             troupe::errc::invalid_argument);
  // Still serving: the failed steps changed nothing.
  gpu::decode_batch ok;
  ok.add(s, prompt_b.data(), prompt_b.size());
  BOOST_TEST(ask<gpu::decode_result>(self, a, gpu::gpu_decode_atom::value, ok).greedy.size() == 1u);
  self->send_exit(a, caf::exit_reason::user_shutdown);
}

BOOST_AUTO_TEST_CASE(serves_another_process_over_loopback) {
  int port_pipe[2], result_pipe[2];
  BOOST_TEST_REQUIRE(::pipe(port_pipe) == 0);
  BOOST_TEST_REQUIRE(::pipe(result_pipe) == 0);
  constexpr int n = 6;
  const pid_t pid = ::fork();  // before this process starts an actor_system
  BOOST_TEST_REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(port_pipe[1]);
    ::close(result_pipe[0]);
    int rc = 0;
    uint16_t port = 0;
    if (!read_exactly(port_pipe[0], &port, sizeof port, 30000)) ::_exit(2);
    {
      config cfg(true);
      caf::actor_system sys{cfg};
      auto a = caf::io::remote_actor<gpu::decoder_actor>(sys, "127.0.0.1", port);
      if (!a) ::_exit(3);
      caf::scoped_actor self{sys};
      try {
        const auto got = greedy_via(self, *a, prompt_a, n);
        if (::write(result_pipe[1], got.data(), got.size() * 4) != static_cast<ssize_t>(got.size() * 4)) rc = 4;
      } catch (const std::exception&) {
        rc = 5;
      }
    }
    ::_exit(rc);
  }
  ::close(port_pipe[0]);
  ::close(result_pipe[1]);
  std::vector<int32_t> got(n, -1), want;
  bool received = false;
  {
    config cfg(true);
    caf::actor_system sys{cfg};
    auto m = ds::model::load(fixture());
    auto a = gpu::spawn_cpu_decoder_actor(sys, m, 1);
    auto port = caf::io::publish(a, 0, "127.0.0.1");
    BOOST_TEST_REQUIRE(static_cast<bool>(port));
    const uint16_t p = *port;
    BOOST_TEST_REQUIRE(::write(port_pipe[1], &p, sizeof p) == static_cast<ssize_t>(sizeof p));
    received = read_exactly(result_pipe[0], got.data(), got.size() * 4, 60000);
    caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
    ds::batch_decoder direct(m, {.threads = 1});
    want = greedy_direct(direct, prompt_a, n);
  }
  int status = 0;
  BOOST_TEST_REQUIRE(::waitpid(pid, &status, 0) == pid);
  BOOST_TEST(WIFEXITED(status));
  BOOST_TEST(WEXITSTATUS(status) == 0);
  BOOST_TEST_REQUIRE(received);
  BOOST_TEST(got == want, boost::test_tools::per_element());
  ::close(port_pipe[1]);
  ::close(result_pipe[0]);
}
