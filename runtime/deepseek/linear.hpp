#pragma once
// Private: products with a deepseek::linear_weight in its stored format, on the CPU kernels.

#include <cstddef>
#include <vector>

#include "cpu/low_bit.hpp"
#include "cpu/quant.hpp"
#include "cpu/thread_pool.hpp"
#include "troupe/deepseek/model.hpp"

namespace troupe::deepseek {

namespace kc = troupe::kernels::cpu;

/// y[t, :] = W·x[t, :] for `tokens` rows: x [tokens, w.cols] → y [tokens, w.rows], in the
/// weight's own format, split over the pool's threads by output rows. `scratch` holds quantised
/// activations where a dense format needs them. Throws troupe::error(internal) naming the weight
/// when a kernel refuses (a bug: shapes are checked at load).
void linear(kc::thread_pool& pool, const linear_weight& w, const float* x, int64_t tokens, float* y,
            std::vector<std::byte>& scratch);

/// The same product on the calling thread only, for output rows [row_begin, row_end); y keeps
/// its full row length w.rows.
void linear_rows(const linear_weight& w, int64_t row_begin, int64_t row_end, const float* x,
                 int64_t tokens, float* y, std::vector<std::byte>& scratch);

/// The whole weight as fp32 [rows, cols].
std::vector<float> dequantize(const linear_weight& w);

}  // namespace troupe::deepseek
