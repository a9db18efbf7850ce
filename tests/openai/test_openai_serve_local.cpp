// troupe's own OpenAI backend as the client of the OpenAI-compatible server over the real local
// engine (the embedded SmolLM2): a swarm fanned out over HTTP answers exactly what the same swarm
// answers on the engine directly (greedy decoding, so the HTTP path must be transparent), and the
// server counts the completions. Exits 77 (skipped) when the model is not installed.
#define BOOST_TEST_MODULE openai_serve_local
#define BOOST_TEST_NO_MAIN
#include <boost/test/unit_test.hpp>
#include <cstdio>
#include <filesystem>

#include "troupe/local_model.hpp"
#include "troupe/openai_model.hpp"
#include "troupe/openai_server.hpp"
#include "troupe_fixture.hpp"

using namespace troupe;
using namespace std::chrono_literals;
using troupe::testing::swarm_fixture;

BOOST_FIXTURE_TEST_CASE(a_swarm_over_http_answers_as_on_the_engine_directly, swarm_fixture) {
  local_model_config lc;
  lc.max_batch = 8;
  lc.default_max_tokens = 20;
  auto engine = spawn_local_model(sys, lc);
  models.push_back(engine);
  openai_server_options so;
  so.port = 0;
  so.model_id = "smollm2";
  openai_server server{sys, engine, so};

  openai_config oc;
  oc.base_url = server.base_url();
  oc.model = "smollm2";
  oc.api_key_env = "";
  oc.timeout = 120s;
  auto over_http = spawn_openai_model(sys, oc);
  models.push_back(over_http);

  agent_config worker;
  worker.name = "worker";
  worker.system_prompt = "You answer in one short sentence.";
  const std::vector<std::string> items = {"the Moon", "Paris", "bees"};
  const std::string prompt = "Tell me one fact about {{item}}.";

  run_report via_http_report;
  std::vector<agent_result> via_http;
  {
    swarm sw{sys, over_http, registry};
    via_http = sw.fan_out(worker, prompt, items, &via_http_report);
  }
  std::vector<agent_result> direct;
  {
    swarm sw{sys, engine, registry};
    direct = sw.fan_out(worker, prompt, items);
  }
  BOOST_REQUIRE(via_http.size() == items.size());
  BOOST_REQUIRE(direct.size() == items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    BOOST_TEST_CONTEXT(items[i]) {
      BOOST_TEST(via_http[i].ok(), via_http[i].failure.render());
      BOOST_TEST(direct[i].ok(), direct[i].failure.render());
      BOOST_TEST(!via_http[i].text.empty());
      BOOST_TEST(via_http[i].text == direct[i].text);
      BOOST_TEST(via_http[i].tokens.prompt_tokens == direct[i].tokens.prompt_tokens);
      BOOST_TEST(via_http[i].tokens.completion_tokens == direct[i].tokens.completion_tokens);
      BOOST_TEST(via_http[i].tokens.completion_tokens > 0u);
      BOOST_TEST_MESSAGE(items[i] << ": " << via_http[i].text);
    }
  }
  auto c = server.counters();
  BOOST_TEST(c.completions == items.size());
  BOOST_TEST(c.errors == 0u);
}

int main(int argc, char** argv) {
  auto model = default_model_path();
  if (!std::filesystem::exists(model)) {
    std::printf("skipped: %s is not installed (scripts/install-deps installs it)\n",
                model.string().c_str());
    return 77;
  }
  return boost::unit_test::unit_test_main(&init_unit_test, argc, argv);
}
