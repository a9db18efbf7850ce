#pragma once
/// Binding troupe to CAF: registering every message type, and converting between troupe::error
/// and caf::error (which is what failed requests carry).

#include "caf/actor_system_config.hpp"
#include "caf/error.hpp"
#include "troupe/error.hpp"

namespace troupe {

/// The caf::error category of troupe errors.
constexpr caf::atom_value error_category = caf::atom("troupe");

/// Registers every troupe message type (and vectors of them) and the troupe error category with
/// `cfg`. Call once per configuration, on every node, before constructing the actor_system.
void add_message_types(caf::actor_system_config& cfg);

/// An actor_system_config with troupe's types registered.
class actor_system_config : public caf::actor_system_config {
 public:
  actor_system_config();
};

/// Wraps a troupe::error so it can be delivered as the failure of a request.
caf::error to_caf_error(const error& e);

/// Recovers a troupe::error from a failed request: the original one if it was a troupe error,
/// else a translation (request_timeout -> errc::timeout, receiver down -> errc::tool_failed ...)
/// whose message says which operation (`what`) failed.
error from_caf_error(const caf::error& e, std::string_view what);

}  // namespace troupe
