// Forward-pass kernels of a llama-style decoder (see transformer_ops.hpp).

#include "cpu/transformer_ops.hpp"

#include <algorithm>
#include <cstddef>
#include <atomic>
#include <cmath>
#include <limits>
#include <vector>

#include "cpu/float_dot.hpp"
#include "cpu/float_dot_impl.hpp"
#include "cpu/transformer_ops_impl.hpp"

namespace troupe::kernels::cpu {

namespace detail {

float expf_ggml(float x) noexcept {
  const float r = 0x1.8p23f;
  const float z = std::fma(x, 0x1.715476p+0f, r);
  const float n = z - r;
  const float b = std::fma(-n, 0x1.7f7d1cp-20f, std::fma(-n, 0x1.62e4p-1f, x));
  if (std::fabs(n) > 192.0f) return n <= 0.0f ? 0.0f : std::numeric_limits<float>::infinity();
  const float u = b * b;
  const float j = std::fma(std::fma(std::fma(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u,
                                    std::fma(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)),
                           u, std::fma(0x1.ffffecp-1f, b, 1.0f));
  return std::ldexp(j, static_cast<int>(n));
}

namespace {

/// ggml_vec_dot_f32 (AVX-512): four 16-lane FMA accumulators per 64 elements, folded
/// (0+2) + (1+3), reduced, then the tail added in float as GCC 12 -O3 compiles ggml's loop:
/// in order, products rounded, but the last (n % 64) % 8 fused (float_dot.hpp).
float dot_vec_ggml(const float* x, const float* y, int64_t n) noexcept {
  const int64_t np = n & ~int64_t{63};
  float acc[4][16] = {};
  for (int64_t i = 0; i < np; i += 64)
    for (int g = 0; g < 4; ++g)
      for (int l = 0; l < 16; ++l)
        acc[g][l] = std::fma(x[i + g * 16 + l], y[i + g * 16 + l], acc[g][l]);
  float s[16];
  for (int l = 0; l < 16; ++l) s[l] = (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]);
  float sum = reduce16(s);
  const int64_t fused = n - (n - np) % 8;
  for (int64_t i = np; i < fused; ++i) sum += x[i] * y[i];
  for (int64_t i = fused; i < n; ++i) sum = std::fma(x[i], y[i], sum);
  return sum;
}

void swiglu_scalar(float* gate, const float* up, int64_t n) noexcept {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    gate[i] = (g / (1.0f + expf_ggml(0.0f - g))) * up[i];
  }
}

void rope_scalar(float* x, int64_t heads, int64_t head_dim, int64_t rope_dim, const float* ca,
                 const float* cb) noexcept {
  for (int64_t h = 0; h < heads; ++h) {
    float* v = x + h * head_dim;
    for (int64_t i = 0; i < rope_dim; i += 2) {
      const float x0 = v[i], x1 = v[i + 1];
      v[i] = std::fma(x0, ca[i], x1 * cb[i]);
      v[i + 1] = std::fma(x0, ca[i + 1], x1 * cb[i + 1]);
    }
  }
}

void attention_head_scalar(const attention_head_args& a) noexcept {
  const int64_t n = a.n, d = a.head_dim;
  float* s = a.scores;
  if (a.kv_f16) {
    f16_scores(a, isa::scalar);
  } else {
    const auto* k = static_cast<const float*>(a.k);
    for (int64_t j = 0; j < a.first; ++j) s[j] = -std::numeric_limits<float>::infinity();
    for (int64_t j = a.first; j < n; ++j) s[j] = dot_vec_ggml(k + j * a.stride, a.q, d);
  }
  softcap_scores(s, a.first, n, a.softcap);
  softmax_ggml(s, n, a.scale);
  if (a.kv_f16) round_to_f16(s, n);
  // Σ_j p_j·v_j into the accumulator lane that ggml's order gives position j (see
  // attention_head_args::single_token); lanes of the padding positions stay 0 as p is 0 there.
  const int64_t sets = a.single_token ? 4 : 1;
  float* acc = a.acc;  // [sets, 16, d]
  std::fill(acc, acc + sets * 16 * d, 0.0f);
  const auto v_at = [&](int64_t j, int64_t i) {
    const int64_t at = j * a.stride + i;
    return a.kv_f16 ? fp16_to_fp32(static_cast<const uint16_t*>(a.v)[at])
                    : static_cast<const float*>(a.v)[at];
  };
  for (int64_t j = 0; j < n; ++j) {
    const float p = s[j];
    float* al = acc + (j % (16 * sets)) * d;
    for (int64_t i = 0; i < d; ++i) al[i] = std::fma(v_at(j, i), p, al[i]);
  }
  float lanes[16];
  for (int64_t i = 0; i < d; ++i) {
    for (int l = 0; l < 16; ++l) {
      const auto at = [&](int g) { return acc[(g * 16 + l) * d + i]; };
      lanes[l] = sets == 1 ? at(0) : (at(0) + at(2)) + (at(1) + at(3));
    }
    a.out[i] = reduce16(lanes);
  }
}

/// One block of ggml's x86 quantize_row_q8_{0,1}: writes qs, returns d (fp32) and Σq.
float quantize_block_ggml(const float* xb, int8_t* qs, int* sum) noexcept {
  float amax = 0.0f;
  for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(xb[j]));
  const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
  *sum = 0;
  for (int j = 0; j < 32; ++j) {
    qs[j] = static_cast<int8_t>(std::nearbyint(xb[j] * id));
    *sum += qs[j];
  }
  return amax / 127.0f;
}

void quantize_q8_1_scalar(const float* x, void* vy, int64_t n) noexcept {
  auto* y = static_cast<block_q8_1*>(vy);
  for (int64_t b = 0; b < n / qk8_1; ++b) {
    int sum = 0;
    const float d = quantize_block_ggml(x + b * qk8_1, y[b].qs, &sum);
    y[b].d = fp16_to_fp32(fp32_to_fp16(d));
    y[b].s = fp16_to_fp32(fp32_to_fp16(d * static_cast<float>(sum)));
  }
}

void quantize_q8_0_scalar(const float* x, void* vy, int64_t n) noexcept {
  auto* y = static_cast<block_q8_0*>(vy);
  for (int64_t b = 0; b < n / qk8_0; ++b) {
    int sum = 0;
    y[b].d = fp32_to_fp16(quantize_block_ggml(x + b * qk8_0, y[b].qs, &sum));
  }
}

}  // namespace

