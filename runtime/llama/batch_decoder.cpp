// The llama forward pass over a batch of sequences (see troupe/llama/batch_decoder.hpp).

#include "troupe/llama/batch_decoder.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <string>

#include "cpu/moe_ops.hpp"
#include "cpu/thread_pool.hpp"
#include "cpu/transformer_ops.hpp"
#include "llama_weights.hpp"
#include "troupe/error.hpp"

namespace troupe::llama {

namespace {

void check(kc::status s, const char* op) {
  if (s != kc::status::ok) {
    throw error(errc::internal, std::string("llama forward pass: kernel ") + op + " failed: " +
                                    kc::to_string(s));
  }
}

/// One sequence's KV cache: keys and values [layers, capacity, kv_dim] of the decoder's
/// kv_cache_type. Allocated uninitialised, so the operating system commits pages only as
/// positions are written.
struct sequence {
  bool open = false;
  int64_t capacity = 0;
  int64_t pos = 0;
  std::unique_ptr<std::byte[]> k, v;
};

size_t kv_element_bytes(kv_cache_type t) noexcept {
  return t == kv_cache_type::f16 ? sizeof(uint16_t) : sizeof(float);
}

}  // namespace

const char* to_string(kv_cache_type t) noexcept {
  return t == kv_cache_type::f16 ? "f16" : "f32";
}

kv_cache_type parse_kv_cache_type(std::string_view name) {
  if (name == "f32") return kv_cache_type::f32;
  if (name == "f16") return kv_cache_type::f16;
  throw error(errc::invalid_argument, "KV cache type '" + std::string(name) +
                                          "' is not known: use f32 or f16 (half the memory)");
}

struct batch_decoder::state {
  state(int threads, kv_cache_type kv) : pool(threads), kv(kv) {}
  kc::thread_pool pool;
  kv_cache_type kv;
  std::vector<sequence> seqs;
  // Per step, sized for the largest batch seen: [tokens, ...] activations.
  std::vector<float> x, cur, q, k, v, attn, proj, gate, up;
  std::vector<float> last, logits;  // [chunks, hidden], [chunks, vocab]
  // Mixture of experts: router logits [tokens, experts]; per (token, slot) pair the expert, its
  // weight, and the expert's gate/up [pairs, ffn] and down [pairs, hidden] outputs.
  std::vector<float> router, expert_w, moe_gate, moe_up, moe_down;
  std::vector<float> shexp_gate, shexp_out;  // the shared expert's: [tokens], [tokens, hidden]
  std::vector<int32_t> expert_ids;
  std::vector<int32_t> tokens;      // all tokens of the step, chunk after chunk
  std::vector<int64_t> pos;         // position of each token
  std::vector<float> rope;          // [tokens, 2 * rope_dim] rotation coefficients
  std::vector<float> rope_swa;      // the same for the sliding-window layers
  std::vector<std::byte> act_scratch;
  std::vector<float> attn_scratch;
  std::vector<kc::attention_sequence> attn_seqs;  // one per chunk of the step
};

batch_decoder::batch_decoder(std::shared_ptr<const llama_model> model, int threads,
                             kv_cache_type kv)
    : model_(std::move(model)) {
  if (!model_) throw error(errc::invalid_argument, "batch_decoder: no model");
  if (threads < 1) throw error(errc::invalid_argument, "batch_decoder: threads must be >= 1");
  state_ = std::make_unique<state>(threads, kv);
}

batch_decoder::~batch_decoder() = default;

int64_t batch_decoder::kv_bytes_per_position(const llama_hparams& h, kv_cache_type kv) noexcept {
  return 2 * h.layers * h.kv_heads * h.head_dim * static_cast<int64_t>(kv_element_bytes(kv));
}

kv_cache_type batch_decoder::kv_type() const noexcept { return state_->kv; }

int batch_decoder::threads() const noexcept { return state_->pool.size(); }

uint32_t batch_decoder::open(int64_t capacity) {
  if (capacity <= 0) {
    throw error(errc::invalid_argument, "batch_decoder::open: capacity must be > 0 positions");
  }
  const llama_hparams& h = model_->hparams();
  const auto n = static_cast<size_t>(h.layers * capacity * h.kv_heads * h.head_dim) *
                 kv_element_bytes(state_->kv);
  sequence s;
  s.open = true;
  s.capacity = capacity;
  s.k.reset(new std::byte[n]);
  s.v.reset(new std::byte[n]);
  auto& seqs = state_->seqs;
  for (size_t i = 0; i < seqs.size(); ++i) {
    if (!seqs[i].open) {
      seqs[i] = std::move(s);
      return static_cast<uint32_t>(i);
    }
  }
  seqs.push_back(std::move(s));
  return static_cast<uint32_t>(seqs.size() - 1);
}

void batch_decoder::close(uint32_t seq) noexcept {
  if (seq < state_->seqs.size()) state_->seqs[seq] = sequence{};
}

namespace {
sequence& find(std::vector<sequence>& seqs, uint32_t seq, const char* op) {
  if (seq >= seqs.size() || !seqs[seq].open) {
    throw error(errc::invalid_argument,
                std::string("batch_decoder::") + op + ": no open sequence " + std::to_string(seq));
  }
  return seqs[seq];
}
}  // namespace

void batch_decoder::reset(uint32_t seq) { find(state_->seqs, seq, "reset").pos = 0; }

void batch_decoder::truncate(uint32_t seq, int64_t n) {
  sequence& sq = find(state_->seqs, seq, "truncate");
  if (n < 0 || n > sq.pos) {
    throw error(errc::invalid_argument, "batch_decoder::truncate: sequence " +
                                            std::to_string(seq) + " holds " +
                                            std::to_string(sq.pos) + " positions, not " +
                                            std::to_string(n));
  }
  sq.pos = n;
}

bool batch_decoder::interchangeable(int64_t capacity_a, int64_t capacity_b) const noexcept {
  const llama_hparams& h = model_->hparams();
  if (!h.rope_long_factors) return true;
  return (capacity_a > h.rope_original_context) == (capacity_b > h.rope_original_context);
}

void batch_decoder::copy_prefix(uint32_t from, uint32_t to, int64_t n) {
  const sequence& src = find(state_->seqs, from, "copy_prefix");
  sequence& dst = find(state_->seqs, to, "copy_prefix");
  auto refuse = [&](const std::string& why) {
    throw error(errc::invalid_argument, "batch_decoder::copy_prefix: " + std::to_string(n) +
                                            " positions of sequence " + std::to_string(from) +
                                            " into " + std::to_string(to) + ": " + why);
  };
  if (from == to) refuse("a sequence cannot be copied into itself");
  if (n < 0 || n > src.pos)
    refuse("the source holds " + std::to_string(src.pos) + " positions");
  if (n > dst.capacity)
    refuse("the destination has room for " + std::to_string(dst.capacity) + " positions");
  if (!interchangeable(src.capacity, dst.capacity))
    refuse("their capacities fall on both sides of the model's original context, so their "
           "positions are rotated with different RoPE factors");
  const llama_hparams& h = model_->hparams();
  const size_t row = static_cast<size_t>(h.kv_heads * h.head_dim) * kv_element_bytes(state_->kv);
  for (int64_t il = 0; il < h.layers; ++il) {
    const size_t src_at = static_cast<size_t>(il * src.capacity) * row;
    const size_t dst_at = static_cast<size_t>(il * dst.capacity) * row;
    std::memcpy(dst.k.get() + dst_at, src.k.get() + src_at, static_cast<size_t>(n) * row);
    std::memcpy(dst.v.get() + dst_at, src.v.get() + src_at, static_cast<size_t>(n) * row);
  }
  dst.pos = n;
}
int64_t batch_decoder::position(uint32_t seq) const {
  return find(state_->seqs, seq, "position").pos;
}
int64_t batch_decoder::capacity(uint32_t seq) const {
  return find(state_->seqs, seq, "capacity").capacity;
}
size_t batch_decoder::open_sequences() const noexcept {
  size_t n = 0;
  for (const auto& s : state_->seqs) n += s.open ? 1 : 0;
  return n;
}

std::span<const float> batch_decoder::decode(std::span<const chunk> chunks) {
  state& s = *state_;
  const llama_hparams& h = model_->hparams();
  const llama_model::impl& w = model_->weights();
  if (chunks.empty()) throw error(errc::invalid_argument, "batch_decoder::decode: no chunks");

  // Validate everything before touching any cache, so that a refused step changes nothing.
  int64_t T = 0;
  for (size_t c = 0; c < chunks.size(); ++c) {
    const chunk& ch = chunks[c];
    sequence& sq = find(s.seqs, ch.seq, "decode");
    for (size_t d = 0; d < c; ++d) {
      if (chunks[d].seq == ch.seq) {
        throw error(errc::invalid_argument, "batch_decoder::decode: sequence " +
                                                std::to_string(ch.seq) +
                                                " appears twice in one step; concatenate its tokens");
      }
    }
    const auto n = static_cast<int64_t>(ch.tokens.size());
    if (n == 0) {
      throw error(errc::invalid_argument, "batch_decoder::decode: empty chunk for sequence " +
                                              std::to_string(ch.seq));
    }
    if (sq.pos + n > sq.capacity) {
      throw error(errc::budget_exceeded,
                  "batch_decoder::decode: " + std::to_string(n) + " tokens at position " +
                    std::to_string(sq.pos) + " exceed the context of " +
                    std::to_string(sq.capacity) + " positions of sequence " +
                    std::to_string(ch.seq) + "; start a new sequence or reset it");
    }
    for (int32_t t : ch.tokens) {
      if (t < 0 || t >= h.vocab) {
        throw error(errc::invalid_argument,
                    "batch_decoder::decode: token id " + std::to_string(t) +
                      " is outside the vocabulary of " + std::to_string(h.vocab));
      }
    }
    T += n;
  }

  const int64_t H = h.hidden, q_dim = h.heads * h.head_dim, kv_dim = h.kv_heads * h.head_dim;
  const auto C = static_cast<int64_t>(chunks.size());
  auto fit = [](std::vector<float>& v, int64_t n) {
    if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
  };
  fit(s.x, T * H); fit(s.cur, T * H); fit(s.q, T * q_dim); fit(s.k, T * kv_dim);
  fit(s.v, T * kv_dim); fit(s.attn, T * q_dim); fit(s.proj, T * H);
  fit(s.gate, T * h.ffn); fit(s.up, T * h.ffn);
  fit(s.last, C * H); fit(s.logits, C * h.vocab); fit(s.rope, T * 2 * h.rope_dim);
  if (h.swa_window > 0) fit(s.rope_swa, T * 2 * h.rope_dim);
  s.tokens.clear();
  s.pos.clear();
  for (const chunk& ch : chunks) {
    const int64_t p0 = s.seqs[ch.seq].pos;
    for (size_t i = 0; i < ch.tokens.size(); ++i) {
      s.tokens.push_back(ch.tokens[i]);
      s.pos.push_back(p0 + static_cast<int64_t>(i));
    }
  }
  // Each token's rotation, once for all layers (LongRoPE: by its sequence's reserved context).
  {
    int64_t t = 0;
    for (const chunk& ch : chunks) {
      const bool long_factors =
          h.rope_long_factors && s.seqs[ch.seq].capacity > h.rope_original_context;
      for (size_t i = 0; i < ch.tokens.size(); ++i, ++t) {
        check(kc::rope_coefficients(long_factors ? w.rope_long : w.rope,
                                    s.pos[static_cast<size_t>(t)],
                                    s.rope.data() + t * 2 * h.rope_dim),
              "rope_coefficients");
        if (h.swa_window > 0)
          check(kc::rope_coefficients(w.rope_swa, s.pos[static_cast<size_t>(t)],
                                      s.rope_swa.data() + t * 2 * h.rope_dim),
                "rope_coefficients");
      }
    }
  }
  // y[t, :] += b for the T rows of an n-wide product; no-op without a bias.
  auto add_bias = [&](float* y, const float* b, int64_t n) {
    if (b == nullptr) return;
    for (int64_t t = 0; t < T; ++t)
      for (int64_t i = 0; i < n; ++i) y[t * n + i] += b[i];
  };

  // f16/bf16 weights see activations rounded as llama.cpp rounds them (ggml_activations).
  auto part = [](const matrix& m, float* y) {
    return kc::mat_mul_part{m.type, m.rows, m.data, m.row_stride, y, true};
  };
  auto mm = [&](const matrix& m, const float* x, float* y, int64_t tokens) {
    const kc::mat_mul_part p = part(m, y);
    check(kc::mat_mul(s.pool, &p, 1, m.n, x, tokens, s.act_scratch), "mat_mul");
  };
  // Matrices of one width by the same activations: one pass over the pool (q, k, v; gate, up).
  auto mm_fused = [&](std::initializer_list<kc::mat_mul_part> parts, const float* x) {
    check(kc::mat_mul(s.pool, parts.begin(), static_cast<int64_t>(parts.size()), H, x, T,
                      s.act_scratch),
          "mat_mul");
  };

  // The feed-forward of a mixture-of-experts layer, as llama.cpp's build_moe_ffn computes it:
  // router logits, softmax top-k (weights renormalised unless qwen2moe), each chosen expert's
  // SwiGLU over its tokens (MUL_MAT_ID), proj = Σ_slot weight·expert output in slot order, then
  // the shared expert's output where there is one.
  auto moe_ffn = [&](const layer_weights& l) {
    const int64_t E = h.experts, K = h.experts_used, P = T * K;
    fit(s.router, T * E); fit(s.expert_w, P); fit(s.moe_gate, P * h.ffn); fit(s.moe_up, P * h.ffn);
    fit(s.moe_down, P * H);
    s.expert_ids.resize(static_cast<size_t>(P));
    mm(l.router, s.cur.data(), s.router.data(), T);
    for (int64_t t = 0; t < T; ++t)
      check(kc::moe_route_softmax(s.router.data() + t * E, E, K, s.expert_ids.data() + t * K,
                                  s.expert_w.data() + t * K, h.experts_normalized),
            "moe_route_softmax");
    auto stack = [&](const matrix& m, size_t stride, float* y) {
      return kc::expert_matrices{m.type, E, m.rows, m.data, m.row_stride, stride, y};
    };
    const kc::expert_matrices gate_up[2] = {
        stack(l.gate_exps, l.gate_exps_stride, s.moe_gate.data()),
        stack(l.up_exps, l.up_exps_stride, s.moe_up.data())};
    check(kc::mat_mul_id(s.pool, gate_up, 2, H, s.cur.data(), {s.expert_ids.data(), P, K, true},
                         s.act_scratch),
          "mat_mul_id");
    check(kc::silu_mul(s.moe_gate.data(), s.moe_up.data(), P * h.ffn), "silu_mul");
    const kc::expert_matrices down = stack(l.down_exps, l.down_exps_stride, s.moe_down.data());
    check(kc::mat_mul_id(s.pool, &down, 1, h.ffn, s.moe_gate.data(),
                         {s.expert_ids.data(), P, K, false}, s.act_scratch),
          "mat_mul_id");
    for (int64_t t = 0; t < T; ++t) {
      const float* w = s.expert_w.data() + t * K;
      const float* d = s.moe_down.data() + t * K * H;
      float* out = s.proj.data() + t * H;
      for (int64_t i = 0; i < H; ++i) out[i] = d[i] * w[0];
      for (int64_t j = 1; j < K; ++j) {
        const float* dj = d + j * H;
        for (int64_t i = 0; i < H; ++i) {
          const float weighted = dj[i] * w[j];  // ggml_mul, then ggml_add: two roundings
          out[i] += weighted;
        }
      }
    }
    if (h.shared_ffn == 0) return;
    // The shared expert: SwiGLU of every token added to the routed sum; qwen2moe's times
    // sigmoid(gate_inp · x) computed as llama.cpp does (ggml_silu(x) / x: x / (1 + expf(-x)) / x).
    const int64_t F = h.shared_ffn;
    fit(s.gate, T * F); fit(s.up, T * F); fit(s.shexp_gate, T); fit(s.shexp_out, T * H);
    if (h.shared_gated) mm(l.shexp_gate_inp, s.cur.data(), s.shexp_gate.data(), T);
    mm_fused({part(l.shexp_gate, s.gate.data()), part(l.shexp_up, s.up.data())}, s.cur.data());
    check(kc::silu_mul(s.gate.data(), s.up.data(), T * F), "silu_mul");
    mm(l.shexp_down, s.gate.data(), s.shexp_out.data(), T);
    for (int64_t t = 0; t < T; ++t) {
      const float x = h.shared_gated ? s.shexp_gate[t] : 0.0f;
      const float gate = h.shared_gated ? x / (1.0f + std::exp(-x)) / x : 1.0f;  // ×1: exact
      for (int64_t i = 0; i < H; ++i) {
        const float shared = s.shexp_out[t * H + i] * gate;
        s.proj[t * H + i] += shared;
      }
    }
  };

  // [T, hidden] embeddings
  for (int64_t t = 0; t < T; ++t) {
    const auto* row = static_cast<const std::byte*>(w.token_embd.data) +
                      static_cast<size_t>(s.tokens[static_cast<size_t>(t)]) * w.token_embd.row_stride;
    check(kc::dequantize_row(w.token_embd.type, row, s.x.data() + t * H, H), "dequantize_row");
    if (h.embed_scale != 0)
      for (int64_t i = 0; i < H; ++i) s.x[t * H + i] *= h.embed_scale;  // ggml_scale
  }
  // RMSNorm of each token's row: in [T, hidden] to out (which may be in: the post-norms).
  auto norm_rows = [&](const float* in, const float* weight, float* out) {
    for (int64_t t = 0; t < T; ++t)
      check(kc::rms_norm(in + t * H, weight, out + t * H, H, h.rms_eps), "rms_norm");
  };
  // The input of attention and of the feed-forward: x RMS-normalised, or x itself (olmo2).
  auto pre_norm = [&](const float* weight) {
    if (weight == nullptr)
      std::copy_n(s.x.data(), T * H, s.cur.data());
    else
      norm_rows(s.x.data(), weight, s.cur.data());
  };
  // x += proj, proj first scaled by Granite's residual multiplier (ggml_scale).
  auto add_to_residual = [&]() {
    if (h.residual_scale != 0)
      for (int64_t i = 0; i < T * H; ++i) s.proj[i] *= h.residual_scale;
    for (int64_t i = 0; i < T * H; ++i) s.x[i] += s.proj[i];
  };
  const float kq_scale = 1.0f / std::sqrt(static_cast<float>(h.head_dim));
  const bool f16_cache = s.kv == kv_cache_type::f16;
  const size_t kv_row_bytes = static_cast<size_t>(kv_dim) * kv_element_bytes(s.kv);
  // A key or value row into the cache: copied, or rounded to f16 (ggml_cpy to an f16 cache).
  const auto store_row = [&](const float* x, std::byte* out) {
    if (!f16_cache) {
      std::memcpy(out, x, kv_row_bytes);
      return;
    }
    check(kc::to_f16(x, reinterpret_cast<uint16_t*>(out), kv_dim), "to_f16");
  };
  for (int64_t il = 0; il < h.layers; ++il) {
    const layer_weights& l = w.layers[static_cast<size_t>(il)];
    const bool sliding = h.layer_slides(il);
    const kc::attention_shape shape{h.heads,
                                    h.kv_heads,
                                    h.head_dim,
                                    h.scale_q                ? 1.0f
                                    : h.attention_scale != 0 ? h.attention_scale
                                                             : kq_scale,
                                    sliding ? h.swa_window : 0,
                                    h.attn_softcap,
                                    f16_cache ? kc::quant_type::f16 : kc::quant_type::f32};
    const std::vector<float>& rope = sliding ? s.rope_swa : s.rope;
    pre_norm(l.attn_norm);
    mm_fused({part(l.wq, s.q.data()), part(l.wk, s.k.data()), part(l.wv, s.v.data())},
             s.cur.data());
    add_bias(s.q.data(), l.bq, q_dim);
    add_bias(s.k.data(), l.bk, kv_dim);
    add_bias(s.v.data(), l.bv, kv_dim);
    // RoPE at each token's own position, then keys and values into each sequence's cache;
    // then attention for all sequences in one split of the pool.
    int64_t t = 0;
    s.attn_seqs.clear();
    for (const chunk& ch : chunks) {
      sequence& sq = s.seqs[ch.seq];
      std::byte* kc_layer = sq.k.get() + static_cast<size_t>(il * sq.capacity) * kv_row_bytes;
      std::byte* vc_layer = sq.v.get() + static_cast<size_t>(il * sq.capacity) * kv_row_bytes;
      const int64_t t0 = t;
      for (size_t i = 0; i < ch.tokens.size(); ++i, ++t) {
        const int64_t pos = s.pos[static_cast<size_t>(t)];
        const float* coef = rope.data() + t * 2 * h.rope_dim;
        if (l.q_norm != nullptr && h.qk_norm_whole) {  // olmo2: q and k normalised whole
          check(kc::rms_norm(s.q.data() + t * q_dim, l.q_norm, s.q.data() + t * q_dim, q_dim,
                             h.rms_eps),
                "rms_norm");
          check(kc::rms_norm(s.k.data() + t * kv_dim, l.k_norm, s.k.data() + t * kv_dim, kv_dim,
                             h.rms_eps),
                "rms_norm");
        } else if (l.q_norm != nullptr) {  // qwen3: each head normalised before the rotation
          for (int64_t hh = 0; hh < h.heads; ++hh) {
            float* qh = s.q.data() + t * q_dim + hh * h.head_dim;
            check(kc::rms_norm(qh, l.q_norm, qh, h.head_dim, h.rms_eps), "rms_norm");
          }
          for (int64_t hh = 0; hh < h.kv_heads; ++hh) {
            float* kh = s.k.data() + t * kv_dim + hh * h.head_dim;
            check(kc::rms_norm(kh, l.k_norm, kh, h.head_dim, h.rms_eps), "rms_norm");
          }
        }
        if (h.layer_rotates(il)) {
          const auto rotate = h.rope_neox ? kc::rope_apply_neox : kc::rope_apply;
          check(rotate(s.q.data() + t * q_dim, h.heads, h.head_dim, h.rope_dim, coef), "rope");
          check(rotate(s.k.data() + t * kv_dim, h.kv_heads, h.head_dim, h.rope_dim, coef),
                "rope");
        }
        if (h.scale_q)
          for (int64_t i = 0; i < q_dim; ++i) s.q[t * q_dim + i] *= h.q_scale;
        if (h.attn_temp_scale != 0) {  // llm_graph_input_attn_temp, then ggml_mul
          const float floor_pos = std::floor(static_cast<float>(pos) /
                                             static_cast<float>(h.rope_original_context));
          const auto temp = static_cast<float>(
              std::log(static_cast<double>(floor_pos) + 1.0) * h.attn_temp_scale + 1.0);
          for (int64_t i = 0; i < q_dim; ++i) s.q[t * q_dim + i] *= temp;
        }
        store_row(s.k.data() + t * kv_dim, kc_layer + static_cast<size_t>(pos) * kv_row_bytes);
        store_row(s.v.data() + t * kv_dim, vc_layer + static_cast<size_t>(pos) * kv_row_bytes);
      }
      s.attn_seqs.push_back({s.q.data() + t0 * q_dim, t - t0, sq.pos, kc_layer, vc_layer,
                             s.attn.data() + t0 * q_dim});
    }
    check(kc::attention(s.pool, shape, s.attn_seqs.data(), static_cast<int64_t>(s.attn_seqs.size()),
                        s.attn_scratch),
          "attention");
    mm(l.wo, s.attn.data(), s.proj.data(), T);
    add_bias(s.proj.data(), l.bo, H);
    if (l.attn_post_norm != nullptr) norm_rows(s.proj.data(), l.attn_post_norm, s.proj.data());
    add_to_residual();
    pre_norm(l.ffn_norm);
    if (h.experts > 0) {
      moe_ffn(l);
    } else {
      mm_fused({part(l.gate, s.gate.data()), part(l.up, s.up.data())}, s.cur.data());
      add_bias(s.gate.data(), l.b_gate, h.ffn);
      add_bias(s.up.data(), l.b_up, h.ffn);
      if (h.gelu)
        check(kc::gelu_mul(s.gate.data(), s.up.data(), T * h.ffn), "gelu_mul");
      else
        check(kc::silu_mul(s.gate.data(), s.up.data(), T * h.ffn), "silu_mul");
      mm(l.down, s.gate.data(), s.proj.data(), T);
      add_bias(s.proj.data(), l.b_down, H);
    }
    if (l.ffn_post_norm != nullptr) norm_rows(s.proj.data(), l.ffn_post_norm, s.proj.data());
    add_to_residual();
  }
  // Logits of each chunk's last token only: [C, vocab].
  int64_t end = 0;
  for (int64_t c = 0; c < C; ++c) {
    end += static_cast<int64_t>(chunks[static_cast<size_t>(c)].tokens.size());
    check(kc::rms_norm(s.x.data() + (end - 1) * H, w.output_norm, s.last.data() + c * H, H,
                       h.rms_eps),
          "rms_norm");
  }
  mm(w.output, s.last.data(), s.logits.data(), C);
  if (w.output_bias != nullptr) {
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < h.vocab; ++i) s.logits[c * h.vocab + i] += w.output_bias[i];
  }
  if (h.logit_scale != 0) {  // Granite: ggml_scale(1/logit_scale)
    const float inv = 1.0f / h.logit_scale;
    for (int64_t i = 0; i < C * h.vocab; ++i) s.logits[i] *= inv;
  }
  if (h.final_softcap != 0) {  // ggml_scale(1/cap), ggml_tanh, ggml_scale(cap)
    const float inv = 1.0f / h.final_softcap;
    for (int64_t i = 0; i < C * h.vocab; ++i)
      s.logits[i] = std::tanh(s.logits[i] * inv) * h.final_softcap;
  }
  for (const chunk& ch : chunks) s.seqs[ch.seq].pos += static_cast<int64_t>(ch.tokens.size());
  return {s.logits.data(), static_cast<size_t>(C * h.vocab)};
}

}  // namespace troupe::llama
