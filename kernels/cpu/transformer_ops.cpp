// Forward-pass kernels of a llama-style decoder (see transformer_ops.hpp).

#include "cpu/transformer_ops.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>

namespace troupe::kernels::cpu {

namespace {

/// Σ x[i]·y[i] in the order of ggml_vec_dot_f32 built for AVX-512: four 16-lane fused
/// multiply-add accumulators per 64 elements, folded (0+2, 1+3, 0+1), then the 16 lanes summed
/// as _mm512_reduce_add_ps does (halves, quarters, pairs); the tail is added in double.
float dot_f32_ggml(const float* x, const float* y, int64_t n) noexcept {
  const int64_t np = n & ~int64_t{63};
  float acc[4][16] = {};
  for (int64_t i = 0; i < np; i += 64) {
    for (int j = 0; j < 4; ++j) {
      for (int l = 0; l < 16; ++l) {
        acc[j][l] = std::fma(x[i + j * 16 + l], y[i + j * 16 + l], acc[j][l]);
      }
    }
  }
  float r[16];
  for (int l = 0; l < 16; ++l) r[l] = (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]);
  float h8[8], h4[4];
  for (int l = 0; l < 8; ++l) h8[l] = r[l] + r[l + 8];
  for (int l = 0; l < 4; ++l) h4[l] = h8[l] + h8[l + 4];
  double sum = (h4[0] + h4[2]) + (h4[1] + h4[3]);
  for (int64_t i = np; i < n; ++i) sum += static_cast<double>(x[i] * y[i]);
  return static_cast<float>(sum);
}

}  // namespace

status rms_norm(const float* x, const float* w, float* y, int64_t n, float eps) noexcept {
  if (n <= 0) return status::bad_size;
  if (x == nullptr || w == nullptr || y == nullptr) return status::null_pointer;
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i]) * static_cast<double>(x[i]);
  const float mean = static_cast<float>(sum / static_cast<double>(n));
  const float scale = 1.0f / std::sqrt(mean + eps);
  for (int64_t i = 0; i < n; ++i) y[i] = (x[i] * scale) * w[i];
  return status::ok;
}

status rope_norm(float* x, int64_t heads, int64_t head_dim, int64_t rope_dim, int64_t pos,
                 float freq_base) noexcept {
  if (heads < 0 || head_dim <= 0 || rope_dim <= 0 || rope_dim > head_dim || rope_dim % 2 != 0)
    return status::bad_size;
  if (x == nullptr) return status::null_pointer;
  const float theta_scale = std::pow(freq_base, -2.0f / static_cast<float>(rope_dim));
  float cs[512], sn[512];
  if (rope_dim / 2 > 512) return status::bad_size;
  float theta = static_cast<float>(pos);
  for (int64_t i = 0; i < rope_dim / 2; ++i) {
    cs[i] = std::cos(theta);
    sn[i] = std::sin(theta);
    theta *= theta_scale;
  }
  for (int64_t h = 0; h < heads; ++h) {
    float* v = x + h * head_dim;
    for (int64_t i = 0; i < rope_dim / 2; ++i) {
      const float x0 = v[2 * i];
      const float x1 = v[2 * i + 1];
      v[2 * i] = x0 * cs[i] - x1 * sn[i];
      v[2 * i + 1] = x0 * sn[i] + x1 * cs[i];
    }
  }
  return status::ok;
}

status silu_mul(float* gate, const float* up, int64_t n) noexcept {
  if (n < 0) return status::bad_size;
  if (n > 0 && (gate == nullptr || up == nullptr)) return status::null_pointer;
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    gate[i] = (g / (1.0f + std::exp(-g))) * up[i];
  }
  return status::ok;
}

status softmax(float* x, int64_t n, float scale) noexcept {
  if (n <= 0) return status::bad_size;
  if (x == nullptr) return status::null_pointer;
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) {
    x[i] *= scale;
    mx = std::max(mx, x[i]);
  }
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
  return status::ok;
}

