// Tool calls in model text (see troupe/formats/tool_calls.hpp).

#include "troupe/formats/tool_calls.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <string>
#include <variant>
#include <vector>

#include "troupe/error.hpp"
#include "troupe/json.hpp"

namespace troupe {

namespace {

constexpr std::string_view hermes_open = "<tool_call>";
constexpr std::string_view hermes_close = "</tool_call>";
constexpr std::string_view kimi_section_begin = "<|tool_calls_section_begin|>";
constexpr std::string_view kimi_section_end = "<|tool_calls_section_end|>";
constexpr std::string_view kimi_call_begin = "<|tool_call_begin|>";
constexpr std::string_view kimi_argument_begin = "<|tool_call_argument_begin|>";
constexpr std::string_view kimi_call_end = "<|tool_call_end|>";

/// Length of the longest suffix of `s` that is a proper prefix of `marker`.
size_t held_prefix(std::string_view s, std::string_view marker) {
  for (size_t k = std::min(s.size(), marker.size() - 1); k > 0; --k) {
    if (s.substr(s.size() - k) == marker.substr(0, k)) return k;
  }
  return 0;
}

std::string excerpt(std::string_view s) {
  constexpr size_t limit = 120;
  std::string out{s.substr(0, limit)};
  if (s.size() > limit) out += "...";
  return out;
}

bool is_space(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

[[noreturn]] void malformed(std::string_view what, std::string_view body) {
  throw error(errc::parse_error,
              std::string("malformed tool call: ") + std::string(what) + " in `" + excerpt(body) +
                "`; the call was dropped, not run");
}

/// Arguments as canonical JSON text: an object, or a string holding one (some models quote it).
std::string arguments_text(const json::value* args, std::string_view body) {
  if (args == nullptr) return "{}";
  if (args->is_string()) {
    json::value inner;
    try {
      inner = json::parse(args->as_string(), "tool-call arguments");
    } catch (const error&) {
      malformed("its arguments are a string that is not JSON", body);
    }
    if (!inner.is_object()) malformed("its arguments are not a JSON object", body);
    return json::dump(inner);
  }
  if (!args->is_object()) malformed("its arguments are not a JSON object", body);
  return json::dump(*args);
}

}  // namespace

tool_call_parser::tool_call_parser(tool_call_syntax syntax) : syntax_(syntax) {}

void tool_call_parser::close_call(std::string_view body, output& out) {
  tool_call call;
  if (syntax_ == tool_call_syntax::hermes) {
    const auto text = trim(body);
    json::value v;
    try {
      v = json::parse(text, "tool call");
    } catch (const error& e) {
      malformed("its JSON does not parse (" + e.message() + ")", text);
    }
    if (!v.is_object()) malformed("it is not a JSON object", text);
    const json::value* name = v.find("name");
    if (name == nullptr || !name->is_string() || name->as_string().empty())
      malformed("it has no \"name\" string", text);
    const json::value* args = v.find("arguments");
    if (args == nullptr) args = v.find("parameters");
    call.id = "call_" + std::to_string(calls_);
    call.name = name->as_string();
    call.arguments = arguments_text(args, text);
  } else {
    const size_t arg = body.find(kimi_argument_begin);
    if (arg == std::string_view::npos) malformed("it has no <|tool_call_argument_begin|>", body);
    const auto id = trim(body.substr(0, arg));
    const auto args_text = trim(body.substr(arg + kimi_argument_begin.size()));
    // functions.NAME:IDX (the "functions." prefix and the index are what Kimi writes).
    std::string_view name = id;
    if (name.starts_with("functions.")) name.remove_prefix(10);
    if (const size_t colon = name.rfind(':'); colon != std::string_view::npos)
      name = name.substr(0, colon);
    if (name.empty()) malformed("its id names no function (expected functions.NAME:IDX)", body);
    json::value v;
    try {
      v = json::parse(args_text, "tool-call arguments");
    } catch (const error& e) {
      malformed("its arguments do not parse (" + e.message() + ")", body);
    }
    call.id = std::string(id);
    call.name = std::string(name);
    call.arguments = arguments_text(&v, body);
  }
  ++calls_;
  out.calls.push_back(std::move(call));
}

size_t tool_call_parser::find_close(std::string_view close) {
  for (; scanned_ < buf_.size(); ++scanned_) {
    const char c = buf_[scanned_];
    if (in_string_) {
      if (escaped_) escaped_ = false;
      else if (c == '\\') escaped_ = true;
      else if (c == '"') in_string_ = false;
      continue;
    }
    if (c == '"') {
      in_string_ = true;
      continue;
    }
    const std::string_view rest = std::string_view(buf_).substr(scanned_);
    if (rest.starts_with(close)) return scanned_;
    if (close.starts_with(rest)) return std::string::npos;  // maybe the marker: wait for more
  }
  return std::string::npos;
}

tool_call_parser::output tool_call_parser::feed(std::string_view piece) {
  output out;
  buf_.append(piece);
  const bool hermes = syntax_ == tool_call_syntax::hermes;
  const std::string_view open = hermes ? hermes_open : kimi_section_begin;
  for (;;) {
    if (!in_call_ && !in_section_) {
      const size_t at = buf_.find(open);
      if (at != std::string::npos) {
        out.text.append(buf_, 0, at);
        buf_.erase(0, at + open.size());
        if (hermes) in_call_ = true;
        else in_section_ = true;
        continue;
      }
      const size_t hold = held_prefix(buf_, open);
      out.text.append(buf_, 0, buf_.size() - hold);
      buf_.erase(0, buf_.size() - hold);
      return out;
    }
    if (in_call_) {
      const std::string_view close = hermes ? hermes_close : kimi_call_end;
      const size_t at = find_close(close);
      if (at == std::string::npos) return out;
      const std::string body = buf_.substr(0, at);
      buf_.erase(0, at + close.size());
      in_call_ = false;
      scanned_ = 0;
      in_string_ = escaped_ = false;
      close_call(body, out);
      continue;
    }
    // kimi_k2, inside the section, between calls: whitespace, a call, or the section's end.
    size_t skip = 0;
    while (skip < buf_.size() && is_space(buf_[skip])) ++skip;
    buf_.erase(0, skip);
    const std::string_view rest = buf_;
    if (rest.starts_with(kimi_call_begin)) {
      buf_.erase(0, kimi_call_begin.size());
      in_call_ = true;
      continue;
    }
    if (rest.starts_with(kimi_section_end)) {
      buf_.erase(0, kimi_section_end.size());
      in_section_ = false;
      continue;
    }
    if (kimi_call_begin.starts_with(rest) || kimi_section_end.starts_with(rest)) return out;
    malformed("unexpected text between calls of the tool-call section", rest);
  }
}

tool_call_parser::output tool_call_parser::finish() {
  if (in_call_ || in_section_) {
    const std::string_view opened =
      syntax_ == tool_call_syntax::hermes ? hermes_open : kimi_section_begin;
    throw error(errc::parse_error,
                "truncated tool call: " + std::string(opened) + " was opened but the output ended "
                  "before the call was closed (after `" + excerpt(buf_) +
                  "`); the call was dropped, not run. Raise max_tokens if the model ran out.");
  }
  output out;
  out.text = std::move(buf_);
  buf_.clear();
  return out;
}

tool_call_parser::output parse_tool_calls(tool_call_syntax syntax, std::string_view text) {
  tool_call_parser p(syntax);
  auto out = p.feed(text);
  auto tail = p.finish();
  out.text += tail.text;
  return out;
}

namespace {
/// {"type":"function","function":{"name","description","parameters"}} with the schema embedded
/// as parsed JSON (a schema that does not parse is embedded as a string).
json::value openai_tool_json(const tool_spec& t) {
  json::value params;
  try {
    params = json::parse(t.parameters, "parameters of tool " + t.name);
  } catch (const error&) {
    params = json::value{t.parameters};
  }
  json::object fn{{"name", t.name}, {"description", t.description}, {"parameters", params}};
  return json::object{{"type", "function"}, {"function", std::move(fn)}};
}
}  // namespace

std::string hermes_tool_declarations(std::span<const tool_spec> tools) {
  std::string out =
    "You are a function calling AI model. You may call one or more functions to assist with the "
    "user query. Here are the available tools, as function signatures within <tools></tools> XML "
    "tags:\n<tools>\n";
  for (const auto& t : tools) out += json::dump(openai_tool_json(t)) + "\n";
  out +=
    "</tools>\nFor each function call, return a JSON object with the function name and "
    "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": "
    "<function-name>, \"arguments\": <args-json-object>}\n</tool_call>";
  return out;
}

std::string hermes_tool_call_text(const tool_call& call) {
  return "<tool_call>\n{\"name\": " + json::quote(call.name) + ", \"arguments\": " +
         (call.arguments.empty() ? std::string{"{}"} : call.arguments) + "}\n</tool_call>";
}

std::string hermes_tool_response_text(const chat_message& tool_message) {
  return "<tool_response>\n" + tool_message.text() + "\n</tool_response>";
}

namespace {

void append_python_json(std::string& out, const json::value& v);

/// A double as Python's repr: the shortest digits that round-trip, in fixed notation for
/// decimal exponents -4..15 (with ".0" for whole numbers), else as d.ddde+XX.
void append_python_float(std::string& out, double d) {
  if (std::isnan(d)) {
    out += "NaN";
    return;
  }
  if (std::isinf(d)) {
    out += d < 0 ? "-Infinity" : "Infinity";
    return;
  }
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  std::string_view sci(buf, static_cast<size_t>(res.ptr - buf));  // -d.ddde+XX
  std::string sign;
  if (sci.front() == '-') {
    sign = "-";
    sci.remove_prefix(1);
  }
  const size_t e = sci.find('e');
  std::string digits;
  for (char c : sci.substr(0, e))
    if (c != '.') digits += c;
  const int exp = std::stoi(std::string(sci.substr(e + 1)));
  out += sign;
  if (exp >= -4 && exp < 16) {
    if (exp < 0) {
      out += "0." + std::string(static_cast<size_t>(-exp - 1), '0') + digits;
    } else if (static_cast<size_t>(exp) + 1 >= digits.size()) {
      out += digits + std::string(static_cast<size_t>(exp) + 1 - digits.size(), '0') + ".0";
    } else {
      out += digits.substr(0, static_cast<size_t>(exp) + 1) + "." +
             digits.substr(static_cast<size_t>(exp) + 1);
    }
    return;
  }
  out += digits.substr(0, 1);
  if (digits.size() > 1) out += "." + digits.substr(1);
  out += exp < 0 ? "e-" : "e+";
  const std::string mag = std::to_string(exp < 0 ? -exp : exp);
  if (mag.size() < 2) out += '0';
  out += mag;
}

/// JSON as Hugging Face's `tojson` filter writes it in chat templates: Python's json.dumps with
/// ensure_ascii=False and the default separators ", " and ": ", members in their order.
void append_python_json(std::string& out, const json::value& v) {
  const auto& raw = v.raw();
  if (v.is_null()) {
    out += "null";
  } else if (const bool* b = std::get_if<bool>(&raw)) {
    out += *b ? "true" : "false";
  } else if (const int64_t* i = std::get_if<int64_t>(&raw)) {
    out += std::to_string(*i);
  } else if (const double* d = std::get_if<double>(&raw)) {
    append_python_float(out, *d);
  } else if (const std::string* s = std::get_if<std::string>(&raw)) {
    json::append_quoted(out, *s);  // = json.dumps(ensure_ascii=False) for valid UTF-8
  } else if (const json::array* a = std::get_if<json::array>(&raw)) {
    out += '[';
    for (size_t k = 0; k < a->size(); ++k) {
      if (k) out += ", ";
      append_python_json(out, (*a)[k]);
    }
    out += ']';
  } else if (const json::object* o = std::get_if<json::object>(&raw)) {
    out += '{';
    for (size_t k = 0; k < o->size(); ++k) {
      if (k) out += ", ";
      json::append_quoted(out, (*o)[k].first);
      out += ": ";
      append_python_json(out, (*o)[k].second);
    }
    out += '}';
  }
}

}  // namespace

std::string kimi_k2_prompt(std::span<const chat_message> messages, std::span<const tool_spec> tools,
                           bool add_generation_prompt) {
  std::string out;
  if (!tools.empty()) {
    json::array decl;
    for (const auto& t : tools) decl.push_back(openai_tool_json(t));
    out += "<|im_system|>tool_declare<|im_middle|>\n  # Tools\n  ";
    append_python_json(out, json::value{std::move(decl)});
    out += "<|im_end|>";
  }
  if (messages.empty() || messages.front().role != role::system) {
    out += "<|im_system|>system<|im_middle|>You are Kimi, an AI assistant created by Moonshot AI."
           "<|im_end|>";
  }
  // Kimi expects call ids of the form functions.NAME:IDX, IDX counting the calls of the whole
  // conversation. Other ids (from another model or API) are renamed so, and the tool results
  // that answer them follow the new names; Kimi-form ids pass through as the template prints them.
  std::vector<std::pair<std::string, std::string>> renamed;  // original id -> Kimi id
  size_t call_index = 0;
  for (const auto& m : messages) {
    const std::string& name = m.name;
    switch (m.role) {
      case role::user: out += "<|im_user|>" + (name.empty() ? "user" : name); break;
      case role::assistant: out += "<|im_assistant|>" + (name.empty() ? "assistant" : name); break;
      case role::system: out += "<|im_system|>" + (name.empty() ? "system" : name); break;
      case role::tool: out += "<|im_system|>" + (name.empty() ? "tool" : name); break;
    }
    out += "<|im_middle|>";
    if (m.role == role::assistant && !m.tool_calls.empty()) {
      out += m.text();
      out += kimi_section_begin;
      for (const auto& c : m.tool_calls) {
        std::string id = c.id;
        if (!id.starts_with("functions.")) {
          id = "functions." + c.name + ":" + std::to_string(call_index);
          renamed.emplace_back(c.id, id);
        }
        ++call_index;
        out += std::string(kimi_call_begin) + id + std::string(kimi_argument_begin) +
               (c.arguments.empty() ? std::string{"{}"} : c.arguments) +
               std::string(kimi_call_end);
      }
      out += kimi_section_end;
    } else if (m.role == role::tool) {
      std::string id = m.tool_call_id;
      for (auto it = renamed.rbegin(); it != renamed.rend(); ++it) {
        if (it->first == id) {
          id = it->second;
          break;
        }
      }
      out += "## Return of " + id + "\n    " + m.text();
    } else {
      out += m.text();
    }
    out += "<|im_end|>";
  }
  if (add_generation_prompt) out += "<|im_assistant|>assistant<|im_middle|>";
  return out;
}

}  // namespace troupe
