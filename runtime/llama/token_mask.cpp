// Token masks for constrained decoding (see troupe/llama/token_mask.hpp).

#include "troupe/llama/token_mask.hpp"

#include <algorithm>
#include <numeric>
#include <string>

#include "troupe/error.hpp"

namespace troupe::llama {

namespace {

void set_bit(token_bitset& m, int32_t t) {
  m[static_cast<size_t>(t) >> 6] |= uint64_t{1} << (static_cast<unsigned>(t) & 63);
}
void clear_bit(token_bitset& m, int32_t t) {
  m[static_cast<size_t>(t) >> 6] &= ~(uint64_t{1} << (static_cast<unsigned>(t) & 63));
}

/// True when `s` is whole, valid UTF-8 characters of which none is '"', '\\' or a control byte:
/// text that any JSON string body accepts as it is.
bool string_safe(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<uint8_t>(s[i]);
    if (c < 0x80) {
      if (c < 0x20 || c == '"' || c == '\\') return false;
      ++i;
      continue;
    }
    size_t need = 0;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) need = 1;
    else if (c >= 0xE0 && c <= 0xEF) {
      need = 2;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      need = 3;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return false;
    }
    for (size_t k = 1; k <= need; ++k) {
      if (i + k >= s.size()) return false;  // a partial character
      const auto d = static_cast<uint8_t>(s[i + k]);
      if (k == 1 ? (d < lo || d > hi) : ((d & 0xC0) != 0x80)) return false;
    }
    i += need + 1;
  }
  return true;
}

}  // namespace

std::shared_ptr<const token_mask> mask_cache::find(std::string_view key) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = map_.find(std::string(key));
  return it == map_.end() ? nullptr : it->second;
}

void mask_cache::insert(std::string_view key, std::shared_ptr<const token_mask> mask) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (map_.size() >= max_entries_) map_.clear();
  map_.emplace(std::string(key), std::move(mask));
}

size_t mask_cache::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return map_.size();
}

namespace {

mask_vocabulary vocabulary_of(const tokenizer& tok) {
  mask_vocabulary v;
  const auto n = static_cast<size_t>(tok.vocab_size());
  v.bytes.resize(n);
  v.kinds.resize(n, mask_vocabulary::kind::text);
  for (int32_t t = 0; t < tok.vocab_size(); ++t) {
    auto& k = v.kinds[static_cast<size_t>(t)];
    if (tok.is_end_of_generation(t)) k = mask_vocabulary::kind::end_of_generation;
    else if (tok.type(t) == token_type::control) k = mask_vocabulary::kind::control;
    else v.bytes[static_cast<size_t>(t)] = tok.token_to_piece(t, false);
  }
  return v;
}

}  // namespace

token_masker::token_masker(const tokenizer& tok) : token_masker(vocabulary_of(tok)) {}

token_masker::token_masker(const mask_vocabulary& vocab)
    : vocab_(static_cast<int32_t>(vocab.kinds.size())) {
  if (vocab.bytes.size() != vocab.kinds.size())
    throw error(errc::invalid_argument,
                "token_masker: the vocabulary has " + std::to_string(vocab.bytes.size()) +
                    " token texts but " + std::to_string(vocab.kinds.size()) + " token kinds");
  const size_t words = (static_cast<size_t>(vocab_) + 63) / 64;
  eog_.assign(words, 0);
  control_.assign(words, 0);
  string_safe_.assign(words, 0);
  all_text_.assign(words, 0);
  bytes_.resize(static_cast<size_t>(vocab_));
  std::vector<int32_t> text_tokens;
  for (int32_t t = 0; t < vocab_; ++t) {
    const auto k = vocab.kinds[static_cast<size_t>(t)];
    if (k == mask_vocabulary::kind::end_of_generation) set_bit(eog_, t);
    if (k != mask_vocabulary::kind::text) {
      set_bit(control_, t);
      continue;
    }
    bytes_[static_cast<size_t>(t)] = vocab.bytes[static_cast<size_t>(t)];
    const std::string& b = bytes_[static_cast<size_t>(t)];
    if (b.empty()) continue;
    text_tokens.push_back(t);
    set_bit(all_text_, t);
    if (string_safe(b)) {
      set_bit(string_safe_, t);
      max_safe_len_ = std::max(max_safe_len_, b.size());
    }
    else string_sensitive_.push_back(t);
    if (b.find('<') != std::string::npos) with_lt_.push_back(t);
  }
  // The trie: tokens sorted by bytes, built range by range (shorter strings sort first).
  std::sort(text_tokens.begin(), text_tokens.end(), [&](int32_t a, int32_t b) {
    return bytes_[static_cast<size_t>(a)] < bytes_[static_cast<size_t>(b)];
  });
  nodes_.push_back({});  // the root: no bytes
  struct range {
    uint32_t node;
    size_t lo, hi, depth;
  };
  std::vector<range> todo{{0, 0, text_tokens.size(), 0}};
  while (!todo.empty()) {
    const range r = todo.back();
    todo.pop_back();
    size_t i = r.lo;
    // Tokens that end exactly here.
    while (i < r.hi && bytes_[static_cast<size_t>(text_tokens[i])].size() == r.depth) {
      if (nodes_[r.node].token < 0) nodes_[r.node].token = text_tokens[i];
      else duplicates_.emplace_back(r.node, text_tokens[i]);
      ++i;
    }
    // Children: one per distinct next byte, edges stored contiguously.
    nodes_[r.node].first_child = static_cast<uint32_t>(edges_.size());
    std::vector<range> children;
    while (i < r.hi) {
      const auto byte = static_cast<uint8_t>(bytes_[static_cast<size_t>(text_tokens[i])][r.depth]);
      size_t j = i;
      while (j < r.hi && static_cast<uint8_t>(bytes_[static_cast<size_t>(text_tokens[j])][r.depth]) == byte) ++j;
      const auto child = static_cast<uint32_t>(nodes_.size());
      nodes_.push_back({});
      edges_.push_back({byte, child});
      children.push_back({child, i, j, r.depth + 1});
      i = j;
    }
    nodes_[r.node].child_count = static_cast<uint32_t>(children.size());
    for (auto& c : children) todo.push_back(c);
  }
  std::sort(duplicates_.begin(), duplicates_.end());
}