void f16_scores(const attention_head_args& a, isa level) noexcept {
  const int64_t n = a.n, d = a.head_dim;
  float* s = a.scores;
  for (int64_t j = 0; j < a.first; ++j) s[j] = -std::numeric_limits<float>::infinity();
  ggml_float_activations(quant_type::f16, a.q, a.q16, d, level);
  const ggml_float_order order =
      a.single_token || d % 16 != 0 ? ggml_float_order::vec_dot : ggml_float_order::tinyblas;
  const auto* k = static_cast<const uint16_t*>(a.k) + a.first * a.stride;
  ggml_float_mat_mat(quant_type::f16, order, n - a.first, d, k,
                     static_cast<size_t>(a.stride) * sizeof(uint16_t), a.q16,
                     static_cast<size_t>(d) * sizeof(float), 1, s + a.first, n - a.first, level);
}

void round_to_f16(float* p, int64_t n) noexcept {
  for (int64_t j = 0; j < n; ++j) p[j] = fp16_to_fp32(fp32_to_fp16(p[j]));
}

void softmax_ggml(float* x, int64_t n, float scale) noexcept {
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) {
    x[i] *= scale;
    mx = std::max(mx, x[i]);
  }
  double sum = 0.0;
  float chunk[16];
  for (int64_t c = 0; c < n; c += 16) {
    for (int l = 0; l < 16; ++l) {
      chunk[l] = c + l < n ? expf_ggml(x[c + l] - mx) : 0.0f;
      if (c + l < n) x[c + l] = chunk[l];
    }
    sum += static_cast<double>(reduce16(chunk));
  }
  const auto inv = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

