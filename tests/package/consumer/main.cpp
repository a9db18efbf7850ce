// Uses libtroupe and CAF through the installed troupe package; prints three lines that the
// package_consumer test compares exactly, and exits non-zero if anything is off.
#include <chrono>
#include <iostream>
#include <string>

#include "caf/all.hpp"
#include "caf/io/middleman.hpp"
#include "troupe/error.hpp"
#include "troupe/tool_call.hpp"

int main() {
  // error::render() is defined in libtroupe, so this line proves the library links and loads.
  troupe::error err{troupe::errc::timeout,
                    "tool 'search' did not answer within 30 s; raise the tool timeout"};
  troupe::tool_call call{"call_1", "search", R"({"q":"actors"})"};
  std::cout << "error: " << err.render() << '\n';
  // deep_to_string goes through the inspect() overload the header declares for CAF.
  std::cout << "tool_call: " << caf::deep_to_string(call) << '\n';

  caf::actor_system_config cfg;
  cfg.load<caf::io::middleman>();  // needs libcaf_io, which troupe::troupe brings in
  caf::actor_system sys{cfg};
  // The factor is a spawn argument: CAF 0.17 binds a reference to a null tuple when a function
  // actor is spawned with none, which UBSan (the dev preset) reports.
  auto multiplier = sys.spawn(
      [](int factor) -> caf::behavior { return {[factor](int x) { return x * factor; }}; }, 2);
  caf::scoped_actor self{sys};
  int answer = 0;
  std::string failure;
  self->request(multiplier, std::chrono::seconds(30), 21)
      .receive([&](int y) { answer = y; }, [&](caf::error& e) { failure = sys.render(e); });
  if (!failure.empty() || answer != 42) {
    std::cerr << "consumer: the actor did not answer 42: " << failure << '\n';
    return 1;
  }
  std::cout << "caf: 21 * 2 = " << answer << " from a spawned actor\n";
  return 0;
}