void token_masker::walk(const grammar_matcher& state, uint32_t node, token_mask& out) const {
  const trie_node& n = nodes_[node];
  for (uint32_t e = n.first_child; e < n.first_child + n.child_count; ++e) {
    grammar_matcher s(state, grammar_matcher::borrow_t{});
    if (!s.feed(edges_[e].byte)) continue;
    const uint32_t child = edges_[e].node;
    if (nodes_[child].token >= 0) {
      out.max_need = std::max(out.max_need, s.min_completion());
      set_bit(out.bits, nodes_[child].token);
      auto it = std::lower_bound(duplicates_.begin(), duplicates_.end(),
                                 std::pair<uint32_t, int32_t>{child, -1});
      for (; it != duplicates_.end() && it->first == child; ++it) set_bit(out.bits, it->second);
    }
    if (nodes_[child].child_count > 0) walk(s, child, out);
  }
}

void token_masker::check_each(const grammar_matcher& state, std::span<const int32_t> tokens,
                              token_mask& out) const {
  for (int32_t t : tokens) {
    grammar_matcher s(state, grammar_matcher::borrow_t{});
    if (s.feed(bytes_[static_cast<size_t>(t)])) {
      set_bit(out.bits, t);
      out.max_need = std::max(out.max_need, s.min_completion());
    }
  }
}

std::shared_ptr<const token_mask> token_masker::allowed(const grammar_matcher& state,
                                                          mask_cache* cache) const {
  const std::string_view key = state.key();
  if (cache != nullptr) {
    if (auto hit = cache->find(key)) return hit;
  }
  auto mask = std::make_shared<token_mask>();
  token_bitset& m = mask->bits;
  // Tokens of the precomputed sets never lead farther from an end than the state is now.
  mask->max_need = state.min_completion();
  auto mode = state.lexical_mode();
  // A string near its maxLength: not every string-safe token fits any more.
  if (mode == grammar_matcher::mode::string_body && state.string_room() < max_safe_len_)
    mode = grammar_matcher::mode::other;
  switch (mode) {
    case grammar_matcher::mode::free_text:
      m = all_text_;
      for (int32_t t : with_lt_) clear_bit(m, t);
      check_each(state, with_lt_, *mask);
      for (size_t w = 0; w < m.size(); ++w) m[w] |= control_[w];
      break;
    case grammar_matcher::mode::string_body:
      m = string_safe_;
      check_each(state, string_sensitive_, *mask);
      break;
    case grammar_matcher::mode::other:
      m.assign(string_safe_.size(), 0);
      if (!state.done()) walk(state, 0, *mask);
      break;
  }
  if (state.can_end())
    for (size_t w = 0; w < m.size(); ++w) m[w] |= eog_[w];
  if (cache != nullptr) cache->insert(key, mask);
  return mask;
}

std::shared_ptr<const token_mask> token_masker::within_budget(
  const grammar_matcher& state, std::shared_ptr<const token_mask> mask, uint32_t budget) const {
  if (budget >= mask->max_need) return mask;  // every allowed token can still close in time
  auto mode = state.lexical_mode();
  if (mode == grammar_matcher::mode::string_body && state.string_room() < max_safe_len_)
    mode = grammar_matcher::mode::other;
  const uint32_t need = state.min_completion();
  auto kept = std::make_shared<token_mask>(*mask);
  bool removed = false, any = false;
  auto check = [&](int32_t t) {
    if (!test_token(kept->bits, t)) return;
    const std::string& b = bytes_[static_cast<size_t>(t)];
    if (b.empty()) {  // end of generation (present only where the state can end) or control
      any = true;
      return;
    }
    grammar_matcher s(state, grammar_matcher::borrow_t{});
    if (s.feed(b) && s.min_completion() <= budget) {
      any = true;
    } else {
      clear_bit(kept->bits, t);
      removed = true;
    }
  };
  if (need <= budget && mode == grammar_matcher::mode::string_body) {
    any = true;  // string characters keep the state where it is
    for (int32_t t : string_sensitive_) check(t);
  } else if (mode == grammar_matcher::mode::string_body && state.string_missing() == 0) {
    // Time to close the string: characters that do not close it leave the end as far as now.
    for (size_t w = 0; w < kept->bits.size(); ++w) {
      removed = removed || (kept->bits[w] & string_safe_[w]) != 0;
      kept->bits[w] &= ~string_safe_[w];
    }
    for (int32_t t : string_sensitive_) check(t);
  } else if (need <= budget && mode == grammar_matcher::mode::free_text) {
    any = true;  // so does free text without '<'
    for (int32_t t : with_lt_) check(t);
  } else {
    for (size_t w = 0; w < kept->bits.size(); ++w)
      for (uint64_t bits = mask->bits[w]; bits != 0; bits &= bits - 1)
        check(static_cast<int32_t>(w * 64 + static_cast<size_t>(__builtin_ctzll(bits))));
  }
  if (!removed || !any) return mask;
  kept->max_need = budget;
  return kept;
}

}  // namespace troupe::llama
