// Mixture-of-experts kernels: softmax routing and MUL_MAT_ID (see moe_ops.hpp).

#include "cpu/moe_ops.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>

#include "cpu/float_dot.hpp"
#include "cpu/float_dot_impl.hpp"
#include "cpu/transformer_ops_impl.hpp"

namespace troupe::kernels::cpu {

namespace {

constexpr int64_t max_experts = 512;  // llama.cpp's LLAMA_MAX_EXPERTS
constexpr int64_t max_stacks = 4;
constexpr int64_t tile_rows = 16;

/// The weights ggml's tiled K-quant path takes in MUL_MAT_ID (tiled.cpp's type dispatch) once an
/// expert has 8 pairs or more; every other type is summed as vec_dot sums there (no tinyBLAS).
bool tiled_in_mul_mat_id(quant_type t) noexcept {
  switch (t) {
    case quant_type::q2_k:
    case quant_type::q3_k:
    case quant_type::q4_k:
    case quant_type::q5_k:
    case quant_type::q6_k:
    case quant_type::iq4_xs:
      return true;
    default:
      return false;
  }
}

size_t align64(size_t n) { return (n + 63) / 64 * 64; }

}  // namespace

status moe_route_softmax(const float* logits, int64_t experts, int64_t k, int32_t* ids,
                         float* weights, bool normalize) noexcept {
  if (experts <= 0 || experts > max_experts || k <= 0 || k > experts) return status::bad_size;
  if (logits == nullptr || ids == nullptr || weights == nullptr) return status::null_pointer;
  float p[max_experts];
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t e = 0; e < experts; ++e) mx = std::max(mx, logits[e]);
  // ggml_vec_soft_max_f32 on AVX-512: ggml_v_expf per 16 lanes (_mm512_reduce_add_ps into the
  // double sum), expf for the rest.
  double sum = 0.0;
  int64_t e = 0;
  for (; e + 15 < experts; e += 16) {
    for (int l = 0; l < 16; ++l) p[e + l] = detail::expf_ggml(logits[e + l] - mx);
    sum += static_cast<double>(detail::reduce16(p + e));
  }
  for (; e < experts; ++e) {
    p[e] = std::exp(logits[e] - mx);
    sum += static_cast<double>(p[e]);
  }
  const auto inv = static_cast<float>(1.0 / sum);
  for (e = 0; e < experts; ++e) p[e] *= inv;
  int32_t order[max_experts];
  for (e = 0; e < experts; ++e) order[e] = static_cast<int32_t>(e);
  std::partial_sort(order, order + k, order + experts, [&p](int32_t a, int32_t b) {
    return p[a] > p[b] || (p[a] == p[b] && a < b);
  });
  double chosen = 0.0;
  for (int64_t j = 0; j < k; ++j) {
    ids[j] = order[j];
    weights[j] = p[order[j]];
    chosen += static_cast<double>(weights[j]);
  }
  if (!normalize) return status::ok;
  const float denom = std::max(static_cast<float>(chosen), 6.103515625e-5f);
  for (int64_t j = 0; j < k; ++j) weights[j] /= denom;
  return status::ok;
}

