// The DeepSeek-V3 forward pass (HF transformers' DeepseekV3ForCausalLM semantics, fp32 activations):
// MLA over a latent cache in plain or absorbed form, YaRN rope on adjacent pairs, dense first
// layers, and MoE layers whose routed experts run on an expert_runner.

#include "troupe/deepseek/batch_decoder.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <string>

#include "cpu/quant.hpp"
#include "cpu/thread_pool.hpp"
#include "cpu/transformer_ops.hpp"
#include "deepseek/linear.hpp"
#include "troupe/error.hpp"

namespace troupe::deepseek {

namespace {

struct sequence {
  int64_t capacity = 0;
  int64_t pos = 0;
  std::unique_ptr<float[]> cache;  // [layers][capacity][kv_lora + rope]: normalised latent, rotated k_pe
};

// Per-thread buffers of the attention loop.
struct attention_scratch {
  std::vector<float> scores, q_abs, o_lat;
};

double yarn_get_mscale(double factor, double mscale) {
  return factor <= 1 ? 1.0 : 0.1 * mscale * std::log(factor) + 1.0;
}

}  // namespace

struct batch_decoder::state {
  explicit state(int threads) : pool(std::max(1, threads)) {}
  kc::thread_pool pool;
  std::map<uint32_t, sequence> seqs;
  uint32_t next_id = 0;
  std::vector<float> inv_freq;
  float rope_amplitude = 1.0f;
  float softmax_scale = 1.0f;

  // step buffers
  std::vector<float> h, xn, qa, q, kva, attn, proj, gate, up, logits, router_logits, moe_out, lat, kvd;
  std::vector<float> rope_cos, rope_sin, bf16_in;
  std::vector<std::byte> act;
  std::vector<attention_scratch> att;
  std::vector<expert_scratch> expert_buffers;
  expert_batch batch;
};

namespace {

class local_runner final : public expert_runner {
 public:
  local_runner(const model& m, kc::thread_pool& pool, std::vector<expert_scratch>& buffers)
      : m_(m), pool_(pool), buffers_(buffers) {}
  void run(const expert_batch& b) override {
    const auto E = static_cast<int64_t>(b.offsets.size()) - 1;
    buffers_.resize(static_cast<size_t>(pool_.size()));
    // Contiguous expert ranges per thread (as the shards own them); each thread its own buffers.
    pool_.parallel_for(E, [&](int64_t first, int64_t last, int thread) {
      compute_experts(m_, b, first, last, buffers_[static_cast<size_t>(thread)]);
    });
  }

