#pragma once
/// A full-text index of the text files under one directory, in one SQLite file (FTS5, bm25
/// ranking), shared by the search plugin (which reads it) and `troupe index` (which builds it).
///
/// Layout of the index file (schema version 1):
///   meta(key, value)                    "schema" = "1", "root" = the canonical indexed directory
///   docs(id, path, size, mtime_ns, body) one row per indexed file; `path` relative to the root,
///                                        `id` stable for a path across re-indexing (the doc id)
///   docs_fts(path UNINDEXED, body)       FTS5 over docs (external content, kept in step by
///                                        triggers), tokenizer "unicode61 remove_diacritics 2"
///
/// Indexing is incremental: a file whose size and modification time match its row is skipped, a
/// changed file is re-read, a file gone from the directory loses its row. Hidden entries (names
/// starting with '.'), symbolic links, files over max_file_bytes and binary files (with NUL bytes)
/// are not indexed. A whole run is one transaction: an interrupted run leaves the previous index.
///
/// This code depends on SQLite and the standard library only, so a plugin can compile it.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

struct sqlite3;

namespace troupe::search {

/// A failure to open, build or query an index; the message says what and what to do.
class index_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A query the FTS5 parser refused (syntax error, unknown column, ...).
class query_error : public index_error {
 public:
  using index_error::index_error;
};

/// What one indexing run did.
struct index_stats {
  size_t files = 0;      ///< Candidate files found under the directory.
  size_t added = 0;      ///< New documents.
  size_t updated = 0;    ///< Documents re-read because size or mtime changed.
  size_t unchanged = 0;  ///< Documents skipped.
  size_t removed = 0;    ///< Documents whose file is gone (or no longer indexable).
  size_t skipped = 0;    ///< Files not indexed: binary, too large or unreadable.
};

struct index_options {
  int64_t max_file_bytes = int64_t{16} << 20;
  /// Called after every `progress_every` files and once at the end with (done, total).
  std::function<void(size_t done, size_t total)> progress;
  size_t progress_every = 500;
};

/// Indexes the text files under `dir` into `index_file` (created if missing). Throws index_error,
/// e.g. when `index_file` was built from another directory.
index_stats build_index(const std::filesystem::path& dir, const std::filesystem::path& index_file,
                        const index_options& options = {});

/// One search hit.
struct search_hit {
  int64_t doc_id = 0;
  std::string path;     ///< Relative to the indexed root.
  double score = 0;     ///< -bm25: higher is better.
  std::string snippet;  ///< Matches wrapped in [ ]; "…" marks elided text.
};

/// A slice of a stored document.
struct document_slice {
  int64_t doc_id = 0;
  std::string path;
  int64_t size = 0;    ///< Bytes of the whole document.
  int64_t offset = 0;  ///< Where `text` starts.
  std::string text;    ///< Ends on a UTF-8 character boundary unless the document ends.
  std::optional<int64_t> next_offset;  ///< Where to continue; empty at the end.
};

/// Read-only access to an index, safe to use from several threads at once (a small pool of
/// connections, one per concurrent caller).
class index_reader {
 public:
  /// Opens `index_file` read-only; throws index_error when it is missing or not an index.
  explicit index_reader(std::filesystem::path index_file);
  ~index_reader();
  index_reader(const index_reader&) = delete;
  index_reader& operator=(const index_reader&) = delete;

  /// The best `k` documents for an FTS5 query, best first (ties by doc id). Throws query_error for
  /// a query FTS5 refuses.
  std::vector<search_hit> search(const std::string& fts_query, int k,
                                 int snippet_tokens = 16) const;

  /// Up to `length` bytes of document `doc_id` from `offset`. Throws index_error for an unknown id
  /// or an offset past the end.
  document_slice read(int64_t doc_id, int64_t offset, int64_t length) const;

  int64_t document_count() const;
  const std::string& root() const noexcept { return root_; }
  const std::filesystem::path& file() const noexcept { return file_; }

 private:
  struct connection;
  std::unique_ptr<connection> acquire() const;
  void release(std::unique_ptr<connection> c) const;

  std::filesystem::path file_;
  std::string root_;
  mutable std::mutex mutex_;
  mutable std::vector<std::unique_ptr<connection>> idle_;
};

/// Turns words typed by a person or a model into an FTS5 query that cannot be a syntax error:
/// each whitespace-separated word becomes a quoted phrase; all must match.
std::string plain_query(const std::string& text);

}  // namespace troupe::search