const float* gelu_table() noexcept {
  static const std::vector<float> table = [] {
    std::vector<float> t(1 << 16);
    constexpr float coef_a = 0.044715f, sqrt_2_over_pi = 0.79788456080286535587989211986876f;
    for (uint32_t i = 0; i < t.size(); ++i) {
      const float x = fp16_to_fp32(static_cast<uint16_t>(i));
      const float inner = sqrt_2_over_pi * x * std::fma(coef_a * x, x, 1.0f);
      t[i] = fp16_to_fp32(fp32_to_fp16(0.5f * x * (1.0f + std::tanh(inner))));
    }
    return t;
  }();
  return table.data();
}

namespace {
void to_f16_scalar(const float* x, uint16_t* y, int64_t n) noexcept {
  for (int64_t i = 0; i < n; ++i) y[i] = fp32_to_fp16(x[i]);
}

void geglu_scalar(float* gate, const float* up, int64_t n) noexcept {
  const float* table = gelu_table();
  for (int64_t i = 0; i < n; ++i) {
    const float x = gate[i];
    if (x <= -10.0f) {
      gate[i] = 0.0f;
    } else if (x >= 10.0f) {
      gate[i] = x * up[i];
    } else {
      gate[i] = table[fp32_to_fp16(x)] * up[i];
    }
  }
}
}  // namespace

const transformer_table& scalar_transformer_kernels() noexcept {
  static constexpr transformer_table table{swiglu_scalar,        rope_scalar,
                                           attention_head_scalar, quantize_q8_1_scalar,
                                           quantize_q8_0_scalar,  geglu_scalar,
                                           to_f16_scalar};
  return table;
}

std::vector<const transformer_table*> transformer_kernel_variants() {
  std::vector<const transformer_table*> v{&scalar_transformer_kernels()};
#if defined(TROUPE_KERNELS_HAVE_AVX2)
  if (isa_available(isa::avx2)) v.push_back(&avx2_transformer_kernels());
#endif
  return v;
}

const transformer_table& active_transformer_kernels() noexcept {
  static const transformer_table* const table = [] {
#if defined(TROUPE_KERNELS_HAVE_AVX2)
    if (static_cast<int>(best_isa()) >= static_cast<int>(isa::avx2))
      return &avx2_transformer_kernels();
#endif
    return &scalar_transformer_kernels();
  }();
  return *table;
}

status quantize_activation_row(quant_type key, const float* x, void* out, int64_t n) noexcept {
  switch (key) {
    case quant_type::f32:
    case quant_type::f16:
    case quant_type::bf16:
      return ggml_float_activations(key, x, out, n);
    case quant_type::q8_1:
      active_transformer_kernels().quantize_q8_1(x, out, n);
      return status::ok;
    case quant_type::q8_0:
      active_transformer_kernels().quantize_q8_0(x, out, n);
      return status::ok;
    default:
      return quantize_row(key, x, out, n);
  }
}

}  // namespace detail

namespace {

const detail::transformer_table& kernels() noexcept { return detail::active_transformer_kernels(); }

}  // namespace

status rms_norm(const float* x, const float* w, float* y, int64_t n, float eps) noexcept {
  if (n <= 0) return status::bad_size;
  if (x == nullptr || w == nullptr || y == nullptr) return status::null_pointer;
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i] * x[i]);
  const auto mean = static_cast<float>(sum / static_cast<double>(n));
  const float scale = 1.0f / std::sqrt(mean + eps);
  for (int64_t i = 0; i < n; ++i) y[i] = (x[i] * scale) * w[i];
  return status::ok;
}

