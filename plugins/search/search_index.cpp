#include "search_index.hpp"

#include <sqlite3.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <system_error>

namespace troupe::search {
namespace {

namespace fs = std::filesystem;

constexpr const char* schema_version = "1";

/// An owned prepared statement.
class statement {
 public:
  statement(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr) != SQLITE_OK)
      throw index_error(std::string("index query cannot be prepared: ") + sqlite3_errmsg(db));
  }
  ~statement() { sqlite3_finalize(stmt_); }
  statement(const statement&) = delete;
  statement& operator=(const statement&) = delete;

  sqlite3_stmt* get() const noexcept { return stmt_; }
  /// Resets the statement and clears its bindings for the next use.
  void reset() noexcept {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  void bind(int i, int64_t v) { check(sqlite3_bind_int64(stmt_, i, v)); }
  void bind(int i, const std::string& v) {
    check(sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT));
  }
  void bind_blob_text(int i, const std::string& v) {
    check(sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC));
  }
  /// Steps once: true for a row, false when done; throws index_error otherwise.
  bool step() {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    throw index_error(std::string("index update failed: ") + sqlite3_errmsg(db_));
  }
  std::string text(int col) const {
    const void* p = sqlite3_column_blob(stmt_, col);
    int n = sqlite3_column_bytes(stmt_, col);
    return p ? std::string(static_cast<const char*>(p), static_cast<size_t>(n)) : std::string();
  }
  int64_t integer(int col) const { return sqlite3_column_int64(stmt_, col); }
  double real(int col) const { return sqlite3_column_double(stmt_, col); }

 private:
  void check(int rc) {
    if (rc != SQLITE_OK)
      throw index_error(std::string("index query cannot bind a value: ") + sqlite3_errmsg(db_));
  }
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
};

/// An owned database handle.
struct database {
  sqlite3* db = nullptr;
  database(const fs::path& file, int flags) {
    int rc = sqlite3_open_v2(file.c_str(), &db, flags | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) {
      std::string why = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
      sqlite3_close(db);
      throw index_error("index '" + file.string() + "' cannot be opened: " + why);
    }
    sqlite3_busy_timeout(db, 5000);
  }
  ~database() { sqlite3_close(db); }
  database(const database&) = delete;
  database& operator=(const database&) = delete;

  void exec(const char* sql, const char* what) const {
    char* err = nullptr;
    if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
      std::string why = err ? err : "unknown error";
      sqlite3_free(err);
      throw index_error(std::string(what) + ": " + why);
    }
  }
};

/// The meta value for `key`, or empty when missing (or the table is missing).
std::optional<std::string> meta_value(sqlite3* db, const char* key) {
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = ?1", -1, &s, nullptr) != SQLITE_OK)
    return std::nullopt;
  sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
  std::optional<std::string> out;
  if (sqlite3_step(s) == SQLITE_ROW) {
    const unsigned char* t = sqlite3_column_text(s, 0);
    out = t ? reinterpret_cast<const char*>(t) : "";
  }
  sqlite3_finalize(s);
  return out;
}

constexpr const char* schema_sql = R"sql(
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS docs(
  id INTEGER PRIMARY KEY,
  path TEXT NOT NULL UNIQUE,
  size INTEGER NOT NULL,
  mtime_ns INTEGER NOT NULL,
  body TEXT NOT NULL);
CREATE VIRTUAL TABLE IF NOT EXISTS docs_fts USING fts5(
  path UNINDEXED, body, content='docs', content_rowid='id',
  tokenize='unicode61 remove_diacritics 2');
CREATE TRIGGER IF NOT EXISTS docs_ai AFTER INSERT ON docs BEGIN
  INSERT INTO docs_fts(rowid, path, body) VALUES (new.id, new.path, new.body);
END;
CREATE TRIGGER IF NOT EXISTS docs_ad AFTER DELETE ON docs BEGIN
  INSERT INTO docs_fts(docs_fts, rowid, path, body) VALUES ('delete', old.id, old.path, old.body);
END;
CREATE TRIGGER IF NOT EXISTS docs_au AFTER UPDATE ON docs BEGIN
  INSERT INTO docs_fts(docs_fts, rowid, path, body) VALUES ('delete', old.id, old.path, old.body);
  INSERT INTO docs_fts(rowid, path, body) VALUES (new.id, new.path, new.body);
END;
)sql";

struct file_entry {
  std::string rel;  // relative to the root, '/'-separated
  fs::path abs;
  int64_t size = 0;
  int64_t mtime_ns = 0;
};