status attention(thread_pool& pool, const attention_shape& s, const float* q, int64_t tokens,
                 int64_t pos0, const float* k_cache, const float* v_cache, float* out,
                 std::vector<float>& scratch) noexcept {
  if (tokens < 0 || pos0 < 0 || s.heads <= 0 || s.kv_heads <= 0 || s.head_dim <= 0 ||
      s.heads % s.kv_heads != 0)
    return status::bad_size;
  if (tokens == 0) return status::ok;
  if (q == nullptr || k_cache == nullptr || v_cache == nullptr || out == nullptr)
    return status::null_pointer;
  const int64_t d = s.head_dim;
  const int64_t group = s.heads / s.kv_heads;
  const int64_t kv_dim = s.kv_heads * d;
  const int64_t q_dim = s.heads * d;
  const auto threads = static_cast<size_t>(pool.size());
  const int64_t ctx = pos0 + tokens;
  const size_t per_thread = static_cast<size_t>(ctx + d);
  if (scratch.size() < threads * per_thread) scratch.resize(threads * per_thread);
  float* scratch_base = scratch.data();
  pool.parallel_for(tokens * s.heads, [&](int64_t begin, int64_t end, int thread) {
    float* scores = scratch_base + static_cast<size_t>(thread) * per_thread;
    float* acc = scores + ctx;
    for (int64_t job = begin; job < end; ++job) {
      const int64_t t = job / s.heads;
      const int64_t h = job % s.heads;
      const int64_t kvh = h / group;
      const int64_t n = pos0 + t + 1;  // visible positions
      const float* qh = q + t * q_dim + h * d;
      for (int64_t j = 0; j < n; ++j) scores[j] = dot_f32_ggml(qh, k_cache + j * kv_dim + kvh * d, d);
      softmax(scores, n, s.scale);
      std::fill(acc, acc + d, 0.0f);
      for (int64_t j = 0; j < n; ++j) {
        const float p = scores[j];
        const float* vj = v_cache + j * kv_dim + kvh * d;
        for (int64_t i = 0; i < d; ++i) acc[i] = std::fma(p, vj[i], acc[i]);
      }
      std::copy(acc, acc + d, out + t * q_dim + h * d);
    }
  });
  return status::ok;
}

status mat_mul(thread_pool& pool, quant_type weight, int64_t rows, int64_t n, const void* w,
               size_t row_stride, const float* x, int64_t tokens, float* y,
               std::vector<std::byte>& scratch) noexcept {
  quant_type act{};
  if (!activation_type(weight, &act)) return status::unsupported_type;
  if (rows < 0 || tokens < 0) return status::bad_size;
  const int64_t act_row = row_bytes(act, n);
  if (act_row < 0 || row_bytes(weight, n) < 0) return status::bad_size;
  if (rows == 0 || tokens == 0) return status::ok;
  if (w == nullptr || x == nullptr || y == nullptr) return status::null_pointer;
  const auto need = static_cast<size_t>(act_row * tokens);
  if (scratch.size() < need) scratch.resize(need);
  std::byte* a = scratch.data();
  for (int64_t t = 0; t < tokens; ++t) {
    if (status st = quantize_row(act, x + t * n, a + t * act_row, n); st != status::ok) return st;
  }
  if (act == quant_type::q8_1) {
    // ggml keeps d and s of Q8_1 in fp16; round ours the same way so that results match
    // llama.cpp's to the last bit of the scales (our block keeps fp32 for exactness elsewhere).
    auto* blocks = reinterpret_cast<block_q8_1*>(a);
    for (int64_t b = 0; b < tokens * (n / qk8_1); ++b) {
      blocks[b].d = fp16_to_fp32(fp32_to_fp16(blocks[b].d));
      blocks[b].s = fp16_to_fp32(fp32_to_fp16(blocks[b].s));
    }
  }
  // Rows in tiles of 16 so that a tile of weights stays in L1 while every token passes over it.
  constexpr int64_t tile = 16;
  const int64_t tiles = (rows + tile - 1) / tile;
  const auto* base = static_cast<const std::byte*>(w);
  std::atomic<bool> failed{false};
  pool.parallel_for(tiles, [&](int64_t begin, int64_t end, int) {
    for (int64_t tb = begin; tb < end; ++tb) {
      const int64_t r0 = tb * tile;
      const int64_t nr = std::min(tile, rows - r0);
      const std::byte* wt = base + static_cast<size_t>(r0) * row_stride;
      for (int64_t t = 0; t < tokens; ++t) {
        if (mat_vec(weight, nr, n, wt, row_stride, a + t * act_row, y + t * rows + r0) !=
            status::ok)
          failed.store(true, std::memory_order_relaxed);
      }
    }
  });
  return failed.load() ? status::bad_size : status::ok;
}

}  // namespace troupe::kernels::cpu
