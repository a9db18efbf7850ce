#include "troupe/gpu/latent_page_table.hpp"

#include <algorithm>
#include <string>

#include "troupe/error.hpp"

namespace troupe::gpu {

latent_page_table::latent_page_table(int64_t pages, int64_t max_pages_per_sequence)
    : pages_(pages), max_pages_(max_pages_per_sequence) {
  if (pages < 2 || max_pages_per_sequence < 1 || pages > INT32_MAX)
    throw error(errc::invalid_argument,
                "gpu::latent_page_table: " + std::to_string(pages) + " pages (at least 2: page 0 is "
                "the scratch page) and at most " + std::to_string(max_pages_per_sequence) +
                " per sequence (at least 1)");
  free_.reserve(static_cast<size_t>(pages - 1));
  for (int64_t p = pages - 1; p >= 1; --p) free_.push_back(static_cast<int32_t>(p));  // 1 on top
}

uint32_t latent_page_table::open() {
  while (seqs_.count(next_id_) != 0) ++next_id_;
  const uint32_t id = next_id_++;
  seqs_.emplace(id, std::vector<int32_t>{});
  return id;
}

void latent_page_table::close(uint32_t seq) noexcept {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return;
  for (auto p = it->second.rbegin(); p != it->second.rend(); ++p) free_.push_back(*p);
  seqs_.erase(it);
}

namespace {
[[noreturn]] void unknown(uint32_t seq, const char* where) {
  throw error(errc::invalid_argument,
              std::string("gpu::latent_page_table::") + where + ": no open sequence " + std::to_string(seq));
}
}  // namespace

const std::vector<int32_t>& latent_page_table::pages_of(uint32_t seq) const {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) unknown(seq, "pages_of");
  return it->second;
}

int64_t latent_page_table::reserved(uint32_t seq) const {
  return static_cast<int64_t>(pages_of(seq).size()) * page_size;
}

void latent_page_table::reserve(std::span<const uint32_t> seqs, std::span<const int64_t> lengths) {
  if (seqs.size() != lengths.size())
    throw error(errc::invalid_argument, "gpu::latent_page_table::reserve: " + std::to_string(seqs.size()) +
                                            " sequences but " + std::to_string(lengths.size()) + " lengths");
  int64_t needed = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    auto it = seqs_.find(seqs[i]);
    if (it == seqs_.end()) unknown(seqs[i], "reserve");
    if (std::find(seqs.begin(), seqs.begin() + static_cast<std::ptrdiff_t>(i), seqs[i]) !=
        seqs.begin() + static_cast<std::ptrdiff_t>(i))
      throw error(errc::invalid_argument, "gpu::latent_page_table::reserve: sequence " +
                                              std::to_string(seqs[i]) + " named twice");
    if (lengths[i] < 0)
      throw error(errc::invalid_argument, "gpu::latent_page_table::reserve: length " +
                                              std::to_string(lengths[i]) + " for sequence " +
                                              std::to_string(seqs[i]));
    if (lengths[i] > max_positions())
      throw error(errc::budget_exceeded,
                  "gpu::latent_page_table: sequence " + std::to_string(seqs[i]) + " needs " +
                      std::to_string(lengths[i]) + " positions, more than the " +
                      std::to_string(max_positions()) + " a block-table row holds (" +
                      std::to_string(max_pages_) + " pages of 64); give the decoder a longer "
                      "max_context or end the sequence");
    const int64_t want = (lengths[i] + page_size - 1) / page_size;
    needed += std::max<int64_t>(0, want - static_cast<int64_t>(it->second.size()));
  }
  if (needed > free_pages())
    throw error(errc::budget_exceeded,
                "gpu::latent_page_table: the step needs " + std::to_string(needed) +
                    " more latent-cache pages but only " + std::to_string(free_pages()) + " of " +
                    std::to_string(pages_ - 1) + " are free (" + std::to_string(seqs_.size()) +
                    " sequences open); close finished sequences, run fewer at once or give the "
                    "decoder more cache pages");
  for (size_t i = 0; i < seqs.size(); ++i) {
    auto& pages = seqs_.find(seqs[i])->second;
    const int64_t want = (lengths[i] + page_size - 1) / page_size;
    while (static_cast<int64_t>(pages.size()) < want) {
      pages.push_back(free_.back());
      free_.pop_back();
    }
  }
}

int32_t latent_page_table::slot(uint32_t seq, int64_t pos) const {
  const auto& pages = pages_of(seq);
  if (pos < 0 || pos >= static_cast<int64_t>(pages.size()) * page_size)
    throw error(errc::invalid_argument, "gpu::latent_page_table::slot: position " + std::to_string(pos) +
                                            " of sequence " + std::to_string(seq) + ", which holds " +
                                            std::to_string(pages.size() * page_size) + " positions");
  return static_cast<int32_t>(pages[static_cast<size_t>(pos / page_size)] * page_size + pos % page_size);
}

void latent_page_table::block_table(std::span<const uint32_t> seqs, int64_t bucket,
                                    std::span<int32_t> rows) const {
  if (static_cast<int64_t>(seqs.size()) > bucket ||
      static_cast<int64_t>(rows.size()) != bucket * max_pages_)
    throw error(errc::invalid_argument,
                "gpu::latent_page_table::block_table: " + std::to_string(seqs.size()) +
                    " sequences in a bucket of " + std::to_string(bucket) + " with " +
                    std::to_string(rows.size()) + " entries (expected bucket · " +
                    std::to_string(max_pages_) + ")");
  std::fill(rows.begin(), rows.end(), scratch_page);
  for (size_t i = 0; i < seqs.size(); ++i) {
    const auto& pages = pages_of(seqs[i]);
    std::copy(pages.begin(), pages.end(), rows.begin() + static_cast<std::ptrdiff_t>(i) * max_pages_);
  }
}

decode_step_inputs pack_decode_step(const graph_buckets& buckets, const latent_page_table& table,
                                    std::span<const uint32_t> seqs, std::span<const int32_t> tokens,
                                    std::span<const int32_t> positions) {
  if (seqs.size() != tokens.size() || seqs.size() != positions.size())
    throw error(errc::invalid_argument, "gpu::pack_decode_step: " + std::to_string(seqs.size()) +
                                            " sequences, " + std::to_string(tokens.size()) + " tokens, " +
                                            std::to_string(positions.size()) + " positions");
  decode_step_inputs in;
  in.rows = pad_step(buckets, tokens, positions);
  const auto B = static_cast<size_t>(in.rows.bucket);
  in.slots.assign(B, latent_page_table::scratch_page * static_cast<int32_t>(latent_page_table::page_size));
  for (size_t i = 0; i < seqs.size(); ++i) in.slots[i] = table.slot(seqs[i], positions[i]);
  in.block_table.resize(B * static_cast<size_t>(table.max_pages_per_sequence()));
  table.block_table(seqs, in.rows.bucket, in.block_table);
  return in;
}

}  // namespace troupe::gpu