/// The regular files under `root`, sorted by relative path, skipping hidden entries and links.
void walk(const fs::path& dir, const std::string& rel, std::vector<file_entry>& out, int depth) {
  if (depth > 64) return;
  std::error_code ec;
  fs::directory_iterator it(dir, ec), end;
  if (ec) return;
  for (; it != end; it.increment(ec)) {
    if (ec) break;
    std::string name = it->path().filename().string();
    if (name.empty() || name[0] == '.') continue;
    std::string child_rel = rel.empty() ? name : rel + "/" + name;
    struct stat st {};
    if (::lstat(it->path().c_str(), &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      walk(it->path(), child_rel, out, depth + 1);
    } else if (S_ISREG(st.st_mode)) {
      out.push_back({child_rel, it->path(), static_cast<int64_t>(st.st_size),
                     static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec});
    }
  }
}

bool read_file(const fs::path& p, std::string& out) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return false;
  out.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return !in.bad();
}

/// Length of the longest prefix of `s` that does not end inside a UTF-8 sequence.
size_t complete_utf8_prefix(std::string_view s) {
  size_t n = s.size();
  size_t back = 0;
  while (back < 4 && back < n && (static_cast<unsigned char>(s[n - 1 - back]) & 0xC0) == 0x80)
    ++back;
  if (back == n) return n;
  unsigned char lead = static_cast<unsigned char>(s[n - 1 - back]);
  size_t want = lead < 0x80 ? 1 : (lead >> 5) == 0x6 ? 2 : (lead >> 4) == 0xE ? 3
                : (lead >> 3) == 0x1E                 ? 4
                                                      : 1;
  return back + 1 < want ? n - 1 - back : n;
}

}  // namespace

