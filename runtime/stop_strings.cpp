// Stop strings (see troupe/stop_strings.hpp).

#include "troupe/stop_strings.hpp"

#include <algorithm>
#include <utility>

namespace troupe {

stop_strings::stop_strings(const std::vector<std::string>& stops) {
  for (const auto& s : stops)
    if (!s.empty()) stops_.push_back(s);
}

stop_strings::step stop_strings::feed(std::string_view text) {
  if (stopped_) return {{}, true};
  held_.append(text);
  // The earliest complete stop string ends the output, whichever string it is.
  size_t first = std::string::npos;
  for (const auto& s : stops_) first = std::min(first, held_.find(s));
  if (first != std::string::npos) {
    stopped_ = true;
    held_.resize(first);
    return {std::exchange(held_, {}), true};
  }
  // Hold back the longest tail that a stop string begins with (shorter than that string, else
  // it would have been found): everything before it can never be part of a stop string.
  size_t keep = 0;
  for (const auto& s : stops_) {
    for (size_t n = std::min(s.size() - 1, held_.size()); n > keep; --n) {
      if (std::string_view{held_}.substr(held_.size() - n) == std::string_view{s}.substr(0, n)) {
        keep = n;
        break;
      }
    }
  }
  step out{held_.substr(0, held_.size() - keep), false};
  held_.erase(0, held_.size() - keep);
  return out;
}

std::string stop_strings::flush() {
  if (stopped_) return {};
  return std::exchange(held_, {});
}

}  // namespace troupe