 private:
  const model& m_;
  kc::thread_pool& pool_;
  std::vector<expert_scratch>& buffers_;
};

}  // namespace

batch_decoder::batch_decoder(std::shared_ptr<const model> m, options opts)
    : model_(std::move(m)), opts_(opts), state_(std::make_unique<state>(opts.threads)) {
  const config& c = model_->cfg();
  state_->inv_freq = c.rope_inv_freq();
  state_->softmax_scale = static_cast<float>(c.softmax_scale());
  if (c.yarn && c.yarn->factor > 1) {
    // HF's cos/sin amplitude ("attention_factor"): mscale / mscale_all_dim when both are given
    // (1 for Kimi and DeepSeek-V3), else 0.1·ln(factor) + 1.
    const auto& y = *c.yarn;
    state_->rope_amplitude =
        y.mscale != 0 && y.mscale_all_dim != 0
            ? static_cast<float>(yarn_get_mscale(y.factor, y.mscale) / yarn_get_mscale(y.factor, y.mscale_all_dim))
            : static_cast<float>(yarn_get_mscale(y.factor, 1.0));
  }
  state_->att.resize(static_cast<size_t>(state_->pool.size()));
}

batch_decoder::~batch_decoder() = default;

int64_t batch_decoder::kv_bytes_per_position(const config& c) noexcept {
  return c.num_hidden_layers * (c.kv_lora_rank + c.qk_rope_head_dim) * static_cast<int64_t>(sizeof(float));
}

uint32_t batch_decoder::open(int64_t capacity) {
  if (capacity <= 0)
    throw error(errc::invalid_argument, "deepseek::batch_decoder: a sequence needs a capacity > 0, got " +
                                            std::to_string(capacity));
  const config& c = model_->cfg();
  sequence s;
  s.capacity = capacity;
  // new[] without value-initialisation: pages are committed as positions are written.
  s.cache.reset(new float[static_cast<size_t>(c.num_hidden_layers * capacity *
                                              (c.kv_lora_rank + c.qk_rope_head_dim))]);
  while (state_->seqs.count(state_->next_id) != 0) ++state_->next_id;
  const uint32_t id = state_->next_id++;
  state_->seqs.emplace(id, std::move(s));
  return id;
}

void batch_decoder::close(uint32_t seq) noexcept { state_->seqs.erase(seq); }

namespace {
sequence& find_seq(std::map<uint32_t, sequence>& seqs, uint32_t id) {
  auto it = seqs.find(id);
  if (it == seqs.end())
    throw error(errc::invalid_argument, "deepseek::batch_decoder: no open sequence " + std::to_string(id));
  return it->second;
}
}  // namespace

void batch_decoder::reset(uint32_t seq) { find_seq(state_->seqs, seq).pos = 0; }

void batch_decoder::truncate(uint32_t seq, int64_t n) {
  sequence& sq = find_seq(state_->seqs, seq);
  if (n < 0 || n > sq.pos)
    throw error(errc::invalid_argument, "deepseek::batch_decoder::truncate: sequence " +
                                            std::to_string(seq) + " holds " +
                                            std::to_string(sq.pos) + " positions, not " +
                                            std::to_string(n));
  sq.pos = n;
}

void batch_decoder::copy_prefix(uint32_t from, uint32_t to, int64_t n) {
  const sequence& src = find_seq(state_->seqs, from);
  sequence& dst = find_seq(state_->seqs, to);
  auto refuse = [&](const std::string& why) {
    throw error(errc::invalid_argument, "deepseek::batch_decoder::copy_prefix: " +
                                            std::to_string(n) + " positions of sequence " +
                                            std::to_string(from) + " into " + std::to_string(to) +
                                            ": " + why);
  };
  if (from == to) refuse("a sequence cannot be copied into itself");
  if (n < 0 || n > src.pos) refuse("the source holds " + std::to_string(src.pos) + " positions");
  if (n > dst.capacity)
    refuse("the destination has room for " + std::to_string(dst.capacity) + " positions");
  const config& c = model_->cfg();
  const auto row = static_cast<size_t>(c.kv_lora_rank + c.qk_rope_head_dim);
  for (int64_t il = 0; il < c.num_hidden_layers; ++il) {
    std::memcpy(dst.cache.get() + static_cast<size_t>(il * dst.capacity) * row,
                src.cache.get() + static_cast<size_t>(il * src.capacity) * row,
                static_cast<size_t>(n) * row * sizeof(float));
  }
  dst.pos = n;
}
int64_t batch_decoder::position(uint32_t seq) const { return find_seq(state_->seqs, seq).pos; }
int64_t batch_decoder::capacity(uint32_t seq) const { return find_seq(state_->seqs, seq).capacity; }

std::span<const float> batch_decoder::decode(std::span<const chunk> chunks, bool all_positions) {
  const model& m = *model_;
  const config& c = m.cfg();
  state& s = *state_;
  if (chunks.empty()) throw error(errc::invalid_argument, "deepseek::batch_decoder::decode: no chunks");
  // Validate everything before changing anything.
  std::vector<sequence*> seq_of(chunks.size());
  int64_t T = 0;
  for (size_t i = 0; i < chunks.size(); ++i) {
    const auto& ch = chunks[i];
    if (ch.tokens.empty())
      throw error(errc::invalid_argument, "deepseek::batch_decoder::decode: chunk " + std::to_string(i) + " is empty");
    seq_of[i] = &find_seq(s.seqs, ch.seq);
    for (size_t j = 0; j < i; ++j)
      if (chunks[j].seq == ch.seq)
        throw error(errc::invalid_argument, "deepseek::batch_decoder::decode: sequence " +
                                                std::to_string(ch.seq) + " appears twice in one step");
    for (int32_t t : ch.tokens)
      if (t < 0 || t >= c.vocab_size)
        throw error(errc::invalid_argument, "deepseek::batch_decoder::decode: token " + std::to_string(t) +
                                                " is outside the vocabulary of " + std::to_string(c.vocab_size));
    if (seq_of[i]->pos + static_cast<int64_t>(ch.tokens.size()) > seq_of[i]->capacity)
      throw error(errc::budget_exceeded,
                  "deepseek::batch_decoder::decode: sequence " + std::to_string(ch.seq) + " holds " +
                      std::to_string(seq_of[i]->pos) + " positions; " + std::to_string(ch.tokens.size()) +
                      " more exceed its capacity of " + std::to_string(seq_of[i]->capacity));
    T += static_cast<int64_t>(ch.tokens.size());
  }

  const int64_t hidden = c.hidden_size, H = c.num_attention_heads;
  const int64_t nope = c.qk_nope_head_dim, rope = c.qk_rope_head_dim, vdim = c.v_head_dim;
  const int64_t qk = nope + rope, R = c.kv_lora_rank, lat_w = R + rope;
  const auto eps = static_cast<float>(c.rms_norm_eps);
  constexpr float lora_eps = 1e-6f;  // HF builds q_a/kv_a layernorms without an eps argument

  auto grow = [](std::vector<float>& v, int64_t n) {
    if (v.size() < static_cast<size_t>(n)) v.resize(static_cast<size_t>(n));
  };
  // y = W·x for `rows` rows; with bf16_activations the GEMM reads x rounded to bf16 (x untouched).
  const bool bf16 = opts_.bf16_activations;
  auto round_bf16 = [](float v) { return kc::bf16_to_fp32(kc::fp32_to_bf16(v)); };
  auto lin = [&](const linear_weight& w, const float* x, int64_t rows, float* y) {
    if (!bf16) return linear(s.pool, w, x, rows, y, s.act);
    grow(s.bf16_in, rows * w.cols);
    std::transform(x, x + rows * w.cols, s.bf16_in.begin(), round_bf16);
    linear(s.pool, w, s.bf16_in.data(), rows, y, s.act);
  };
  grow(s.h, T * hidden);
  grow(s.xn, T * hidden);
  grow(s.q, T * H * qk);
  grow(s.kva, T * lat_w);
  grow(s.attn, T * H * vdim);
  grow(s.proj, T * hidden);

  // Token bookkeeping: chunk and position of each row.
  std::vector<int64_t> tok_chunk(static_cast<size_t>(T)), tok_pos(static_cast<size_t>(T));
  {
    int64_t t = 0;
    for (size_t i = 0; i < chunks.size(); ++i)
      for (size_t j = 0; j < chunks[i].tokens.size(); ++j, ++t) {
        tok_chunk[t] = static_cast<int64_t>(i);
        tok_pos[t] = seq_of[i]->pos + static_cast<int64_t>(j);
        m.embed(chunks[i].tokens[j], s.h.data() + t * hidden);
      }
  }

  // cos/sin of every token's rope angles, once per step (every layer and head uses them):
  // [T, rope/2] each, the YaRN amplitude folded in.
  const int64_t pairs = rope / 2;
  grow(s.rope_cos, T * pairs);
  grow(s.rope_sin, T * pairs);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < pairs; ++i) {
      const float angle = static_cast<float>(tok_pos[t]) * s.inv_freq[static_cast<size_t>(i)];
      s.rope_cos[t * pairs + i] = static_cast<float>(std::cos(static_cast<double>(angle))) * s.rope_amplitude;
      s.rope_sin[t * pairs + i] = static_cast<float>(std::sin(static_cast<double>(angle))) * s.rope_amplitude;
    }
  auto rotate = [&](float* x, int64_t t) {
    const float* cs = s.rope_cos.data() + t * pairs;
    const float* sn = s.rope_sin.data() + t * pairs;
    for (int64_t i = 0; i < pairs; ++i) {
      const float x0 = x[2 * i], x1 = x[2 * i + 1];
      x[2 * i] = x0 * cs[i] - x1 * sn[i];
      x[2 * i + 1] = x1 * cs[i] + x0 * sn[i];
    }
  };

  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const layer_weights& L = m.layer(l);
    for (int64_t t = 0; t < T; ++t)
      kc::rms_norm(s.h.data() + t * hidden, L.attn_norm.data(), s.xn.data() + t * hidden, hidden, eps);

