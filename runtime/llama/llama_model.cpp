// llama-architecture forward pass on the CPU kernels (see troupe/llama/llama_model.hpp).

#include "troupe/llama/llama_model.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "cpu/quant.hpp"
#include "cpu/thread_pool.hpp"
#include "cpu/transformer_ops.hpp"
#include "troupe/error.hpp"

namespace troupe::llama {

namespace kc = troupe::kernels::cpu;

namespace {

/// A 2-D weight as the kernels take it: `rows` rows of `n` elements of `type`.
struct matrix {
  kc::quant_type type{};
  int64_t rows = 0;
  int64_t n = 0;
  size_t row_stride = 0;
  const void* data = nullptr;
};

struct layer_weights {
  const float* attn_norm = nullptr;  // [hidden]
  matrix wq, wk, wv, wo;             // [q_dim|kv_dim, hidden], wo [hidden, q_dim]
  const float* ffn_norm = nullptr;   // [hidden]
  matrix gate, up, down;             // [ffn, hidden] ×2, down [hidden, ffn]
};

[[noreturn]] void fail(errc code, const gguf_file& f, const std::string& what) {
  throw error(code, f.path().string() + ": " + what);
}

matrix load_matrix(const gguf_file& f, const std::string& name, int64_t n, int64_t rows,
                   bool needs_dot = true) {
  const gguf_tensor& t = f.tensor(name);
  if (t.shape.size() != 2 || static_cast<int64_t>(t.shape[0]) != n ||
      static_cast<int64_t>(t.shape[1]) != rows) {
    std::string shape;
    for (auto d : t.shape) shape += (shape.empty() ? "" : ", ") + std::to_string(d);
    fail(errc::parse_error, f,
         "tensor " + name + " has shape [" + shape + "], expected [" + std::to_string(n) + ", " +
             std::to_string(rows) + "]");
  }
  matrix m;
  m.type = static_cast<kc::quant_type>(t.type);
  kc::quant_type act{};
  const int64_t rb = kc::row_bytes(m.type, n);
  if (rb <= 0 || (needs_dot && !kc::activation_type(m.type, &act))) {
    fail(errc::unsupported, f,
         "tensor " + name + " has type " + std::string(ggml_type_name(t.type)) +
             ", which the CPU kernels do not multiply (supported: F32, F16, BF16, Q4_0, Q4_1, "
             "Q8_0, Q4_K, Q6_K)");
  }
  m.rows = rows;
  m.n = n;
  m.row_stride = static_cast<size_t>(rb);
  m.data = t.data;
  return m;
}

const float* load_vector(const gguf_file& f, const std::string& name, int64_t n) {
  const gguf_tensor& t = f.tensor(name);
  if (t.type != 0 || t.elements() != static_cast<uint64_t>(n)) {
    fail(errc::unsupported, f,
         "tensor " + name + " must be F32 with " + std::to_string(n) + " elements (it is " +
             std::string(ggml_type_name(t.type)) + " with " + std::to_string(t.elements()) + ")");
  }
  return reinterpret_cast<const float*>(t.data);
}

void check(kc::status s, const char* op) {
  if (s != kc::status::ok) {
    throw error(errc::internal, std::string("llama forward pass: kernel ") + op + " failed: " +
                                    kc::to_string(s));
  }
}

}  // namespace

struct llama_model::impl {
  matrix token_embd;  // [vocab, hidden]
  matrix output;      // [vocab, hidden]; token_embd when tied
  const float* output_norm = nullptr;
  std::vector<layer_weights> layers;
};

llama_model::llama_model(gguf_file file) : file_(std::move(file)), impl_(std::make_unique<impl>()) {}
llama_model::~llama_model() = default;

std::shared_ptr<const llama_model> llama_model::load(const std::filesystem::path& path) {
  std::shared_ptr<llama_model> m(new llama_model(gguf_file::open(path)));
  const gguf_file& f = m->file_;
  const std::string arch = f.get_string("general.architecture");
  if (arch != "llama") {
    fail(errc::unsupported, f,
         "architecture '" + arch + "' is not supported (only 'llama': SmolLM2, Llama, TinyLlama)");
  }
  llama_hparams& h = m->hparams_;
  h.hidden = f.get_u32("llama.embedding_length");
  h.layers = f.get_u32("llama.block_count");
  h.ffn = f.get_u32("llama.feed_forward_length");
  h.heads = f.get_u32("llama.attention.head_count");
  h.kv_heads = f.get_u32("llama.attention.head_count_kv", static_cast<uint32_t>(h.heads));
  h.context = f.get_u32("llama.context_length", 2048);
  h.rms_eps = f.get_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  h.rope_base = f.get_f32("llama.rope.freq_base", 10000.0f);
  if (h.heads <= 0 || h.kv_heads <= 0 || h.hidden % h.heads != 0 || h.heads % h.kv_heads != 0) {
    fail(errc::parse_error, f,
         "inconsistent attention shape: embedding_length " + std::to_string(h.hidden) +
             ", head_count " + std::to_string(h.heads) + ", head_count_kv " +
             std::to_string(h.kv_heads));
  }
  h.head_dim = h.hidden / h.heads;
  h.rope_dim = f.get_u32("llama.rope.dimension_count", static_cast<uint32_t>(h.head_dim));
  if (f.contains("llama.rope.scaling.type") &&
      f.get_string("llama.rope.scaling.type") != "none" &&
      f.get_f32("llama.rope.scaling.factor", 1.0f) != 1.0f) {
    fail(errc::unsupported, f, "rope scaling (llama.rope.scaling.*) is not supported yet");
  }
  const gguf_tensor& embd = f.tensor("token_embd.weight");
  if (embd.shape.size() != 2) fail(errc::parse_error, f, "token_embd.weight is not 2-D");
  h.vocab = static_cast<int64_t>(embd.shape[1]);

  impl& w = *m->impl_;
  w.token_embd = load_matrix(f, "token_embd.weight", h.hidden, h.vocab, false);
  w.output = f.find_tensor("output.weight") ? load_matrix(f, "output.weight", h.hidden, h.vocab)
                                            : load_matrix(f, "token_embd.weight", h.hidden, h.vocab);
  w.output_norm = load_vector(f, "output_norm.weight", h.hidden);
  const int64_t q_dim = h.heads * h.head_dim;
  const int64_t kv_dim = h.kv_heads * h.head_dim;
  w.layers.resize(static_cast<size_t>(h.layers));
  for (int64_t i = 0; i < h.layers; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    layer_weights& l = w.layers[static_cast<size_t>(i)];
    l.attn_norm = load_vector(f, p + "attn_norm.weight", h.hidden);
    l.wq = load_matrix(f, p + "attn_q.weight", h.hidden, q_dim);
    l.wk = load_matrix(f, p + "attn_k.weight", h.hidden, kv_dim);
    l.wv = load_matrix(f, p + "attn_v.weight", h.hidden, kv_dim);
    l.wo = load_matrix(f, p + "attn_output.weight", q_dim, h.hidden);
    l.ffn_norm = load_vector(f, p + "ffn_norm.weight", h.hidden);
    l.gate = load_matrix(f, p + "ffn_gate.weight", h.hidden, h.ffn);
    l.up = load_matrix(f, p + "ffn_up.weight", h.hidden, h.ffn);
    l.down = load_matrix(f, p + "ffn_down.weight", h.ffn, h.hidden);
  }
  return m;
}

struct llama_session::state {
  state(int threads) : pool(threads) {}
  kc::thread_pool pool;
  int64_t context = 0;
  int64_t pos = 0;
  std::vector<float> k_cache, v_cache;  // [layers, context, kv_dim]
  std::vector<float> x, cur, q, k, v, attn, proj, gate, up;  // per batch
  std::vector<float> logits;
  std::vector<std::byte> act_scratch;
  std::vector<float> attn_scratch;
};

llama_session::llama_session(std::shared_ptr<const llama_model> model, int64_t context,
                             int threads)
    : model_(std::move(model)), state_(std::make_unique<state>(threads)) {
  if (!model_) throw error(errc::invalid_argument, "llama_session: no model");
  if (context <= 0) throw error(errc::invalid_argument, "llama_session: context must be > 0");
  const llama_hparams& h = model_->hparams();
  state_->context = context;
  const auto cache = static_cast<size_t>(h.layers * context * h.kv_heads * h.head_dim);
  state_->k_cache.assign(cache, 0.0f);
  state_->v_cache.assign(cache, 0.0f);
  state_->logits.resize(static_cast<size_t>(h.vocab));
}

llama_session::~llama_session() = default;
int64_t llama_session::position() const noexcept { return state_->pos; }
int64_t llama_session::context() const noexcept { return state_->context; }
void llama_session::reset() noexcept { state_->pos = 0; }

std::span<const float> llama_session::decode(std::span<const int32_t> tokens) {
  state& s = *state_;
  const llama_hparams& h = model_->hparams();
  const llama_model::impl& w = model_->weights();
  const auto T = static_cast<int64_t>(tokens.size());
  if (T == 0) throw error(errc::invalid_argument, "llama_session::decode: empty batch");
  if (s.pos + T > s.context) {
    throw error(errc::budget_exceeded,
                "llama_session::decode: " + std::to_string(T) + " tokens at position " +
                    std::to_string(s.pos) + " exceed the context of " +
                    std::to_string(s.context) + " positions; start a new session or reset()");
  }
  for (int32_t t : tokens) {
    if (t < 0 || t >= h.vocab) {
      throw error(errc::invalid_argument, "llama_session::decode: token id " + std::to_string(t) +
                                              " is outside the vocabulary of " +
                                              std::to_string(h.vocab));
    }
  }
  const int64_t H = h.hidden, q_dim = h.heads * h.head_dim, kv_dim = h.kv_heads * h.head_dim;
  auto fit = [](std::vector<float>& v, int64_t n) {
    if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
  };
  fit(s.x, T * H); fit(s.cur, T * H); fit(s.q, T * q_dim); fit(s.k, T * kv_dim);
  fit(s.v, T * kv_dim); fit(s.attn, T * q_dim); fit(s.proj, T * H);
  fit(s.gate, T * h.ffn); fit(s.up, T * h.ffn);

  auto mm = [&](const matrix& m, const float* x, float* y) {
    check(kc::mat_mul(s.pool, m.type, m.rows, m.n, m.data, m.row_stride, x, T, y, s.act_scratch),
          "mat_mul");
  };

  // [T, hidden] embeddings
  for (int64_t t = 0; t < T; ++t) {
    const auto* row = static_cast<const std::byte*>(w.token_embd.data) +
                      static_cast<size_t>(tokens[static_cast<size_t>(t)]) * w.token_embd.row_stride;
    check(kc::dequantize_row(w.token_embd.type, row, s.x.data() + t * H, H), "dequantize_row");
  }
  const kc::attention_shape shape{h.heads, h.kv_heads, h.head_dim,
                                  1.0f / std::sqrt(static_cast<float>(h.head_dim))};
  for (int64_t il = 0; il < h.layers; ++il) {
    const layer_weights& l = w.layers[static_cast<size_t>(il)];
    float* kc_layer = s.k_cache.data() + il * s.context * kv_dim;
    float* vc_layer = s.v_cache.data() + il * s.context * kv_dim;
    for (int64_t t = 0; t < T; ++t)
      check(kc::rms_norm(s.x.data() + t * H, l.attn_norm, s.cur.data() + t * H, H, h.rms_eps),
            "rms_norm");
    mm(l.wq, s.cur.data(), s.q.data());
    mm(l.wk, s.cur.data(), s.k.data());
    mm(l.wv, s.cur.data(), s.v.data());
    for (int64_t t = 0; t < T; ++t) {
      const int64_t pos = s.pos + t;
      check(kc::rope_norm(s.q.data() + t * q_dim, h.heads, h.head_dim, h.rope_dim, pos,
                          h.rope_base), "rope_norm");
      check(kc::rope_norm(s.k.data() + t * kv_dim, h.kv_heads, h.head_dim, h.rope_dim, pos,
                          h.rope_base), "rope_norm");
      std::memcpy(kc_layer + pos * kv_dim, s.k.data() + t * kv_dim, sizeof(float) * kv_dim);
      std::memcpy(vc_layer + pos * kv_dim, s.v.data() + t * kv_dim, sizeof(float) * kv_dim);
    }
    check(kc::attention(s.pool, shape, s.q.data(), T, s.pos, kc_layer, vc_layer, s.attn.data(),
                        s.attn_scratch), "attention");
    mm(l.wo, s.attn.data(), s.proj.data());
    for (int64_t i = 0; i < T * H; ++i) s.x[i] += s.proj[i];
    for (int64_t t = 0; t < T; ++t)
      check(kc::rms_norm(s.x.data() + t * H, l.ffn_norm, s.cur.data() + t * H, H, h.rms_eps),
            "rms_norm");
    mm(l.gate, s.cur.data(), s.gate.data());
    mm(l.up, s.cur.data(), s.up.data());
    check(kc::silu_mul(s.gate.data(), s.up.data(), T * h.ffn), "silu_mul");
    mm(l.down, s.gate.data(), s.proj.data());
    for (int64_t i = 0; i < T * H; ++i) s.x[i] += s.proj[i];
  }
  // Logits of the last token only.
  check(kc::rms_norm(s.x.data() + (T - 1) * H, w.output_norm, s.cur.data(), H, h.rms_eps),
        "rms_norm");
  check(kc::mat_mul(s.pool, w.output.type, w.output.rows, w.output.n, w.output.data,
                    w.output.row_stride, s.cur.data(), 1, s.logits.data(), s.act_scratch),
        "mat_mul");
  s.pos += T;
  return s.logits;
}

}  // namespace troupe::llama