index_stats build_index(const fs::path& dir, const fs::path& index_file,
                        const index_options& options) {
  std::error_code ec;
  fs::path root = fs::canonical(dir, ec);
  if (ec || !fs::is_directory(root))
    throw index_error("'" + dir.string() + "' is not a directory that can be indexed" +
                      (ec ? ": " + ec.message() : std::string()));
  database db(index_file, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  db.exec("PRAGMA synchronous = NORMAL", "index cannot be configured");
  if (auto v = meta_value(db.db, "schema"); v && *v != schema_version)
    throw index_error("index '" + index_file.string() + "' has schema " + *v + ", not " +
                      schema_version + ": delete it and index again");
  db.exec(schema_sql, ("'" + index_file.string() + "' cannot hold a search index").c_str());
  if (auto r = meta_value(db.db, "root"); r && *r != root.string())
    throw index_error("index '" + index_file.string() + "' was built from '" + *r + "', not '" +
                      root.string() + "': use another --out file for another directory");

  std::vector<file_entry> files;
  walk(root, "", files, 0);
  std::sort(files.begin(), files.end(),
            [](const file_entry& a, const file_entry& b) { return a.rel < b.rel; });

  struct known {
    int64_t id, size, mtime_ns;
    bool seen = false;
  };
  std::map<std::string, known> existing;
  {
    statement s(db.db, "SELECT path, id, size, mtime_ns FROM docs");
    while (s.step()) existing[s.text(0)] = {s.integer(1), s.integer(2), s.integer(3)};
  }

  index_stats stats;
  stats.files = files.size();
  db.exec("BEGIN IMMEDIATE", "index is busy (another `troupe index` running?)");
  try {
    statement meta(db.db, "INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)");
    meta.bind(1, std::string("schema"));
    meta.bind(2, std::string(schema_version));
    meta.step();
    meta.reset();
    meta.bind(1, std::string("root"));
    meta.bind(2, root.string());
    meta.step();
    statement insert(db.db,
                     "INSERT INTO docs(path, size, mtime_ns, body) VALUES (?1, ?2, ?3, ?4)");
    statement update(db.db, "UPDATE docs SET size = ?2, mtime_ns = ?3, body = ?4 WHERE id = ?1");
    statement remove(db.db, "DELETE FROM docs WHERE id = ?1");
    std::string body;
    size_t done = 0;
    for (const file_entry& f : files) {
      auto it = existing.find(f.rel);
      known* k = it == existing.end() ? nullptr : &it->second;
      if (k) k->seen = true;
      bool same = k && k->size == f.size && k->mtime_ns == f.mtime_ns;
      if (same) {
        ++stats.unchanged;
      } else if (f.size > options.max_file_bytes || !read_file(f.abs, body) ||
                 body.find('\0') != std::string::npos) {
        ++stats.skipped;
        if (k) k->seen = false;  // removed below
      } else if (k) {
        update.reset();
        update.bind(1, k->id);
        update.bind(2, static_cast<int64_t>(body.size()));
        update.bind(3, f.mtime_ns);
        update.bind_blob_text(4, body);
        update.step();
        ++stats.updated;
      } else {
        insert.reset();
        insert.bind(1, f.rel);
        insert.bind(2, static_cast<int64_t>(body.size()));
        insert.bind(3, f.mtime_ns);
        insert.bind_blob_text(4, body);
        insert.step();
        ++stats.added;
      }
      ++done;
      if (options.progress && options.progress_every && done % options.progress_every == 0 &&
          done != files.size())
        options.progress(done, files.size());
    }
    for (const auto& [path, k] : existing) {
      if (k.seen) continue;
      remove.reset();
      remove.bind(1, k.id);
      remove.step();
      ++stats.removed;
    }
    db.exec("COMMIT", "index cannot be saved");
  } catch (...) {
    sqlite3_exec(db.db, "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
  if (options.progress) options.progress(files.size(), files.size());
  return stats;
}

struct index_reader::connection {
  database db;
  statement search;
  statement read;
  statement count;
  explicit connection(const fs::path& file)
      : db(file, SQLITE_OPEN_READONLY),
        search(db.db,
               "SELECT rowid, path, -bm25(docs_fts), snippet(docs_fts, 1, '[', ']', '…', ?2) "
               "FROM docs_fts WHERE docs_fts MATCH ?1 ORDER BY bm25(docs_fts), rowid LIMIT ?3"),
        read(db.db, "SELECT path, body FROM docs WHERE id = ?1"),
        count(db.db, "SELECT count(*) FROM docs") {}
};

index_reader::index_reader(fs::path index_file) : file_(std::move(index_file)) {
  std::error_code ec;
  if (!fs::is_regular_file(file_, ec))
    throw index_error("search index '" + file_.string() +
                      "' does not exist: build it with `troupe index DIR --out " +
                      file_.string() + "`");
  database db(file_, SQLITE_OPEN_READONLY);
  auto schema = meta_value(db.db, "schema");
  if (!schema)
    throw index_error("'" + file_.string() +
                      "' is not a troupe search index: build one with `troupe index DIR --out FILE`");
  if (*schema != schema_version)
    throw index_error("search index '" + file_.string() + "' has schema " + *schema + ", not " +
                      schema_version + ": build it again with `troupe index`");
  root_ = meta_value(db.db, "root").value_or("");
  release(std::make_unique<connection>(file_));
}

index_reader::~index_reader() = default;

std::unique_ptr<index_reader::connection> index_reader::acquire() const {
  {
    std::lock_guard<std::mutex> guard(mutex_);
    if (!idle_.empty()) {
      auto c = std::move(idle_.back());
      idle_.pop_back();
      return c;
    }
  }
  return std::make_unique<connection>(file_);
}

void index_reader::release(std::unique_ptr<connection> c) const {
  c->search.reset();
  c->read.reset();
  c->count.reset();
  std::lock_guard<std::mutex> guard(mutex_);
  if (idle_.size() < 16) idle_.push_back(std::move(c));
}

std::vector<search_hit> index_reader::search(const std::string& fts_query, int k,
                                             int snippet_tokens) const {
  auto c = acquire();
  statement& s = c->search;
  s.bind(1, fts_query);
  s.bind(2, snippet_tokens);
  s.bind(3, k);
  std::vector<search_hit> hits;
  for (;;) {
    int rc = sqlite3_step(s.get());
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) {
      std::string why = sqlite3_errmsg(c->db.db);
      release(std::move(c));
      throw query_error(why);
    }
    hits.push_back({s.integer(0), s.text(1), s.real(2), s.text(3)});
  }
  release(std::move(c));
  return hits;
}

document_slice index_reader::read(int64_t doc_id, int64_t offset, int64_t length) const {
  auto c = acquire();
  statement& s = c->read;
  s.bind(1, doc_id);
  bool found = s.step();
  document_slice out;
  std::string body;
  if (found) {
    out.path = s.text(0);
    body = s.text(1);
  }
  release(std::move(c));
  if (!found)
    throw index_error("no document with id " + std::to_string(doc_id) +
                      " in the index: use a doc_id from a search result");
  out.doc_id = doc_id;
  out.size = static_cast<int64_t>(body.size());
  out.offset = offset;
  if (offset > out.size)
    throw index_error("offset " + std::to_string(offset) + " is past the end of document " +
                      std::to_string(doc_id) + " ('" + out.path + "', " +
                      std::to_string(out.size) + " bytes)");
  std::string_view rest = std::string_view(body).substr(static_cast<size_t>(offset));
  bool to_end = static_cast<int64_t>(rest.size()) <= length;
  std::string_view part = to_end ? rest : rest.substr(0, static_cast<size_t>(length));
  if (!to_end) {
    size_t keep = complete_utf8_prefix(part);
    if (keep > 0) part = part.substr(0, keep);  // never stall on a character longer than length
  }
  out.text.assign(part);
  int64_t next = offset + static_cast<int64_t>(part.size());
  if (next < out.size) out.next_offset = next;
  return out;
}

int64_t index_reader::document_count() const {
  auto c = acquire();
  int64_t n = c->count.step() ? c->count.integer(0) : 0;
  release(std::move(c));
  return n;
}

std::string plain_query(const std::string& text) {
  std::string out;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    size_t start = i;
    while (i < text.size() && !std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    if (i == start) break;
    if (!out.empty()) out += ' ';
    out += '"';
    for (size_t k = start; k < i; ++k) {
      if (text[k] == '"') out += '"';
      out += text[k];
    }
    out += '"';
  }
  return out;
}

}  // namespace troupe::search