    // Queries.
    if (c.q_lora_rank > 0) {
      grow(s.qa, T * c.q_lora_rank);
      lin(L.q_a, s.xn.data(), T, s.qa.data());
      for (int64_t t = 0; t < T; ++t) {
        float* r = s.qa.data() + t * c.q_lora_rank;
        kc::rms_norm(r, L.q_a_norm.data(), r, c.q_lora_rank, lora_eps);
      }
      lin(L.q_b, s.qa.data(), T, s.q.data());
    } else {
      lin(L.q, s.xn.data(), T, s.q.data());
    }
    // Latent and shared rope key, written to each sequence's cache.
    lin(L.kv_a, s.xn.data(), T, s.kva.data());
    for (int64_t t = 0; t < T; ++t) {
      float* kv = s.kva.data() + t * lat_w;
      kc::rms_norm(kv, L.kv_a_norm.data(), kv, R, lora_eps);
      rotate(kv + R, t);
      for (int64_t h = 0; h < H; ++h) rotate(s.q.data() + (t * H + h) * qk + nope, t);
      sequence& sq = *seq_of[static_cast<size_t>(tok_chunk[t])];
      if (bf16) std::transform(kv, kv + lat_w, kv, round_bf16);  // the GPU's cache is bf16
      std::memcpy(sq.cache.get() + (l * sq.capacity + tok_pos[t]) * lat_w, kv,
                  static_cast<size_t>(lat_w) * sizeof(float));
    }

