#include "troupe/error.hpp"

#include <ostream>

namespace troupe {

const char* to_string(errc code) noexcept {
  switch (code) {
    case errc::none: return "none";
    case errc::invalid_argument: return "invalid_argument";
    case errc::parse_error: return "parse_error";
    case errc::not_found: return "not_found";
    case errc::unknown_tool: return "unknown_tool";
    case errc::malformed_arguments: return "malformed_arguments";
    case errc::invalid_tool_call: return "invalid_tool_call";
    case errc::budget_exceeded: return "budget_exceeded";
    case errc::timeout: return "timeout";
    case errc::cancelled: return "cancelled";
    case errc::tool_failed: return "tool_failed";
    case errc::model_failed: return "model_failed";
    case errc::io_error: return "io_error";
    case errc::unsupported: return "unsupported";
    case errc::internal: return "internal";
  }
  return "unknown";
}

std::ostream& operator<<(std::ostream& os, errc code) { return os << to_string(code); }

std::string error::render() const {
  std::string out = to_string(code_);
  if (!message_.empty()) {
    out += ": ";
    out += message_;
  }
  return out;
}

}  // namespace troupe
