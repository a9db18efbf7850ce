#include "index_command.hpp"

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>

#include "search_index.hpp"

namespace troupe::cli {

CLI::App* add_index_command(CLI::App& app, index_command_options& opts) {
  auto* cmd = app.add_subcommand(
    "index",
    "Build or update the full-text index of the text files under DIR for the search plugin\n"
    "(plugin config {\"index\": INDEX}). Only changed files are read again; hidden files,\n"
    "symbolic links and binary files are skipped. Exit status: 0 done, 1 failed.");
  cmd->add_option("dir", opts.dir, "Directory to index")->required();
  cmd->add_option("-o,--out", opts.out, "Index file (SQLite), created if missing")->required();
  cmd->add_option("--max-file-bytes", opts.max_file_bytes, "Skip files larger than this")
    ->check(CLI::PositiveNumber);
  cmd->add_flag("-q,--quiet", opts.quiet, "No progress on stderr");
  return cmd;
}

int index_command(const index_command_options& opts) {
  search::index_options io;
  io.max_file_bytes = opts.max_file_bytes;
  if (!opts.quiet)
    io.progress = [](size_t done, size_t total) {
      std::fprintf(stderr, "indexed %zu/%zu files\n", done, total);
    };
  auto start = std::chrono::steady_clock::now();
  try {
    search::index_stats s = search::build_index(opts.dir, opts.out, io);
    double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("%s: %zu files (%zu added, %zu updated, %zu unchanged, %zu removed, %zu skipped) "
                "in %.1f s\n",
                opts.out.c_str(), s.files, s.added, s.updated, s.unchanged, s.removed, s.skipped,
                secs);
    return 0;
  } catch (const search::index_error& e) {
    std::fprintf(stderr, "troupe index: %s\n", e.what());
    return 1;
  }
}

}  // namespace troupe::cli