    // Attention, chunk by chunk.
    int64_t t0 = 0;
    for (size_t ci = 0; ci < chunks.size(); ++ci) {
      const int64_t n = static_cast<int64_t>(chunks[ci].tokens.size());
      sequence& sq = *seq_of[ci];
      const float* cache = sq.cache.get() + l * sq.capacity * lat_w;
      const int64_t P = sq.pos + n;  // positions visible to the chunk's last token
      const bool absorbed = opts_.attention == attention_form::absorbed ||
                            (opts_.attention == attention_form::automatic && n == 1);
      if (!absorbed) {
        // Expand the latents of every visible position through kv_b: [P, H·(nope + v)].
        grow(s.lat, P * R);
        for (int64_t p = 0; p < P; ++p)
          std::memcpy(s.lat.data() + p * R, cache + p * lat_w, static_cast<size_t>(R) * sizeof(float));
        grow(s.kvd, P * H * (nope + vdim));
        lin(L.kv_b, s.lat.data(), P, s.kvd.data());
      }
      s.pool.parallel_for(n * H, [&](int64_t begin, int64_t end, int thread) {
        attention_scratch& a = s.att[static_cast<size_t>(thread)];
        for (int64_t w = begin; w < end; ++w) {
          const int64_t i = w / H, h = w % H, t = t0 + i;
          const int64_t visible = sq.pos + i + 1;
          const float* qv = s.q.data() + (t * H + h) * qk;
          float* out = s.attn.data() + (t * H + h) * vdim;
          a.scores.resize(static_cast<size_t>(visible));
          if (absorbed) {
            a.q_abs.assign(static_cast<size_t>(R), 0.0f);
            const float* wuk = L.w_uk.data() + h * nope * R;
            for (int64_t d = 0; d < nope; ++d) {
              const float qd = qv[d];
              const float* row = wuk + d * R;
              for (int64_t r = 0; r < R; ++r) a.q_abs[r] += qd * row[r];
            }
            for (int64_t p = 0; p < visible; ++p) {
              const float* lat = cache + p * lat_w;
              float sc = 0;
              for (int64_t r = 0; r < R; ++r) sc += a.q_abs[r] * lat[r];
              for (int64_t d = 0; d < rope; ++d) sc += qv[nope + d] * lat[R + d];
              a.scores[p] = sc;
            }
            kc::softmax(a.scores.data(), visible, s.softmax_scale);
            a.o_lat.assign(static_cast<size_t>(R), 0.0f);
            for (int64_t p = 0; p < visible; ++p) {
              const float pw = a.scores[p];
              const float* lat = cache + p * lat_w;
              for (int64_t r = 0; r < R; ++r) a.o_lat[r] += pw * lat[r];
            }
            const float* wuv = L.w_uv.data() + h * vdim * R;
            for (int64_t d = 0; d < vdim; ++d) {
              float acc = 0;
              const float* row = wuv + d * R;
              for (int64_t r = 0; r < R; ++r) acc += row[r] * a.o_lat[r];
              out[d] = acc;
            }
          } else {
            const int64_t stride = H * (nope + vdim);
            for (int64_t p = 0; p < visible; ++p) {
              const float* k = s.kvd.data() + p * stride + h * (nope + vdim);
              const float* pe = cache + p * lat_w + R;
              float sc = 0;
              for (int64_t d = 0; d < nope; ++d) sc += qv[d] * k[d];
              for (int64_t d = 0; d < rope; ++d) sc += qv[nope + d] * pe[d];
              a.scores[p] = sc;
            }
            kc::softmax(a.scores.data(), visible, s.softmax_scale);
            std::fill(out, out + vdim, 0.0f);
            for (int64_t p = 0; p < visible; ++p) {
              const float pw = a.scores[p];
              const float* v = s.kvd.data() + p * stride + h * (nope + vdim) + nope;
              for (int64_t d = 0; d < vdim; ++d) out[d] += pw * v[d];
            }
          }
        }
      });
      t0 += n;
    }
    lin(L.o, s.attn.data(), T, s.proj.data());
    for (int64_t i = 0; i < T * hidden; ++i) s.h[i] += s.proj[i];

