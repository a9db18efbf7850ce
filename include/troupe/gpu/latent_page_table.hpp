#pragma once
/// The page table of a GPU's paged latent cache (MLA: per position and layer the kv_lora latent and
/// the rotated rope key, bf16, 64 positions a page; ops.hpp launch_mla_decode reads it through a
/// block table). Host-only: which device pages each sequence holds, all-or-nothing growth that
/// refuses a step when the pages run out (before anything changes), the free list, and the block
/// table and cache slots a decode step uploads. Page 0 is the scratch page: it is never given to a
/// sequence; the padding rows of a captured batch write their latents there and their block-table
/// rows point at it (graph_buckets.hpp: padded_step).

#include <cstdint>
#include <map>
#include <span>
#include <vector>

#include "troupe/gpu/graph_buckets.hpp"

namespace troupe::gpu {

class latent_page_table {
 public:
  static constexpr int64_t page_size = 64;  ///< positions per page (= kernels::cuda::mla_page_size)
  static constexpr int32_t scratch_page = 0;

  /// `pages` device pages in all (page 0 the scratch page, so pages - 1 can be lent); a
  /// sequence holds at most `max_pages_per_sequence` (the block table's row width). Throws
  /// troupe::error(invalid_argument) for pages < 2 or max_pages_per_sequence < 1.
  latent_page_table(int64_t pages, int64_t max_pages_per_sequence);

  /// A new sequence holding no page. Ids are reused after close().
  uint32_t open();
  /// Returns the sequence's pages to the free list; unknown ids are ignored.
  void close(uint32_t seq) noexcept;
  bool contains(uint32_t seq) const noexcept { return seqs_.count(seq) != 0; }

  /// Makes sequence seqs[i] hold pages for lengths[i] positions (never shrinks), all or nothing:
  /// when any cannot be met nothing changes. Throws troupe::error: invalid_argument (sizes differ,
  /// an unknown or repeated sequence, a negative length), budget_exceeded (a length beyond
  /// max_positions(), or more new pages than are free: the message names both counts and what to
  /// do).
  void reserve(std::span<const uint32_t> seqs, std::span<const int64_t> lengths);

  /// Positions the sequence's pages hold (pages · 64). Throws invalid_argument for an unknown id.
  int64_t reserved(uint32_t seq) const;
  const std::vector<int32_t>& pages_of(uint32_t seq) const;
  int64_t free_pages() const noexcept { return static_cast<int64_t>(free_.size()); }
  int64_t total_pages() const noexcept { return pages_; }
  int64_t max_pages_per_sequence() const noexcept { return max_pages_; }
  int64_t max_positions() const noexcept { return max_pages_ * page_size; }

  /// Cache slot (page · 64 + pos % 64) of position pos of seq. Throws invalid_argument for an
  /// unknown sequence or a position outside its reserved pages.
  int32_t slot(uint32_t seq, int64_t pos) const;

  /// Block table of one step: rows.size() == bucket · max_pages_per_sequence(); row i < seqs.size()
  /// lists seqs[i]'s pages then scratch_page, rows past seqs.size() (padding) are all
  /// scratch_page. Throws invalid_argument for an unknown sequence, more sequences than bucket, or
  /// a wrong rows size.
  void block_table(std::span<const uint32_t> seqs, int64_t bucket, std::span<int32_t> rows) const;

 private:
  int64_t pages_, max_pages_;
  std::vector<int32_t> free_;  // a stack: the most recently freed page is lent first
  std::map<uint32_t, std::vector<int32_t>> seqs_;
  uint32_t next_id_ = 0;
};

/// One decode step's inputs as the captured graph of its bucket reads them: pad_step's rows
/// (tokens, positions, seq_lens = position + 1, live), the cache slot each row's new latent is
/// written to (padding rows: slot 0 of the scratch page) and the block table [bucket, max_pages].
struct decode_step_inputs {
  padded_step rows;
  std::vector<int32_t> slots;        ///< [bucket]
  std::vector<int32_t> block_table;  ///< [bucket, max_pages_per_sequence]
};

/// Pads one step of seqs.size() sequences, sequence i adding tokens[i] at positions[i] (which
/// its pages must already hold: reserve first). Throws troupe::error: as pad_step and
/// latent_page_table::slot / block_table, and invalid_argument when the three sizes differ.
decode_step_inputs pack_decode_step(const graph_buckets& buckets, const latent_page_table& table,
                                    std::span<const uint32_t> seqs, std::span<const int32_t> tokens,
                                    std::span<const int32_t> positions);

}  // namespace troupe::gpu