void rope_yarn_corr_dims(int64_t dims, int64_t n_ctx_orig, float freq_base, float beta_fast,
                         float beta_slow, float* low, float* high) noexcept {
  const auto corr_dim = [&](float n_rot) {
    return static_cast<float>(dims) *
           std::log(static_cast<float>(n_ctx_orig) / (n_rot * 2 * static_cast<float>(M_PI))) /
           (2 * std::log(freq_base));
  };
  *low = std::max(0.0f, std::floor(corr_dim(beta_fast)));
  *high = std::min(static_cast<float>(dims - 1), std::ceil(corr_dim(beta_slow)));
}

status rope_coefficients(const rope_params& p, int64_t pos, float* coef) noexcept {
  if (p.dims <= 0 || p.dims % 2 != 0 || p.dims > 1024) return status::bad_size;
  if (coef == nullptr) return status::null_pointer;
  const float theta_scale = std::pow(p.freq_base, -2.0f / static_cast<float>(p.dims));
  float* ca = coef;
  float* cb = coef + p.dims;
  float theta = static_cast<float>(pos);
  for (int64_t i = 0; i < p.dims; i += 2) {
    const float extrap = p.freq_factors != nullptr ? theta / p.freq_factors[i / 2] : theta;
    float angle = p.freq_scale * extrap;
    float mscale = p.attn_factor;
    if (p.ext_factor != 0.0f) {
      const float y = (static_cast<float>(i / 2) - p.corr_low) /
                      std::max(0.001f, p.corr_high - p.corr_low);
      const float ramp = (1 - std::min(1.0f, std::max(0.0f, y))) * p.ext_factor;
      angle = angle * (1 - ramp) + extrap * ramp;
      mscale *= 1.0f + 0.1f * std::log(1.0f / p.freq_scale);
    }
    const float c = std::cos(angle) * mscale, s = std::sin(angle) * mscale;
    ca[i] = c;
    ca[i + 1] = s;
    cb[i] = -s;
    cb[i + 1] = c;
    theta *= theta_scale;
  }
  return status::ok;
}

status rope_apply(float* x, int64_t heads, int64_t head_dim, int64_t dims,
                  const float* coef) noexcept {
  if (heads < 0 || head_dim <= 0 || dims <= 0 || dims > head_dim || dims % 2 != 0)
    return status::bad_size;
  if (x == nullptr || coef == nullptr) return status::null_pointer;
  kernels().rope(x, heads, head_dim, dims, coef, coef + dims);
  return status::ok;
}

status rope_apply_neox(float* x, int64_t heads, int64_t head_dim, int64_t dims,
                       const float* coef) noexcept {
  if (heads < 0 || head_dim <= 0 || dims <= 0 || dims > head_dim || dims % 2 != 0)
    return status::bad_size;
  if (x == nullptr || coef == nullptr) return status::null_pointer;
  const float* ca = coef;
  const float* cb = coef + dims;
  const int64_t half = dims / 2;
  for (int64_t h = 0; h < heads; ++h) {
    float* v = x + h * head_dim;
    for (int64_t i = 0; i < dims; i += 2) {  // as rope_scalar, the partner half away
      const float x0 = v[i / 2], x1 = v[i / 2 + half];
      v[i / 2] = std::fma(x0, ca[i], x1 * cb[i]);
      v[i / 2 + half] = std::fma(x0, ca[i + 1], x1 * cb[i + 1]);
    }
  }
  return status::ok;
}

status rope_norm(float* x, int64_t heads, int64_t head_dim, int64_t rope_dim, int64_t pos,
                 float freq_base) noexcept {
  if (heads < 0 || head_dim <= 0 || rope_dim <= 0 || rope_dim > head_dim || rope_dim % 2 != 0 ||
      rope_dim > 1024)
    return status::bad_size;
  if (x == nullptr) return status::null_pointer;
  rope_params p;
  p.dims = rope_dim;
  p.freq_base = freq_base;
  float coef[2048];
  if (const status s = rope_coefficients(p, pos, coef); s != status::ok) return s;
  return rope_apply(x, heads, head_dim, rope_dim, coef);
}

