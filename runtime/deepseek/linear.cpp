#include "deepseek/linear.hpp"

#include <algorithm>
#include <atomic>
#include <string>

#include "cpu/transformer_ops.hpp"
#include "troupe/error.hpp"

namespace troupe::deepseek {

namespace {

kc::int4_group_matrix int4_view(const linear_weight& w) {
  kc::int4_group_matrix m;
  m.rows = w.rows;
  m.cols = w.cols;
  m.group = w.group;
  m.packed = w.packed;
  m.packed_stride = w.packed_stride;
  m.scales = w.scales;
  m.scales_type = static_cast<kc::scale_type>(w.scale_type);
  m.scale_stride = w.scale_stride;
  return m;
}

kc::fp8_block_matrix fp8_view(const linear_weight& w) {
  kc::fp8_block_matrix m;
  m.rows = w.rows;
  m.cols = w.cols;
  m.block_rows = w.block_rows;
  m.block_cols = w.block_cols;
  m.data = static_cast<const uint8_t*>(w.data);
  m.stride = static_cast<int64_t>(w.row_stride);
  m.scale_inv = w.scale_inv;
  m.scale_stride = (w.cols + w.block_cols - 1) / w.block_cols;
  return m;
}

[[noreturn]] void kernel_failed(const linear_weight& w, kc::status st) {
  throw error(errc::internal, "deepseek: the kernel for weight '" + w.name + "' refused its arguments (" +
                                  kc::to_string(st) + "); please report this");
}

// Dense rows on the calling thread: activations converted to the weight's activation type.
void dense_rows(const linear_weight& w, int64_t r0, int64_t r1, const float* x, int64_t tokens,
                float* y, std::vector<std::byte>& scratch) {
  const auto type = static_cast<kc::quant_type>(w.dense_type);
  kc::quant_type act{};
  if (!kc::activation_type(type, &act)) kernel_failed(w, kc::status::unsupported_type);
  const auto* base = static_cast<const std::byte*>(w.data) + static_cast<size_t>(r0) * w.row_stride;
  for (int64_t t = 0; t < tokens; ++t) {
    const void* a = x + t * w.cols;
    if (act != kc::quant_type::f32) {
      const int64_t bytes = kc::row_bytes(act, w.cols);
      if (scratch.size() < static_cast<size_t>(bytes)) scratch.resize(static_cast<size_t>(bytes));
      if (auto st = kc::quantize_row(act, x + t * w.cols, scratch.data(), w.cols); st != kc::status::ok)
        kernel_failed(w, st);
      a = scratch.data();
    }
    if (auto st = kc::mat_vec(type, r1 - r0, w.cols, base, w.row_stride, a, y + t * w.rows + r0);
        st != kc::status::ok)
      kernel_failed(w, st);
  }
}

}  // namespace

void linear_rows(const linear_weight& w, int64_t r0, int64_t r1, const float* x, int64_t tokens,
                 float* y, std::vector<std::byte>& scratch) {
  if (r0 >= r1 || tokens == 0) return;
  kc::status st = kc::status::ok;
  switch (w.fmt) {
    case linear_weight::format::dense: dense_rows(w, r0, r1, x, tokens, y, scratch); return;
    case linear_weight::format::int4_group:
      st = kc::int4_group_gemm(int4_view(w), r0, r1, x, w.cols, tokens, y, w.rows);
      break;
    case linear_weight::format::fp8_block:
      st = kc::fp8_block_gemm(fp8_view(w), r0, r1, x, w.cols, tokens, y, w.rows);
      break;
  }
  if (st != kc::status::ok) kernel_failed(w, st);
}

void linear(kc::thread_pool& pool, const linear_weight& w, const float* x, int64_t tokens, float* y,
            std::vector<std::byte>& scratch) {
  if (tokens == 0 || w.rows == 0) return;
  if (w.fmt == linear_weight::format::dense) {
    const auto st = kc::mat_mul(pool, static_cast<kc::quant_type>(w.dense_type), w.rows, w.cols,
                                w.data, w.row_stride, x, tokens, y, scratch);
    if (st != kc::status::ok) kernel_failed(w, st);
    return;
  }
  // Low-bit formats take fp32 activations directly: split output rows in tiles of 16.
  constexpr int64_t tile = 16;
  const int64_t tiles = (w.rows + tile - 1) / tile;
  std::atomic<int> failed{0};
  pool.parallel_for(tiles, [&](int64_t b, int64_t e, int) {
    const int64_t r0 = b * tile;
    const int64_t r1 = std::min(w.rows, e * tile);
    kc::status st = w.fmt == linear_weight::format::int4_group
                        ? kc::int4_group_gemm(int4_view(w), r0, r1, x, w.cols, tokens, y, w.rows)
                        : kc::fp8_block_gemm(fp8_view(w), r0, r1, x, w.cols, tokens, y, w.rows);
    if (st != kc::status::ok) failed.store(static_cast<int>(st), std::memory_order_relaxed);
  });
  if (int f = failed.load(); f != 0) kernel_failed(w, static_cast<kc::status>(f));
}

std::vector<float> dequantize(const linear_weight& w) {
  std::vector<float> out(static_cast<size_t>(w.rows * w.cols));
  for (int64_t r = 0; r < w.rows; ++r) {
    float* row = out.data() + r * w.cols;
    kc::status st = kc::status::ok;
    switch (w.fmt) {
      case linear_weight::format::dense:
        st = kc::dequantize_row(static_cast<kc::quant_type>(w.dense_type),
                                static_cast<const std::byte*>(w.data) + static_cast<size_t>(r) * w.row_stride,
                                row, w.cols);
        break;
      case linear_weight::format::int4_group: st = kc::int4_group_dequantize_row(int4_view(w), r, row); break;
      case linear_weight::format::fp8_block: st = kc::fp8_block_dequantize_row(fp8_view(w), r, row); break;
    }
    if (st != kc::status::ok) kernel_failed(w, st);
  }
  return out;
}

}  // namespace troupe::deepseek
