#pragma once
/// The one error type of troupe: a code a program can branch on and a message a person can act on.

#include <cstdint>
#include <exception>
#include <iosfwd>
#include <string>
#include <string_view>
#include <utility>

#include "caf/meta/type_name.hpp"

namespace troupe {

/// What kind of failure happened. Stable numbers: they cross process boundaries.
enum class errc : uint8_t {
  none = 0,
  invalid_argument = 1,     ///< A caller passed a value that cannot be used.
  parse_error = 2,          ///< A file or message is not well formed (JSON, TOML, GGUF, ...).
  not_found = 3,            ///< A named thing (file, agent, model) does not exist.
  unknown_tool = 4,         ///< The model called a tool that is not available to it.
  malformed_arguments = 5,  ///< Tool arguments are not valid JSON or violate the tool's schema.
  invalid_tool_call = 6,    ///< A tool call is unusable as given (empty or duplicate id, no name).
  budget_exceeded = 7,      ///< A run budget (sub-agents, tool calls, steps, tokens, deadline) is spent.
  timeout = 8,              ///< Something did not answer in time.
  cancelled = 9,            ///< The run or request was cancelled.
  tool_failed = 10,         ///< A tool ran and reported failure.
  model_failed = 11,        ///< The model backend failed to produce a turn.
  io_error = 12,            ///< The operating system refused a file, socket or process operation.
  unsupported = 13,         ///< A valid request for something troupe does not do (yet).
  internal = 14,            ///< A bug in troupe: please report it.
};

/// Short lowercase name of a code, e.g. "budget_exceeded".
const char* to_string(errc code) noexcept;
std::ostream& operator<<(std::ostream& os, errc code);

/// A failure with a code and a message for people that says what went wrong, where, and what to do.
/// Thrown by parsers and loaders, carried in actor messages, and rendered to models as tool errors.
class error : public std::exception {
 public:
  error() = default;
  error(errc code, std::string message) : code_(code), message_(std::move(message)) {}

  errc code() const noexcept { return code_; }
  const std::string& message() const noexcept { return message_; }
  const char* what() const noexcept override { return message_.c_str(); }

  /// True when this holds a failure (code != errc::none).
  explicit operator bool() const noexcept { return code_ != errc::none; }

  /// "budget_exceeded: tool-call budget of 1500 calls per run is spent ..."
  std::string render() const;

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, error& x) {
    return f(caf::meta::type_name("troupe.error"), x.code_, x.message_);
  }

  friend bool operator==(const error& a, const error& b) noexcept {
    return a.code_ == b.code_ && a.message_ == b.message_;
  }

 private:
  errc code_ = errc::none;
  std::string message_;
};

}  // namespace troupe