status mat_mul_id(thread_pool& pool, const expert_matrices* stacks, int64_t count, int64_t n,
                  const float* x, const expert_pairs& pr,
                  std::vector<std::byte>& scratch) noexcept {
  if (count < 0 || count > max_stacks || n <= 0 || pr.pairs < 0 || pr.per_row <= 0)
    return status::bad_size;
  if (count == 0 || pr.pairs == 0) return status::ok;
  if (stacks == nullptr || x == nullptr || pr.ids == nullptr) return status::null_pointer;
  if (pr.shared_rows && pr.pairs % pr.per_row != 0) return status::bad_size;
  const int64_t experts = stacks[0].experts;
  if (experts <= 0 || experts > max_experts) return status::bad_size;
  // What each stack's activations are (as in mat_mul): quantised to its activation type, or
  // for float weights rounded to the weight's type; stacks with equal keys share them.
  quant_type act[max_stacks], key[max_stacks];
  bool is_float[max_stacks], owner[max_stacks];
  int64_t act_row[max_stacks];
  size_t act_at[max_stacks];
  size_t need = 0;
  for (int64_t s = 0; s < count; ++s) {
    const expert_matrices& m = stacks[s];
    if (!activation_type(m.weight, &act[s])) return status::unsupported_type;
    if (m.experts != experts || m.rows < 0 || row_bytes(m.weight, n) < 0 ||
        m.row_stride < static_cast<size_t>(row_bytes(m.weight, n)))
      return status::bad_size;
    if (m.rows > 0 && (m.w == nullptr || m.y == nullptr)) return status::null_pointer;
    is_float[s] = act[s] == quant_type::f32;
    key[s] = is_float[s] ? m.weight : act[s];
    act_row[s] = is_float[s] ? n * ggml_float_activation_bytes(m.weight) : row_bytes(act[s], n);
    if (act_row[s] <= 0) return status::bad_size;
    owner[s] = true;
    for (int64_t q = 0; q < s && owner[s]; ++q) {
      if (key[q] == key[s]) {
        owner[s] = false;
        act_at[s] = act_at[q];
      }
    }
    if (owner[s]) {
      act_at[s] = need;
      need = align64(need + static_cast<size_t>(act_row[s] * pr.pairs));
    }
  }
  for (int64_t p = 0; p < pr.pairs; ++p)
    if (pr.ids[p] < 0 || pr.ids[p] >= experts) return status::bad_size;

  // Shared rows are quantised once each, here, before their copies go to the pairs' slots.
  size_t unique_row_at[max_stacks] = {};
  const size_t unique_at = need;
  if (pr.shared_rows) {
    size_t at = 0;
    for (int64_t s = 0; s < count; ++s) {
      if (!owner[s]) continue;
      unique_row_at[s] = at;
      at = align64(at + static_cast<size_t>(act_row[s] * (pr.pairs / pr.per_row)));
    }
    need += at;
  }
  // Pairs grouped by expert (in pair order within an expert, as ggml's matrix_rows), then the
  // activations of each stack's key in that order, the K-quant activations packed with the tokens
  // in SIMD lanes for each expert that takes them, and per-thread output tiles.
  const size_t offsets_at = need;
  need = align64(need + sizeof(int64_t) * static_cast<size_t>(experts + 1));
  const size_t order_at = need;
  need = align64(need + sizeof(int32_t) * static_cast<size_t>(pr.pairs));
  const size_t lanes_base = need;
  if (scratch.size() < need) scratch.resize(need);
  auto* offsets = reinterpret_cast<int64_t*>(scratch.data() + offsets_at);
  std::fill(offsets, offsets + experts + 1, 0);
  for (int64_t p = 0; p < pr.pairs; ++p) ++offsets[pr.ids[p] + 1];
  int64_t busiest = 0;
  for (int64_t e = 0; e < experts; ++e) {
    busiest = std::max(busiest, offsets[e + 1]);
    offsets[e + 1] += offsets[e];
  }
  // A stack takes its Q8_K activations packed with the tokens in SIMD lanes for an expert in the
  // tiled order where the CPU has such kernels for its type; the K-quant stacks share one key,
  // so the packing (which depends on n and the tokens only) is done once per expert, from the
  // first of them (lanes_owner), when any stack takes it.
  const auto takes_lanes = [&](int64_t s, int64_t cne) {
    return !is_float[s] && tiled_in_mul_mat_id(stacks[s].weight) && cne >= 8 &&
           q8_k_lanes_available(stacks[s].weight, cne);
  };
  const auto packed = [&](int64_t cne) {
    for (int64_t s = 0; s < count; ++s)
      if (takes_lanes(s, cne)) return true;
    return false;
  };
  int64_t lanes_owner = -1;
  for (int64_t s = 0; s < count && lanes_owner < 0; ++s)
    if (!is_float[s] && tiled_in_mul_mat_id(stacks[s].weight)) lanes_owner = s;
  size_t lanes_bytes = 0;  // all experts' packed blocks, each 64-byte aligned
  if (lanes_owner >= 0) {
    for (int64_t e = 0; e < experts; ++e) {
      const int64_t cne = offsets[e + 1] - offsets[e];
      if (packed(cne)) lanes_bytes += align64(static_cast<size_t>(q8_k_lanes_bytes(n, cne)));
    }
  }
  const auto threads = static_cast<size_t>(pool.size());
  const size_t tiles_at = align64(lanes_base + lanes_bytes);
  const size_t tile_floats = static_cast<size_t>(busiest * tile_rows);
  need = tiles_at + threads * align64(tile_floats * sizeof(float));
  if (scratch.size() < need) scratch.resize(need);
  std::byte* base = scratch.data();
  offsets = reinterpret_cast<int64_t*>(base + offsets_at);
  auto* order = reinterpret_cast<int32_t*>(base + order_at);
  {
    int64_t next[max_experts];
    std::copy(offsets, offsets + experts, next);
    for (int64_t p = 0; p < pr.pairs; ++p) order[next[pr.ids[p]]++] = static_cast<int32_t>(p);
  }
  // Activations in ggml's rounding, as mat_mul quantises them (see transformer_ops_impl.hpp),
  // into the pairs' sorted order: each stack key's rows quantised once (split over the pool from
  // 8 rows on), then, for shared rows, copied to each pair that reads them.
  const int64_t x_rows = pr.shared_rows ? pr.pairs / pr.per_row : pr.pairs;
  std::byte* unique = base + unique_at;
  std::atomic<status> bad_input{status::ok};
  auto quantize_rows = [&](int64_t begin, int64_t end, int) {
    for (int64_t r = begin; r < end; ++r) {
      for (int64_t s = 0; s < count; ++s) {
        if (!owner[s]) continue;
        // Shared rows go to the unique region (row r), the others straight to their sorted slot.
        const float* row = x + (pr.shared_rows ? r : order[r]) * n;
        std::byte* out = pr.shared_rows ? unique + unique_row_at[s] + r * act_row[s]
                                        : base + act_at[s] + r * act_row[s];
        const status st = detail::quantize_activation_row(key[s], row, out, n);
        if (st != status::ok) bad_input.store(st, std::memory_order_relaxed);
      }
    }
  };
  if (x_rows >= 8) pool.parallel_for(x_rows, quantize_rows);
  else quantize_rows(0, x_rows, 0);
  if (const status st = bad_input.load(); st != status::ok) return st;
  if (pr.shared_rows) {
    for (int64_t s = 0; s < count; ++s) {
      if (!owner[s]) continue;
      for (int64_t i = 0; i < pr.pairs; ++i)
        std::memcpy(base + act_at[s] + i * act_row[s],
                    unique + unique_row_at[s] + order[i] / pr.per_row * act_row[s],
                    static_cast<size_t>(act_row[s]));
    }
  }
  constexpr size_t no_lanes = SIZE_MAX;
  size_t lanes_at[max_experts];
  std::fill(lanes_at, lanes_at + experts, no_lanes);
  if (lanes_owner >= 0) {
    size_t at = lanes_base;
    const int64_t s = lanes_owner;
    for (int64_t e = 0; e < experts; ++e) {
      const int64_t cne = offsets[e + 1] - offsets[e];
      if (!packed(cne)) continue;
      lanes_at[e] = at;
      const std::byte* a = base + act_at[s] + offsets[e] * act_row[s];
      if (status st = pack_q8_k_lanes(a, static_cast<size_t>(act_row[s]), n, cne, base + at);
          st != status::ok)
        return st;
      at += align64(static_cast<size_t>(q8_k_lanes_bytes(n, cne)));
    }
  }

  // Work items: (stack, expert, tile of 16 rows) over the experts that have pairs.
  int64_t items = 0;
  int64_t first_item[max_stacks + 1];
  for (int64_t s = 0; s < count; ++s) {
    first_item[s] = items;
    const int64_t tiles = (stacks[s].rows + tile_rows - 1) / tile_rows;
    for (int64_t e = 0; e < experts; ++e) items += offsets[e + 1] > offsets[e] ? tiles : 0;
  }
  first_item[count] = items;
  std::atomic<bool> failed{false};
  pool.parallel_for(items, [&](int64_t begin, int64_t end, int thread) {
    auto* tile = reinterpret_cast<float*>(base + tiles_at +
                                          static_cast<size_t>(thread) *
                                              align64(tile_floats * sizeof(float)));
    for (int64_t it = begin; it < end; ++it) {
      int64_t s = 0;
      while (it >= first_item[s + 1]) ++s;
      const expert_matrices& m = stacks[s];
      const int64_t tiles = (m.rows + tile_rows - 1) / tile_rows;
      // The (it - first_item[s]) / tiles-th expert with pairs.
      int64_t skip = (it - first_item[s]) / tiles, e = 0;
      for (;; ++e) {
        if (offsets[e + 1] == offsets[e]) continue;
        if (skip-- == 0) break;
      }
      const int64_t r0 = (it - first_item[s]) % tiles * tile_rows;
      const int64_t nr = std::min(tile_rows, m.rows - r0);
      const int64_t cne = offsets[e + 1] - offsets[e];
      const auto* w = static_cast<const std::byte*>(m.w) +
                      static_cast<size_t>(e) * m.expert_stride +
                      static_cast<size_t>(r0) * m.row_stride;
      const std::byte* a = base + act_at[s] + offsets[e] * act_row[s];
      const auto act_stride = static_cast<size_t>(act_row[s]);
      const bool tiled = !is_float[s] && tiled_in_mul_mat_id(m.weight) && cne >= 8;
      const status st =
          is_float[s] ? ggml_float_mat_mat(m.weight, ggml_float_order::vec_dot, nr, n, w,
                                           m.row_stride, a, act_stride, cne, tile, tile_rows)
          : takes_lanes(s, cne) && lanes_at[e] != no_lanes
              ? mat_mat_ggml_batched_lanes(m.weight, nr, n, w, m.row_stride, base + lanes_at[e],
                                           cne, tile, tile_rows)
          : tiled ? mat_mat_ggml_batched(m.weight, nr, n, w, m.row_stride, a, act_stride, cne,
                                         tile, tile_rows)
                  : mat_mat(m.weight, nr, n, w, m.row_stride, a, act_stride, cne, tile, tile_rows);
      if (st != status::ok) {
        failed.store(true, std::memory_order_relaxed);
        continue;
      }
      for (int64_t t = 0; t < cne; ++t) {
        float* to = m.y + order[offsets[e] + t] * m.rows + r0;
        if (nr == tile_rows)  // a fixed size, copied inline
          std::memcpy(to, tile + t * tile_rows, sizeof(float) * tile_rows);
        else
          std::memcpy(to, tile + t * tile_rows, sizeof(float) * static_cast<size_t>(nr));
      }
    }
  });
  return failed.load() ? status::bad_size : status::ok;
}

}  // namespace troupe::kernels::cpu
