#pragma once
/// Stop strings (OpenAI's `stop`): generation ends where the first of them appears in the output,
/// and the output ends just before it. Text that may be the beginning of a stop string is held
/// back until the next piece says whether it is, so a streamed answer never shows any part of
/// the stop string that ended it.

#include <string>
#include <string_view>
#include <vector>

namespace troupe {

class stop_strings {
 public:
  /// Matches byte for byte; empty strings are ignored.
  explicit stop_strings(const std::vector<std::string>& stops);

  struct step {
    std::string text;      ///< Output now known to precede any stop string, in order.
    bool stopped = false;  ///< A stop string is complete: `text` ends where it began.
  };

  /// Appends generated text. Once a step has said `stopped`, later ones return no text and
  /// say `stopped` again.
  step feed(std::string_view text);
  /// The text held back, at the end of a generation no stop string ended: it was output after
  /// all. Nothing after a stop.
  std::string flush();

  bool stopped() const noexcept { return stopped_; }
  /// No non-empty stop string: feed() passes everything straight through.
  bool empty() const noexcept { return stops_.empty(); }

 private:
  std::vector<std::string> stops_;
  std::string held_;  ///< The longest tail of the output that begins some stop string.
  bool stopped_ = false;
};

}  // namespace troupe
