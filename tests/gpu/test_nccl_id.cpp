// The NCCL unique id as a message: 128 bytes through CAF's binary serializer (alone and inside a
// caf::message, which needs the registered type), the bootstrap actor's protocol, and a second
// process (a fork with its own actor_system) that fetches the id from the published bootstrap
// actor over loopback, as rank 1 of a two-process communicator would before ncclCommInitRank.
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <chrono>
#include <cstdint>
#include <random>
#include <vector>

#include "caf/all.hpp"
#include "caf/io/all.hpp"
#include "troupe/caf_types.hpp"
#include "troupe/gpu/nccl_id.hpp"

namespace gpu = troupe::gpu;

namespace {

gpu::nccl_unique_id random_id(uint32_t seed) {
  std::mt19937 rng(seed);
  gpu::nccl_unique_id id;
  for (auto& b : id.bytes) b = static_cast<uint8_t>(rng());
  id.bytes[0] = 0;  // NUL, 0x80 and 0xFF bytes must survive: the id is not text
  id.bytes[1] = 0x80;
  id.bytes[127] = 0xFF;
  return id;
}

struct config : troupe::actor_system_config {
  explicit config(bool network) {
    gpu::add_gpu_message_types(*this);
    if (network) load<caf::io::middleman>();
  }
};

// Reads exactly n bytes from fd, waiting at most `ms` for each chunk. False on timeout or EOF.
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

// Rank 1 in the child process: its own actor_system, the bootstrap actor by host and port.
// Writes the id and one byte (1: a second join was refused) to `out`. Exit code 0 on success.
int child_rank(int port_fd, int out) {
  uint16_t port = 0;
  if (!read_exactly(port_fd, &port, sizeof port, 20000)) return 2;
  int rc = 0;
  {
    config cfg(true);
    caf::actor_system sys{cfg};
    auto boot = caf::io::remote_actor<gpu::nccl_bootstrap_actor>(sys, "127.0.0.1", port);
    if (!boot) return 3;
    caf::scoped_actor self{sys};
    self->request(*boot, std::chrono::seconds(10), gpu::nccl_join_atom::value, int32_t{1}, int32_t{2})
        .receive([&](const gpu::nccl_unique_id& id) {
                   if (::write(out, id.bytes.data(), id.bytes.size()) != 128) rc = 4;
                 },
                 [&](caf::error&) { rc = 5; });
    uint8_t refused = 0;
    self->request(*boot, std::chrono::seconds(10), gpu::nccl_join_atom::value, int32_t{1}, int32_t{2})
        .receive([&](const gpu::nccl_unique_id&) {}, [&](caf::error&) { refused = 1; });
    if (::write(out, &refused, 1) != 1) rc = 4;
  }
  return rc;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(nccl_id_suite)

BOOST_AUTO_TEST_CASE(binary_serializer_round_trip) {
  config cfg(false);
  caf::actor_system sys{cfg};
  const auto id = random_id(7);
  std::vector<char> buf;
  {
    caf::binary_serializer sink{sys, buf};
    BOOST_TEST_REQUIRE(!sink(const_cast<gpu::nccl_unique_id&>(id)));
  }
  BOOST_TEST(buf.size() == 128u);  // a fixed-size array: the bytes and nothing else
  gpu::nccl_unique_id back;
  {
    caf::binary_deserializer source{sys, buf};
    BOOST_TEST_REQUIRE(!source(back));
  }
  BOOST_TEST((back == id));
  // Inside a message (what crosses a node boundary): needs the registered type name.
  auto msg = caf::make_message(id);
  std::vector<char> mbuf;
  {
    caf::binary_serializer sink{sys, mbuf};
    BOOST_TEST_REQUIRE(!sink(msg));
  }
  caf::message got;
  {
    caf::binary_deserializer source{sys, mbuf};
    BOOST_TEST_REQUIRE(!source(got));
  }
  BOOST_TEST_REQUIRE(got.match_elements<gpu::nccl_unique_id>());
  BOOST_TEST((got.get_as<gpu::nccl_unique_id>(0) == id));
}

BOOST_AUTO_TEST_CASE(bootstrap_protocol) {
  config cfg(false);
  caf::actor_system sys{cfg};
  const auto id = random_id(11);
  auto boot = gpu::spawn_nccl_bootstrap(sys, id, 3);
  caf::scoped_actor self{sys};
  auto join = [&](int32_t rank, int32_t ranks) -> std::string {  // "" on success
    std::string out = "no reply";
    self->request(boot, std::chrono::seconds(5), gpu::nccl_join_atom::value, rank, ranks)
        .receive([&](const gpu::nccl_unique_id& got) { out = got == id ? "" : "wrong id"; },
                 [&](caf::error& e) { out = troupe::from_caf_error(e, "join").message(); });
    return out;
  };
  BOOST_TEST(join(2, 3) == "");
  BOOST_TEST(join(1, 3) == "");
  BOOST_TEST(join(1, 3) == "nccl bootstrap: rank 1 joined twice");
  BOOST_TEST(join(0, 3).find("rank 0 cannot join") != std::string::npos);
  BOOST_TEST(join(3, 3).find("rank 3 cannot join") != std::string::npos);
  BOOST_TEST(join(1, 4).find("expects 4 ranks, the communicator has 3") != std::string::npos);
  BOOST_CHECK_THROW(gpu::spawn_nccl_bootstrap(sys, id, 0), troupe::error);
  self->send_exit(boot, caf::exit_reason::user_shutdown);
}

BOOST_AUTO_TEST_CASE(id_reaches_another_process_over_loopback) {
  int port_pipe[2], result_pipe[2];
  BOOST_TEST_REQUIRE(::pipe(port_pipe) == 0);
  BOOST_TEST_REQUIRE(::pipe(result_pipe) == 0);
  // Fork before this process starts an actor_system: the child must not inherit its threads.
  const pid_t pid = ::fork();
  BOOST_TEST_REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(port_pipe[1]);
    ::close(result_pipe[0]);
    ::_exit(child_rank(port_pipe[0], result_pipe[1]));
  }
  ::close(port_pipe[0]);
  ::close(result_pipe[1]);
  const auto id = random_id(13);
  std::vector<uint8_t> got(129, 0);
  bool received = false;
  {
    config cfg(true);
    caf::actor_system sys{cfg};
    auto boot = gpu::spawn_nccl_bootstrap(sys, id, 2);
    auto port = caf::io::publish(boot, 0, "127.0.0.1");
    BOOST_TEST_REQUIRE(static_cast<bool>(port));
    const uint16_t p = *port;
    BOOST_TEST_REQUIRE(::write(port_pipe[1], &p, sizeof p) == static_cast<ssize_t>(sizeof p));
    received = read_exactly(result_pipe[0], got.data(), got.size(), 20000);
    caf::anon_send_exit(boot, caf::exit_reason::user_shutdown);
  }
  int status = 0;
  BOOST_TEST_REQUIRE(::waitpid(pid, &status, 0) == pid);
  BOOST_TEST(WIFEXITED(status));
  BOOST_TEST(WEXITSTATUS(status) == 0);
  BOOST_TEST_REQUIRE(received);
  BOOST_TEST(std::equal(id.bytes.begin(), id.bytes.end(), got.begin()));
  BOOST_TEST(got[128] == 1);  // the second join of rank 1 was refused across the wire too
  ::close(port_pipe[1]);
  ::close(result_pipe[0]);
}

BOOST_AUTO_TEST_SUITE_END()