status silu_mul(float* gate, const float* up, int64_t n) noexcept {
  if (n < 0) return status::bad_size;
  if (n > 0 && (gate == nullptr || up == nullptr)) return status::null_pointer;
  kernels().swiglu(gate, up, n);
  return status::ok;
}

status gelu_mul(float* gate, const float* up, int64_t n) noexcept {
  if (n < 0) return status::bad_size;
  if (n > 0 && (gate == nullptr || up == nullptr)) return status::null_pointer;
  kernels().geglu(gate, up, n);
  return status::ok;
}

status to_f16(const float* x, uint16_t* y, int64_t n) noexcept {
  if (n < 0) return status::bad_size;
  if (n > 0 && (x == nullptr || y == nullptr)) return status::null_pointer;
  kernels().to_f16(x, y, n);
  return status::ok;
}

status softmax(float* x, int64_t n, float scale) noexcept {
  if (n <= 0) return status::bad_size;
  if (x == nullptr) return status::null_pointer;
  detail::softmax_ggml(x, n, scale);
  return status::ok;
}

status attention(thread_pool& pool, const attention_shape& s, const float* q, int64_t tokens,
                 int64_t pos0, const void* k_cache, const void* v_cache, float* out,
                 std::vector<float>& scratch) noexcept {
  const attention_sequence one{q, tokens, pos0, k_cache, v_cache, out};
  return attention(pool, s, &one, 1, scratch);
}

status attention(thread_pool& pool, const attention_shape& s, const attention_sequence* seqs,
                 int64_t count, std::vector<float>& scratch) noexcept {
  if (count < 0 || s.heads <= 0 || s.kv_heads <= 0 || s.head_dim <= 0 ||
      s.heads % s.kv_heads != 0 || s.window < 0 || !(s.softcap >= 0))
    return status::bad_size;
  if (s.kv_type != quant_type::f32 && s.kv_type != quant_type::f16)
    return status::unsupported_type;
  if (count > 0 && seqs == nullptr) return status::null_pointer;
  int64_t jobs = 0, ctx = 0;  // (token, head) pairs of all sequences; the longest context
  for (int64_t i = 0; i < count; ++i) {
    const attention_sequence& sq = seqs[i];
    if (sq.tokens < 0 || sq.pos0 < 0) return status::bad_size;
    if (sq.tokens == 0) continue;
    if (sq.q == nullptr || sq.k_cache == nullptr || sq.v_cache == nullptr || sq.out == nullptr)
      return status::null_pointer;
    jobs += sq.tokens * s.heads;
    ctx = std::max(ctx, sq.pos0 + sq.tokens);
  }
  if (jobs == 0) return status::ok;
  const int64_t d = s.head_dim;
  const int64_t group = s.heads / s.kv_heads;
  const int64_t kv_dim = s.kv_heads * d;
  const int64_t q_dim = s.heads * d;
  const auto threads = static_cast<size_t>(pool.size());
  // Per thread: the scores [ctx rounded up to 16], the lanes [64, d], q rounded to f16 [d].
  const auto per_thread = static_cast<size_t>((ctx + 15) / 16 * 16 + 65 * d);
  const bool f16 = s.kv_type == quant_type::f16;
  const size_t elem = f16 ? sizeof(uint16_t) : sizeof(float);
  if (scratch.size() < threads * per_thread) scratch.resize(threads * per_thread);
  float* scratch_base = scratch.data();
  const detail::transformer_table& kt = kernels();
  pool.parallel_for(jobs, [&](int64_t begin, int64_t end, int thread) {
    float* scores = scratch_base + static_cast<size_t>(thread) * per_thread;
    float* acc = scores + (ctx + 15) / 16 * 16;
    int64_t i = 0, first = 0;  // the sequence holding `job`, and the index of its first job
    for (int64_t job = begin; job < end; ++job) {
      while (job - first >= seqs[i].tokens * s.heads) first += seqs[i++].tokens * s.heads;
      const attention_sequence& sq = seqs[i];
      const int64_t t = (job - first) / s.heads;
      const int64_t h = (job - first) % s.heads;
      const int64_t kvh = h / group;
      const int64_t visible = sq.pos0 + t + 1;
      const auto* k = static_cast<const std::byte*>(sq.k_cache) + kvh * d * elem;
      const auto* v = static_cast<const std::byte*>(sq.v_cache) + kvh * d * elem;
      const detail::attention_head_args a{sq.q + t * q_dim + h * d,
                                          k,
                                          v,
                                          kv_dim,
                                          visible,
                                          d,
                                          s.scale,
                                          sq.tokens == 1,
                                          scores,
                                          acc,
                                          sq.out + t * q_dim + h * d,
                                          s.window > 0 ? std::max<int64_t>(0, visible - s.window)
                                                       : 0,
                                          s.softcap,
                                          f16,
                                          acc + 64 * d};
      kt.attention_head(a);
    }
  });
  return status::ok;
}

