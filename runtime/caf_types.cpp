#include "troupe/caf_types.hpp"

#include <string>

#include "caf/all.hpp"
#include "troupe/agent.hpp"
#include "troupe/message.hpp"
#include "troupe/model.hpp"
#include "troupe/plugin_loader.hpp"
#include "troupe/tool.hpp"

namespace troupe {

void add_message_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<error>("troupe.error");
  cfg.add_message_type<tool_spec>("troupe.tool_spec");
  cfg.add_message_type<tool_call>("troupe.tool_call");
  cfg.add_message_type<tool_result>("troupe.tool_result");
  cfg.add_message_type<tool_options>("troupe.tool_options");
  cfg.add_message_type<content_part>("troupe.content_part");
  cfg.add_message_type<chat_message>("troupe.chat_message");
  cfg.add_message_type<usage>("troupe.usage");
  cfg.add_message_type<token_bias>("troupe.token_bias");
  cfg.add_message_type<sampling_params>("troupe.sampling_params");
  cfg.add_message_type<tool_choice>("troupe.tool_choice");
  cfg.add_message_type<top_logprob>("troupe.top_logprob");
  cfg.add_message_type<token_logprob>("troupe.token_logprob");
  cfg.add_message_type<turn_delta>("troupe.turn_delta");
  cfg.add_message_type<chat_request>("troupe.chat_request");
  cfg.add_message_type<assistant_turn>("troupe.assistant_turn");
  cfg.add_message_type<agent_result>("troupe.agent_result");
  cfg.add_message_type<model_actor>("troupe.model_actor");
  cfg.add_message_type<tool_actor>("troupe.tool_actor");
  cfg.add_message_type<tool_registry_actor>("troupe.tool_registry_actor");
  cfg.add_message_type<delta_sink_actor>("troupe.delta_sink_actor");
  cfg.add_message_type<agent_actor>("troupe.agent_actor");
  cfg.add_message_type<plugin_config>("troupe.plugin_config");
  cfg.add_message_type<plugin_info>("troupe.plugin_info");
  cfg.add_message_type<plugin_loader_actor>("troupe.plugin_loader_actor");
  cfg.add_error_category(error_category, [](uint8_t code, caf::atom_value, const caf::message& ctx) {
    std::string out = to_string(static_cast<errc>(code));
    if (ctx.match_elements<std::string>()) {
      out += ": ";
      out += ctx.get_as<std::string>(0);
    }
    return out;
  });
}

actor_system_config::actor_system_config() { troupe::add_message_types(*this); }

caf::error to_caf_error(const error& e) {
  return caf::error{static_cast<uint8_t>(e.code()), error_category, caf::make_message(e.message())};
}

error from_caf_error(const caf::error& e, std::string_view what) {
  if (e.category() == error_category) {
    std::string msg;
    if (e.context().match_elements<std::string>()) msg = e.context().get_as<std::string>(0);
    return error{static_cast<errc>(e.code()), std::move(msg)};
  }
  std::string w{what};
  if (e.category() == caf::atom("system")) {
    switch (static_cast<caf::sec>(e.code())) {
      case caf::sec::request_timeout:
        return error{errc::timeout, w + " did not answer in time"};
      case caf::sec::request_receiver_down:
        return error{errc::tool_failed, w + " is no longer running (its actor is down)"};
      case caf::sec::runtime_error:
        return error{errc::internal, w + " threw an exception and stopped"};
      case caf::sec::unexpected_message:
        return error{errc::internal, w + " does not understand the request (protocol mismatch)"};
      default: break;
    }
  }
  return error{errc::internal, w + " failed: " + caf::to_string(e)};
}

}  // namespace troupe
