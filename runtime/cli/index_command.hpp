#pragma once
/// `troupe index DIR --out INDEX`: builds or updates the full-text index the search plugin reads
/// (SQLite FTS5; see plugins/search/search_index.hpp). Incremental: only files whose size or
/// modification time changed are read again, and files gone from DIR leave the index. Progress
/// lines go to stderr ("indexed 1200/10000 files"), a summary to stdout.

#include <string>

namespace CLI {
class App;
}

namespace troupe::cli {

struct index_command_options {
  std::string dir;     ///< The directory to index.
  std::string out;     ///< The index file, created if missing.
  bool quiet = false;  ///< No progress lines.
  int64_t max_file_bytes = int64_t{16} << 20;
};

/// Adds the `index` subcommand to `app`, filling `opts`.
CLI::App* add_index_command(CLI::App& app, index_command_options& opts);

/// Returns the process exit code: 0 success, 1 the index cannot be built.
int index_command(const index_command_options& opts);

}  // namespace troupe::cli