status mat_mul(thread_pool& pool, quant_type weight, int64_t rows, int64_t n, const void* w,
               size_t row_stride, const float* x, int64_t tokens, float* y,
               std::vector<std::byte>& scratch) noexcept {
  const mat_mul_part part{weight, rows, w, row_stride, y};
  return mat_mul(pool, &part, 1, n, x, tokens, scratch);
}

status mat_mul(thread_pool& pool, const mat_mul_part* parts, int64_t count, int64_t n,
               const float* x, int64_t tokens, std::vector<std::byte>& scratch) noexcept {
  constexpr int64_t max_parts = 8;
  if (count < 0 || count > max_parts || tokens < 0) return status::bad_size;
  if (count > 0 && parts == nullptr) return status::null_pointer;
  // Each part's activation type, and where its quantised activations start in scratch (parts
  // with the same activation type share them).
  quant_type act[max_parts];
  // What a part's activations are: its activation type, except that f32, f16 and bf16 weights
  // with ggml_activations take ggml's (ggml_float_activations: rounded to f16 or bf16) and go
  // through float_dot in llama.cpp's order for this many tokens. Parts with equal keys share
  // them.
  quant_type key[max_parts];
  bool ggml_float[max_parts];
  ggml_float_order order[max_parts];
  int64_t act_row[max_parts];
  size_t act_at[max_parts];
  bool owner[max_parts];  // the first part of its activation type quantises for the others
  size_t need = 0;
  for (int64_t p = 0; p < count; ++p) {
    const mat_mul_part& m = parts[p];
    if (!activation_type(m.weight, &act[p])) return status::unsupported_type;
    ggml_float[p] = act[p] == quant_type::f32 && m.ggml_activations;
    key[p] = ggml_float[p] ? m.weight : act[p];
    if (m.rows < 0) return status::bad_size;
    order[p] = ggml_float_order_for(m.weight, m.rows, n, tokens);
    act_row[p] = ggml_float[p] ? n * ggml_float_activation_bytes(m.weight) : row_bytes(act[p], n);
    if (act_row[p] < 0 || row_bytes(m.weight, n) < 0) return status::bad_size;
    if (m.rows > 0 && tokens > 0 && (m.w == nullptr || m.y == nullptr)) return status::null_pointer;
    owner[p] = true;
    act_at[p] = need;
    for (int64_t q = 0; q < p && owner[p]; ++q) {
      if (key[q] == key[p]) {
        owner[p] = false;
        act_at[p] = act_at[q];
      }
    }
    if (owner[p]) need += static_cast<size_t>(act_row[p] * tokens);
  }
  // K-quant parts in llama.cpp's batched order take their Q8_K activations packed with the
  // tokens in SIMD lanes where the CPU has such kernels: packed once, after the other
  // activations, for every such part.
  bool lanes[max_parts];
  size_t lanes_at = 0;
  bool any_lanes = false;
  for (int64_t p = 0; p < count; ++p) {
    lanes[p] = parts[p].ggml_activations && q8_k_lanes_available(parts[p].weight, tokens);
    any_lanes = any_lanes || lanes[p];
  }
  if (any_lanes) {
    lanes_at = (need + 63) / 64 * 64;
    need = lanes_at + static_cast<size_t>(q8_k_lanes_bytes(n, tokens));
  }
  if (tokens == 0) return status::ok;
  if (x == nullptr) return status::null_pointer;
  if (scratch.size() < need) scratch.resize(need);
  std::byte* a = scratch.data();
  // Each token's activations for every activation type, split over the pool from 8 tokens on.
  std::atomic<status> bad_input{status::ok};
  auto quantize_tokens = [&](int64_t begin, int64_t end, int) {
    for (int64_t t = begin; t < end; ++t) {
      for (int64_t p = 0; p < count; ++p) {
        if (!owner[p]) continue;
        const status st = detail::quantize_activation_row(key[p], x + t * n,
                                                          a + act_at[p] + t * act_row[p], n);
        if (st != status::ok) bad_input.store(st, std::memory_order_relaxed);
      }
    }
  };
  if (tokens >= 8)
    pool.parallel_for(tokens, quantize_tokens);
  else
    quantize_tokens(0, tokens, 0);
  if (const status st = bad_input.load(); st != status::ok) return st;
  if (any_lanes) {
    for (int64_t p = 0; p < count; ++p) {
      if (!lanes[p]) continue;
      if (status st = pack_q8_k_lanes(a + act_at[p], static_cast<size_t>(act_row[p]), n, tokens,
                                      a + lanes_at);
          st != status::ok)
        return st;
      break;
    }
  }
  // Rows in tiles of 16 so that a tile of weights stays in L1 while every token passes over it;
  // the tiles of all parts, one after the other, are split over the pool.
  constexpr int64_t tile = 16;
  int64_t first_tile[max_parts + 1];
  first_tile[0] = 0;
  for (int64_t p = 0; p < count; ++p)
    first_tile[p + 1] = first_tile[p] + (parts[p].rows + tile - 1) / tile;
  std::atomic<bool> failed{false};
  pool.parallel_for(first_tile[count], [&](int64_t begin, int64_t end, int) {
    int64_t p = 0;
    for (int64_t tb = begin; tb < end; ++tb) {
      while (tb >= first_tile[p + 1]) ++p;
      const mat_mul_part& m = parts[p];
      const int64_t r0 = (tb - first_tile[p]) * tile;
      const int64_t nr = std::min(tile, m.rows - r0);
      const auto* wt = static_cast<const std::byte*>(m.w) + static_cast<size_t>(r0) * m.row_stride;
      const auto act_stride = static_cast<size_t>(act_row[p]);
      const status st =
          ggml_float[p]
              ? ggml_float_mat_mat(m.weight, order[p], nr, n, wt, m.row_stride, a + act_at[p],
                                   act_stride, tokens, m.y + r0, m.rows)
          : lanes[p]
              ? mat_mat_ggml_batched_lanes(m.weight, nr, n, wt, m.row_stride, a + lanes_at, tokens,
                                           m.y + r0, m.rows)
          : m.ggml_activations && ggml_batched_order(m.weight, tokens)
              ? mat_mat_ggml_batched(m.weight, nr, n, wt, m.row_stride, a + act_at[p], act_stride,
                                     tokens, m.y + r0, m.rows)
              : mat_mat(m.weight, nr, n, wt, m.row_stride, a + act_at[p], act_stride, tokens,
                        m.y + r0, m.rows);
      if (st != status::ok) failed.store(true, std::memory_order_relaxed);
    }
  });
  return failed.load() ? status::bad_size : status::ok;
}

}  // namespace troupe::kernels::cpu
