#include "troupe/message.hpp"

#include "troupe/model.hpp"

#include <ostream>

namespace troupe {

const char* to_string(role r) noexcept {
  switch (r) {
    case role::system: return "system";
    case role::user: return "user";
    case role::assistant: return "assistant";
    case role::tool: return "tool";
  }
  return "unknown";
}

const char* to_string(part_kind k) noexcept {
  switch (k) {
    case part_kind::text: return "text";
    case part_kind::image_url: return "image_url";
    case part_kind::image_data: return "image_data";
  }
  return "unknown";
}

const char* to_string(finish_reason r) noexcept {
  switch (r) {
    case finish_reason::stop: return "stop";
    case finish_reason::length: return "length";
    case finish_reason::tool_calls: return "tool_calls";
    case finish_reason::cancelled: return "cancelled";
    case finish_reason::error: return "error";
  }
  return "unknown";
}

std::ostream& operator<<(std::ostream& os, role r) { return os << to_string(r); }
std::ostream& operator<<(std::ostream& os, part_kind k) { return os << to_string(k); }
std::ostream& operator<<(std::ostream& os, finish_reason r) { return os << to_string(r); }

std::string chat_message::text() const {
  if (content.size() == 1 && content.front().kind == part_kind::text) return content.front().value;
  std::string out;
  for (const auto& p : content)
    if (p.kind == part_kind::text) out += p.value;
  return out;
}

chat_message chat_message::system(std::string text) {
  chat_message m;
  m.role = role::system;
  m.content.push_back(content_part::text(std::move(text)));
  return m;
}

chat_message chat_message::user(std::string text) {
  chat_message m;
  m.role = role::user;
  m.content.push_back(content_part::text(std::move(text)));
  return m;
}

chat_message chat_message::assistant(std::string text, std::vector<tool_call> calls,
                                     std::string reasoning) {
  chat_message m;
  m.role = role::assistant;
  if (!text.empty()) m.content.push_back(content_part::text(std::move(text)));
  m.tool_calls = std::move(calls);
  m.reasoning = std::move(reasoning);
  return m;
}

chat_message chat_message::tool(const tool_call& call, const tool_result& result) {
  chat_message m;
  m.role = role::tool;
  m.content.push_back(content_part::text(result.content));
  m.tool_call_id = call.id;
  m.name = call.name;
  m.is_error = result.is_error;
  return m;
}

}  // namespace troupe