    // Feed-forward.
    for (int64_t t = 0; t < T; ++t)
      kc::rms_norm(s.h.data() + t * hidden, L.ffn_norm.data(), s.xn.data() + t * hidden, hidden, eps);
    auto mlp = [&](const mlp_weights& w, float* out) {
      const int64_t inter = w.gate.rows;
      grow(s.gate, T * inter);
      grow(s.up, T * inter);
      lin(w.gate, s.xn.data(), T, s.gate.data());
      lin(w.up, s.xn.data(), T, s.up.data());
      kc::silu_mul(s.gate.data(), s.up.data(), T * inter);
      lin(w.down, s.gate.data(), T, out);
    };
    if (!L.moe) {
      mlp(L.dense, s.proj.data());
      for (int64_t i = 0; i < T * hidden; ++i) s.h[i] += s.proj[i];
      continue;
    }
    const int64_t E = c.n_routed_experts, k = c.num_experts_per_tok;
    grow(s.router_logits, T * E);
    {
      const auto st = kc::mat_mul(s.pool, kc::quant_type::f32, E, hidden, L.router.data(),
                                  static_cast<size_t>(hidden) * sizeof(float), s.xn.data(), T,
                                  s.router_logits.data(), s.act);
      if (st != kc::status::ok)
        throw error(errc::internal, std::string("deepseek: router product failed: ") + kc::to_string(st));
    }
    expert_batch& b = s.batch;
    b.layer = l;
    b.tokens = T;
    b.top_k = k;
    b.hidden = hidden;
    b.x = s.xn.data();
    b.ids.resize(static_cast<size_t>(T * k));
    b.weights.resize(static_cast<size_t>(T * k));
    route(c, s.router_logits.data(), L.router_bias.data(), T, b.ids.data(), b.weights.data());
    b.group(E);
    grow(s.moe_out, T * k * hidden);
    b.out = s.moe_out.data();
    b.bf16 = bf16;
    if (opts_.experts != nullptr) {
      opts_.experts->run(b);
    } else {
      local_runner runner(m, s.pool, s.expert_buffers);
      runner.run(b);
    }
    if (c.n_shared_experts > 0) {
      mlp(L.shared, s.proj.data());
    } else {
      std::fill(s.proj.begin(), s.proj.begin() + T * hidden, 0.0f);
    }
    for (int64_t t = 0; t < T; ++t) {
      float* ht = s.h.data() + t * hidden;
      const float* sh = s.proj.data() + t * hidden;
      for (int64_t d = 0; d < hidden; ++d) {
        float routed = 0;
        for (int64_t j = 0; j < k; ++j) routed += b.weights[t * k + j] * s.moe_out[(t * k + j) * hidden + d];
        ht[d] += routed + sh[d];
      }
    }
  }

  // Final norm and logits for the rows asked for.
  std::vector<int64_t> rows;
  if (all_positions) {
    for (int64_t t = 0; t < T; ++t) rows.push_back(t);
  } else {
    int64_t t = 0;
    for (const auto& ch : chunks) rows.push_back((t += static_cast<int64_t>(ch.tokens.size())) - 1);
  }
  const auto R_out = static_cast<int64_t>(rows.size());
  for (int64_t i = 0; i < R_out; ++i)
    kc::rms_norm(s.h.data() + rows[i] * hidden, m.final_norm().data(), s.xn.data() + i * hidden, hidden, eps);
  grow(s.logits, R_out * c.vocab_size);
  lin(m.lm_head(), s.xn.data(), R_out, s.logits.data());

  for (size_t i = 0; i < chunks.size(); ++i) seq_of[i]->pos += static_cast<int64_t>(chunks[i].tokens.size());
  return {s.logits.data(), static_cast<size_t>(R_out * c.vocab_size)};
}

}  // namespace troupe::deepseek
