// Device code of the whole-model decode step's small ops (contracts: decode_step_ops.hpp).
// UNVERIFIED on a GPU: compiled only where this was written.

#include "cuda/common.cuh"
#include "cuda/decode_step_ops.hpp"
#include "cuda/int4_repack.hpp"
#include "cuda/ops.hpp"

namespace troupe::kernels::cuda {

using detail::bf16_to_f32;
using detail::ceil_div;
using detail::f32_to_bf16;
using detail::launched;
using detail::warp_sum;

namespace {

// ---- absorbed queries ----------------------------------------------------------------------
// One CTA of 8 warps per (head, 64 latent dims): lane l owns dims r0 + l and r0 + 32 + l, warp w
// the inputs d = w, w + 8, ... (so 256 threads share one head's W_UK slice and many loads are in
// flight), rows in chunks of 4; the 8 warps' partial sums meet in shared memory in a fixed order
// (no atomics: the result does not depend on scheduling). The rows' q_nope are staged once.
constexpr int absorb_warps = 8, absorb_rows = 4, absorb_dims = 64;

__global__ void __launch_bounds__(absorb_warps * 32)
    mla_absorb_q_kernel(const float* q, int64_t rows, int64_t heads, int64_t nope, int64_t rope,
                        const uint16_t* w_uk, int64_t kv_lora, float* q_latent, float* q_rope,
                        const int32_t* positions, const float* inv_freq, float amplitude) {
  extern __shared__ float qs[];  // [rows, nope]
  __shared__ float red[absorb_warps][absorb_rows][absorb_dims];
  const int64_t h = blockIdx.x, qk = nope + rope, r0 = int64_t{blockIdx.y} * absorb_dims;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  for (int64_t i = tid; i < rows * nope; i += absorb_warps * 32)
    qs[i] = q[((i / nope) * heads + h) * qk + i % nope];
  if (blockIdx.y == 0 && positions == nullptr)
    for (int64_t i = tid; i < rows * rope; i += absorb_warps * 32) {
      const int64_t b = i / rope, d = i % rope;
      q_rope[(b * heads + h) * rope + d] = q[(b * heads + h) * qk + nope + d];
    }
  if (blockIdx.y == 0 && positions != nullptr)
    for (int64_t i = tid; i < rows * (rope / 2); i += absorb_warps * 32) {
      const int64_t b = i / (rope / 2), p = i % (rope / 2);
      const float* src = q + (b * heads + h) * qk + nope + 2 * p;
      float* dst = q_rope + (b * heads + h) * rope + 2 * p;
      float sn, cs;  // as rope_adjacent_kernel (transformer_ops.cu)
      sincosf(static_cast<float>(positions[b]) * inv_freq[p], &sn, &cs);
      cs *= amplitude;
      sn *= amplitude;
      const float x0 = src[0], x1 = src[1];
      dst[0] = x0 * cs - x1 * sn;
      dst[1] = x0 * sn + x1 * cs;
    }
  __syncthreads();
  const int64_t ra = r0 + lane, rb = r0 + 32 + lane;
  const uint16_t* w = w_uk + h * nope * kv_lora;
  for (int64_t b0 = 0; b0 < rows; b0 += absorb_rows) {
    float acc[absorb_rows][2];
#pragma unroll
    for (int j = 0; j < absorb_rows; ++j) acc[j][0] = acc[j][1] = 0;
    for (int64_t d = warp; d < nope; d += absorb_warps) {
      const float wa = ra < kv_lora ? bf16_to_f32(w[d * kv_lora + ra]) : 0.0f;
      const float wb = rb < kv_lora ? bf16_to_f32(w[d * kv_lora + rb]) : 0.0f;
#pragma unroll
      for (int j = 0; j < absorb_rows; ++j) {
        const float x = b0 + j < rows ? qs[(b0 + j) * nope + d] : 0.0f;
        acc[j][0] += x * wa;
        acc[j][1] += x * wb;
      }
    }
#pragma unroll
    for (int j = 0; j < absorb_rows; ++j) {
      red[warp][j][lane] = acc[j][0];
      red[warp][j][32 + lane] = acc[j][1];
    }
    __syncthreads();
    {  // 256 threads = absorb_rows x absorb_dims sums over the warps, in warp order
      const int j = tid / absorb_dims, rr = tid % absorb_dims;
      float s = 0;
#pragma unroll
      for (int v = 0; v < absorb_warps; ++v) s += red[v][j][rr];
      const int64_t b = b0 + j, r = r0 + rr;
      if (b < rows && r < kv_lora) q_latent[(b * heads + h) * kv_lora + r] = s;
    }
    __syncthreads();  // red is rewritten by the next chunk
  }
}

// ---- values out of the latent space: a warp per RowsPerWarp value dims of one head -------------
// The warp reads each row's latent output once for its RowsPerWarp dims (4 when v allows), so the
// latents are read v / 4 times per head instead of v times; each dim's sum is the same lane-strided
// sum and warp reduction either way.
template <int RowsPerWarp>
__global__ void __launch_bounds__(128)
    mla_unabsorb_v_kernel(const float* o_latent, int64_t rows, int64_t heads, int64_t kv_lora,
                          const uint16_t* w_uv, int64_t v, uint16_t* out, int64_t ldo) {
  const int64_t row0 = (int64_t{blockIdx.x} * 4 + threadIdx.x / 32) * RowsPerWarp;  // h·v + d
  const int lane = threadIdx.x % 32;
  if (row0 >= heads * v) return;
  const int64_t h = row0 / v;  // RowsPerWarp divides v: the warp's dims share the head
  const uint16_t* w = w_uv + row0 * kv_lora;
  for (int64_t b = 0; b < rows; ++b) {
    const float* o = o_latent + (b * heads + h) * kv_lora;
    float s[RowsPerWarp];
#pragma unroll
    for (int j = 0; j < RowsPerWarp; ++j) s[j] = 0;
    for (int64_t r = lane; r < kv_lora; r += 32) {
      const float x = o[r];
#pragma unroll
      for (int j = 0; j < RowsPerWarp; ++j) s[j] += x * bf16_to_f32(w[j * kv_lora + r]);
    }
#pragma unroll
    for (int j = 0; j < RowsPerWarp; ++j) {
      const float t = warp_sum(s[j]);
      if (lane == 0) out[b * ldo + row0 + j] = f32_to_bf16(t);
    }
  }
}

// ---- MLA decode for any kv_lora: one CTA per (head, row, split of the pages), 128 threads -----
// Scores by warps (one position each), softmax over a page in shared memory with a running max,
// the latent accumulators in shared memory. Partial: the split writes its running max, its sum of
// exponentials and its unnormalised accumulators (mla_combine_kernel merges the splits); else the
// only split writes the normalised output.
template <bool Partial>
__global__ void __launch_bounds__(128)
    mla_decode_plain_kernel(mla_decode_args a, int64_t pages_per_split, float* partial) {
  extern __shared__ float sm[];  // q [kv_lora + rope], acc [kv_lora]
  __shared__ float p[mla_page_size];
  float* qv = sm;
  float* acc = sm + a.kv_lora + a.rope;
  const int64_t h = blockIdx.x, b = blockIdx.y, split = blockIdx.z, width = a.kv_lora + a.rope;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  for (int64_t i = tid; i < a.kv_lora; i += 128) {
    qv[i] = a.q_latent[(b * a.heads + h) * a.kv_lora + i];
    acc[i] = 0;
  }
  for (int64_t i = tid; i < a.rope; i += 128) qv[a.kv_lora + i] = a.q_rope[(b * a.heads + h) * a.rope + i];
  __syncthreads();
  const int64_t len = a.seq_lens[b];
  const int64_t first = split * pages_per_split * mla_page_size;
  const int64_t last = min(len, first + pages_per_split * mla_page_size);
  float m = -INFINITY, l = 0;
  for (int64_t base = first; base < last; base += mla_page_size) {
    const int64_t page = a.block_table[b * a.max_pages + base / mla_page_size];
    const uint16_t* c = a.cache + page * mla_page_size * width;
    const int count = static_cast<int>(last - base < mla_page_size ? last - base : mla_page_size);
    for (int j = warp; j < count; j += 4) {
      float s = 0;
      for (int64_t i = lane; i < width; i += 32) s += qv[i] * bf16_to_f32(c[j * width + i]);
      s = warp_sum(s);
      if (lane == 0) p[j] = s * a.scale;
    }
    __syncthreads();
    float mc = -INFINITY;
    for (int j = 0; j < count; ++j) mc = fmaxf(mc, p[j]);
    const float mn = fmaxf(m, mc);
    const float factor = expf(m - mn);  // 0 on the first page
    __syncthreads();
    if (tid < count) p[tid] = expf(p[tid] - mn);
    __syncthreads();
    float ps = 0;
    for (int j = 0; j < count; ++j) ps += p[j];
    l = l * factor + ps;
    m = mn;
    for (int64_t i = tid; i < a.kv_lora; i += 128) {
      float v = acc[i] * factor;
      for (int j = 0; j < count; ++j) v += p[j] * bf16_to_f32(c[j * width + i]);
      acc[i] = v;
    }
    __syncthreads();
  }
  if constexpr (Partial) {
    float* part = partial + ((b * a.heads + h) * gridDim.z + split) * (a.kv_lora + 2);
    if (tid == 0) {
      part[0] = m;  // -inf and 0 for a split past the sequence's end
      part[1] = l;
    }
    for (int64_t i = tid; i < a.kv_lora; i += 128) part[2 + i] = acc[i];
  } else {
    const float inv = l > 0 ? 1.0f / l : 0.0f;
    for (int64_t i = tid; i < a.kv_lora; i += 128) a.out[(b * a.heads + h) * a.kv_lora + i] = acc[i] * inv;
  }
}

// Merges the splits of one (head, row): out = Σ_s e^(m_s − M)·acc_s / Σ_s e^(m_s − M)·l_s, splits
// with l_s = 0 (no position) left out; zeros when every split is empty.
__global__ void __launch_bounds__(128)
    mla_combine_kernel(const float* partial, int64_t splits, int64_t heads, int64_t kv_lora, float* out) {
  extern __shared__ float weight[];  // [splits]
  const int64_t h = blockIdx.x, b = blockIdx.y;
  const float* part = partial + (b * heads + h) * splits * (kv_lora + 2);
  float mx = -INFINITY;
  for (int64_t s = 0; s < splits; ++s)
    if (part[s * (kv_lora + 2) + 1] > 0) mx = fmaxf(mx, part[s * (kv_lora + 2)]);
  float total = 0;
  for (int64_t s = 0; s < splits; ++s) {
    const float ls = part[s * (kv_lora + 2) + 1];
    const float w = ls > 0 ? expf(part[s * (kv_lora + 2)] - mx) : 0.0f;
    if (threadIdx.x == 0) weight[s] = w;
    total += w * ls;
  }
  __syncthreads();
  const float inv = total > 0 ? 1.0f / total : 0.0f;
  for (int64_t i = threadIdx.x; i < kv_lora; i += 128) {
    float v = 0;
    for (int64_t s = 0; s < splits; ++s)
      if (weight[s] != 0) v += weight[s] * part[s * (kv_lora + 2) + 2 + i];
    out[(b * heads + h) * kv_lora + i] = v * inv;
  }
}

// ---- W4A16 grouped GEMM for few rows per expert (decode) ---------------------------------------
// CTA (32 output columns, one moe-aligned block of 16 rows): lane l owns column n0 + l, warp w the
// K groups g = w, w + 8, ...; per group the warp stages the block's real rows of A (32 values
// each) in its own shared slice, loads its column's 16-byte tile and scale, dequantises and
// accumulates only the real rows (sentinel rows cost nothing). The 8 warps' partial sums are added
// in warp order through shared memory. Many more loads in flight than launch_moe_w4a16_gemm's one
// group per CTA step when a block holds one or two real rows.
constexpr int gv_warps = 8, gv_rows = 16;

__global__ void __launch_bounds__(gv_warps * 32) moe_w4a16_gemv_kernel(moe_gemm_args a) {
  __shared__ float xs[gv_warps][gv_rows][33];
  __shared__ float red[gv_warps][gv_rows][32];
  __shared__ int32_t rows[gv_rows];
  const int64_t blk = blockIdx.y;
  if (blk * gv_rows >= *a.num_tokens_post_padded) return;
  const int32_t e = a.expert_ids[blk];
  if (e < 0 || e >= a.experts) return;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  if (tid < gv_rows) rows[tid] = a.sorted_token_ids[blk * gv_rows + tid];
  __syncthreads();
  bool real[gv_rows];
#pragma unroll
  for (int m = 0; m < gv_rows; ++m) real[m] = rows[m] < a.pairs;
  const int64_t n = int64_t{blockIdx.x} * 32 + lane;
  const int64_t groups = a.k / int4_tile_group;
  const uint32_t* tiles = a.tiles + e * int4_tile_words(a.n, a.k);
  const uint16_t* scales = a.scales + e * int4_tile_scales(a.n, a.k);
  float acc[gv_rows];
#pragma unroll
  for (int m = 0; m < gv_rows; ++m) acc[m] = 0;
  for (int64_t g = warp; g < groups; g += gv_warps) {
    // The column's tile and scale first, so that their loads overlap the staging of A.
    uint4 t{};
    float scale = 0;
    if (n < a.n) {
      t = *reinterpret_cast<const uint4*>(tiles + (g * a.n + n) * 4);
      scale = bf16_to_f32(scales[g * a.n + n]);
    }
#pragma unroll
    for (int m = 0; m < gv_rows; ++m)
      if (real[m]) xs[warp][m][lane] = bf16_to_f32(a.a[(rows[m] / a.a_div) * a.lda + g * 32 + lane]);
    __syncwarp();
    if (n < a.n) {
      float w[32];
      const uint32_t words[4] = {t.x, t.y, t.z, t.w};
#pragma unroll
      for (int i = 0; i < 32; ++i)
        w[i] = static_cast<float>(static_cast<int>((words[i / 8] >> (4 * (i % 8))) & 0xFu) - 8);
#pragma unroll
      for (int m = 0; m < gv_rows; ++m) {
        if (!real[m]) continue;
        float part = 0;
#pragma unroll
        for (int i = 0; i < 32; ++i) part += w[i] * xs[warp][m][i];
        acc[m] += part * scale;
      }
    }
    __syncwarp();  // the slice is rewritten by the next group
  }
#pragma unroll
  for (int m = 0; m < gv_rows; ++m)
    if (real[m]) red[warp][m][lane] = acc[m];
  __syncthreads();
  for (int idx = tid; idx < gv_rows * 32; idx += gv_warps * 32) {
    const int m = idx / 32, c = idx % 32;
    const int64_t col = int64_t{blockIdx.x} * 32 + c;
    const int32_t p = rows[m];
    if (p >= a.pairs || col >= a.n) continue;
    float sum = 0;
#pragma unroll
    for (int v = 0; v < gv_warps; ++v) sum += red[v][m][c];
    a.y[p * a.ldy + col] = sum * (a.route_weights != nullptr ? a.route_weights[p] : 1.0f);
  }
}

// ---- MLA decode with the heads of a row sharing each cache read ----------------------------------
// CTA (split of the pages, row), one warp per head (two heads a warp above 16 heads; more would
// spill the query and accumulator registers at 512 threads, so 32 heads at most): chunks
// of 32 positions are staged in shared memory once for all heads; a warp scores its head on them
// (query in registers: lane l holds elements l, l + 32, ...; one warp sum per position, lane j
// keeps score j), updates the running softmax, and adds the weighted latents to its accumulators
// (lane l owns dims l, l + 32, ...). The cache is read once per row instead of once per head.
constexpr int mh_chunk = 32, mh_q_regs = 18, mh_dims = 16;  // width <= 576, kv_lora <= 512

template <int HPW>
__global__ void __launch_bounds__(512)
    mla_decode_heads_kernel(mla_decode_args a, int64_t pages_per_split, float* partial) {
  extern __shared__ uint16_t chunk[];  // [mh_chunk, width]
  const int64_t split = blockIdx.x, b = blockIdx.y, splits = gridDim.x;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  const int64_t R = a.kv_lora, width = R + a.rope;
  float q[HPW][mh_q_regs], acc[HPW][mh_dims], m[HPW], l[HPW];
#pragma unroll
  for (int k = 0; k < HPW; ++k) {
    const int64_t h = warp + int64_t{k} * warps;
#pragma unroll
    for (int i = 0; i < mh_q_regs; ++i) {
      const int64_t idx = lane + 32 * i;
      float v = 0;
      if (h < a.heads && idx < width)
        v = idx < R ? a.q_latent[(b * a.heads + h) * R + idx] : a.q_rope[(b * a.heads + h) * a.rope + idx - R];
      q[k][i] = v;
    }
#pragma unroll
    for (int t = 0; t < mh_dims; ++t) acc[k][t] = 0;
    m[k] = -INFINITY;
    l[k] = 0;
  }
  const int64_t len = a.seq_lens[b];
  const int64_t first = split * pages_per_split * mla_page_size;
  const int64_t last = min(len, first + pages_per_split * mla_page_size);
  for (int64_t base = first; base < last; base += mh_chunk) {
    const int count = static_cast<int>(last - base < mh_chunk ? last - base : mh_chunk);
    const int64_t page = a.block_table[b * a.max_pages + base / mla_page_size];
    const uint16_t* src = a.cache + (page * mla_page_size + base % mla_page_size) * width;
    __syncthreads();  // the previous chunk is consumed
    for (int64_t i = threadIdx.x; i < count * width; i += blockDim.x) chunk[i] = src[i];
    __syncthreads();
#pragma unroll
    for (int k = 0; k < HPW; ++k) {
      if (warp + int64_t{k} * warps >= a.heads) continue;  // uniform over the warp
      float mine = -INFINITY;  // lane j: score of position base + j
      for (int j = 0; j < count; ++j) {
        float d = 0;
#pragma unroll
        for (int i = 0; i < mh_q_regs; ++i) {
          const int64_t idx = lane + 32 * i;
          if (idx < width) d += q[k][i] * bf16_to_f32(chunk[j * width + idx]);
        }
        d = warp_sum(d);
        if (lane == j) mine = d * a.scale;
      }
      const float mn = fmaxf(m[k], detail::warp_max(mine));
      const float factor = expf(m[k] - mn);  // 0 on the first chunk
      const float p = lane < count ? expf(mine - mn) : 0.0f;
      l[k] = l[k] * factor + warp_sum(p);
      m[k] = mn;
#pragma unroll
      for (int t = 0; t < mh_dims; ++t) acc[k][t] *= factor;
      for (int j = 0; j < count; ++j) {
        const float pj = __shfl_sync(0xFFFFFFFFu, p, j);
#pragma unroll
        for (int t = 0; t < mh_dims; ++t) {
          const int64_t dim = lane + 32 * t;
          if (dim < R) acc[k][t] += pj * bf16_to_f32(chunk[j * width + dim]);
        }
      }
    }
  }
#pragma unroll
  for (int k = 0; k < HPW; ++k) {
    const int64_t h = warp + int64_t{k} * warps;
    if (h >= a.heads) continue;
    if (partial == nullptr) {
      const float inv = l[k] > 0 ? 1.0f / l[k] : 0.0f;
#pragma unroll
      for (int t = 0; t < mh_dims; ++t)
        if (lane + 32 * t < R) a.out[(b * a.heads + h) * R + lane + 32 * t] = acc[k][t] * inv;
    } else {
      float* part = partial + ((b * a.heads + h) * splits + split) * (R + 2);
      if (lane == 0) {
        part[0] = m[k];
        part[1] = l[k];
      }
#pragma unroll
      for (int t = 0; t < mh_dims; ++t)
        if (lane + 32 * t < R) part[2 + lane + 32 * t] = acc[k][t];
    }
  }
}

// ---- router product: a warp per RowsPerWarp rows of one token -------------------------------
// The token's activations are read once for the warp's rows (4 when they divide the row count);
// each row's sum is the same lane-strided sum and warp reduction either way.
template <int RowsPerWarp>
__global__ void __launch_bounds__(128)
    gemv_bf16_f32_kernel(const uint16_t* w, int64_t rows, int64_t k, const float* x, int64_t ldx,
                         float* y, int64_t ldy) {
  const int64_t r0 = (int64_t{blockIdx.x} * 4 + threadIdx.x / 32) * RowsPerWarp, t = blockIdx.y;
  const int lane = threadIdx.x % 32;
  if (r0 >= rows) return;
  const uint16_t* wr = w + r0 * k;
  const float* xt = x + t * ldx;
  float s[RowsPerWarp];
#pragma unroll
  for (int j = 0; j < RowsPerWarp; ++j) s[j] = 0;
  for (int64_t i = lane; i < k; i += 32) {
    const float xi = xt[i];
#pragma unroll
    for (int j = 0; j < RowsPerWarp; ++j) s[j] += bf16_to_f32(wr[j * k + i]) * xi;
  }
#pragma unroll
  for (int j = 0; j < RowsPerWarp; ++j) {
    const float sum = warp_sum(s[j]);
    if (lane == 0) y[t * ldy + r0 + j] = sum;
  }
}

__global__ void __launch_bounds__(256) residual_kernel(residual_args a) {
  const int64_t t = blockIdx.x;
  float* ht = a.h + t * a.n;
  const bool routed = a.routed != nullptr && t < *a.live;
  float ss = 0;
  for (int64_t i = threadIdx.x; i < a.n; i += 256) {
    float r = 0;
    if (routed)
      for (int64_t j = 0; j < a.top_k; ++j) r += a.routed[(t * a.top_k + j) * a.n + i];
    const float v = ht[i] + (r + a.add[t * a.n + i]);
    ht[i] = v;
    ss += v * v;
  }
  if (a.norm_w == nullptr) return;  // uniform over the block: no thread reaches block_sum
  ss = detail::block_sum(ss);
  const float inv = rsqrtf(ss / static_cast<float>(a.n) + a.eps);
  for (int64_t i = threadIdx.x; i < a.n; i += 256) {  // the values this thread wrote
    const float v = ht[i] * inv * a.norm_w[i];
    if (a.y != nullptr) a.y[t * a.ldy + i] = v;
    a.yb[t * a.ldyb + i] = f32_to_bf16(v);
  }
}

__global__ void mask_padding_routes_kernel(int32_t* ids, int64_t rows, int64_t top_k,
                                           int32_t experts, const int32_t* live) {
  for (int64_t i = int64_t{*live} * top_k + threadIdx.x; i < rows * top_k; i += blockDim.x) ids[i] = experts;
}

// ---- RMSNorm with a bf16 copy; latent norm + rope + cache write; SiLU·mul to bf16 -------------
template <int Threads>
__global__ void __launch_bounds__(Threads)
    rms_norm_bf16_kernel(const float* x, int64_t ldx, const float* w, float* y, int64_t ldy,
                         uint16_t* yb, int64_t ldyb, int64_t n, float eps) {
  const float* xr = x + blockIdx.x * ldx;
  float ss = 0;
  for (int64_t i = threadIdx.x; i < n; i += Threads) ss += xr[i] * xr[i];
  ss = detail::block_sum(ss);
  const float inv = rsqrtf(ss / static_cast<float>(n) + eps);
  for (int64_t i = threadIdx.x; i < n; i += Threads) {
    const float v = xr[i] * inv * w[i];
    if (y != nullptr) y[blockIdx.x * ldy + i] = v;
    yb[blockIdx.x * ldyb + i] = f32_to_bf16(v);
  }
}

__global__ void __launch_bounds__(128)
    latent_norm_rope_write_kernel(const float* kv, int64_t ldkv, int64_t kv_lora, int64_t rope,
                                  const float* w, float eps, const int32_t* positions,
                                  const float* inv_freq, float amplitude, const int32_t* slots,
                                  uint16_t* cache) {
  const int64_t b = blockIdx.x;
  const float* x = kv + b * ldkv;
  uint16_t* dst = cache + int64_t{slots[b]} * (kv_lora + rope);
  float ss = 0;
  for (int64_t i = threadIdx.x; i < kv_lora; i += 128) ss += x[i] * x[i];
  ss = detail::block_sum(ss);
  const float inv = rsqrtf(ss / static_cast<float>(kv_lora) + eps);
  for (int64_t i = threadIdx.x; i < kv_lora; i += 128) dst[i] = f32_to_bf16(x[i] * inv * w[i]);
  const float pos = static_cast<float>(positions[b]);
  for (int64_t i = threadIdx.x; i < rope / 2; i += 128) {
    float sn, cs;
    sincosf(pos * inv_freq[i], &sn, &cs);
    cs *= amplitude;
    sn *= amplitude;
    const float a = x[kv_lora + 2 * i], c = x[kv_lora + 2 * i + 1];
    dst[kv_lora + 2 * i] = f32_to_bf16(a * cs - c * sn);
    dst[kv_lora + 2 * i + 1] = f32_to_bf16(a * sn + c * cs);
  }
}

__global__ void silu_mul_bf16_kernel(const float* gate_up, int64_t ld_in, uint16_t* out,
                                     int64_t ld_out, int64_t inter) {
  const float* g = gate_up + blockIdx.y * ld_in;
  uint16_t* o = out + blockIdx.y * ld_out;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < inter;
       i += int64_t{gridDim.x} * blockDim.x) {
    const float a = g[i];
    o[i] = f32_to_bf16(a / (1.0f + expf(-a)) * g[inter + i]);
  }
}

__device__ __forceinline__ uint64_t mix(uint64_t z) {  // splitmix64's finaliser
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

__global__ void fill_random_bf16_kernel(uint16_t* p, int64_t n, uint64_t seed, float scale) {
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    const uint64_t z = mix(seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(i));
    const float u = static_cast<float>(z >> 40) * (1.0f / 16777216.0f);  // [0, 1)
    p[i] = f32_to_bf16((2.0f * u - 1.0f) * scale);
  }
}

__global__ void fill_random_u32_kernel(uint32_t* p, int64_t n, uint64_t seed) {
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x)
    p[i] = static_cast<uint32_t>(mix(seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(i)) >> 32);
}

__global__ void fill_f32_kernel(float* p, int64_t n, float value) {
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x)
    p[i] = value;
}

unsigned fill_grid(int64_t n) { return static_cast<unsigned>(ceil_div(n, 256) < 4096 ? ceil_div(n, 256) : 4096); }

}  // namespace

status launch_mla_absorb_q(const float* q, int64_t rows, int64_t heads, int64_t nope, int64_t rope,
                           const uint16_t* w_uk, int64_t kv_lora, float* q_latent, float* q_rope,
                           const int32_t* positions, const float* inv_freq, float amplitude,
                           cudaStream_t stream) noexcept {
  if (rows < 0 || heads < 0 || nope < 1 || rope < 0 || kv_lora < 1 || heads > INT32_MAX ||
      (positions != nullptr && rope % 2 != 0) ||
      ceil_div(kv_lora, absorb_dims) > 65535)
    return status::bad_size;
  if (rows * nope > 10240) return status::unsupported;
  if (rows == 0 || heads == 0) return status::ok;
  if (q == nullptr || w_uk == nullptr || q_latent == nullptr || (rope > 0 && q_rope == nullptr) ||
      (positions != nullptr && inv_freq == nullptr))
    return status::null_pointer;
  static_assert(absorb_rows * absorb_dims == absorb_warps * 32, "one thread per (row, dim) of a chunk");
  const dim3 grid(static_cast<unsigned>(heads), static_cast<unsigned>(ceil_div(kv_lora, absorb_dims)));
  mla_absorb_q_kernel<<<grid, absorb_warps * 32, static_cast<size_t>(rows * nope) * sizeof(float), stream>>>(
      q, rows, heads, nope, rope, w_uk, kv_lora, q_latent, q_rope, positions, inv_freq, amplitude);
  return launched();
}

status launch_mla_unabsorb_v(const float* o_latent, int64_t rows, int64_t heads, int64_t kv_lora,
                             const uint16_t* w_uv, int64_t v, uint16_t* out, int64_t ldo,
                             cudaStream_t stream) noexcept {
  if (rows < 0 || heads < 0 || kv_lora < 1 || v < 1 || ldo < heads * v) return status::bad_size;
  if (rows == 0 || heads == 0) return status::ok;
  if (o_latent == nullptr || w_uv == nullptr || out == nullptr) return status::null_pointer;
  if (v % 4 == 0)
    mla_unabsorb_v_kernel<4><<<static_cast<unsigned>(ceil_div(heads * v, 16)), 128, 0, stream>>>(
        o_latent, rows, heads, kv_lora, w_uv, v, out, ldo);
  else
    mla_unabsorb_v_kernel<1><<<static_cast<unsigned>(ceil_div(heads * v, 4)), 128, 0, stream>>>(
        o_latent, rows, heads, kv_lora, w_uv, v, out, ldo);
  return launched();
}

namespace {
status check_mla(const mla_decode_args& a) noexcept {
  if (a.batch < 0 || a.heads < 0 || a.max_pages < 0 || a.batch > 65535 || a.heads > INT32_MAX)
    return status::bad_size;
  if (a.kv_lora < 1 || a.kv_lora > 1024 || a.rope < 0 || a.rope > 128) return status::unsupported;
  if (a.batch == 0 || a.heads == 0) return status::ok;
  if (a.q_latent == nullptr || (a.rope > 0 && a.q_rope == nullptr) || a.cache == nullptr ||
      a.block_table == nullptr || a.seq_lens == nullptr || a.out == nullptr)
    return status::null_pointer;
  return status::ok;
}
}  // namespace

status launch_mla_decode_plain(const mla_decode_args& a, cudaStream_t stream) noexcept {
  if (const status s = check_mla(a); s != status::ok) return s;
  if (a.batch == 0 || a.heads == 0) return status::ok;
  const dim3 grid(static_cast<unsigned>(a.heads), static_cast<unsigned>(a.batch), 1);
  const size_t smem = static_cast<size_t>(2 * a.kv_lora + a.rope) * sizeof(float);
  mla_decode_plain_kernel<false><<<grid, 128, smem, stream>>>(a, a.max_pages > 0 ? a.max_pages : 1, nullptr);
  return launched();
}

int64_t mla_split_count(int64_t max_pages, int64_t pages_per_split) noexcept {
  return max_pages < 1 || pages_per_split < 1 ? 1 : ceil_div(max_pages, pages_per_split);
}

int64_t mla_split_workspace_floats(int64_t batch, int64_t heads, int64_t kv_lora, int64_t max_pages,
                                   int64_t pages_per_split) noexcept {
  return batch * heads * mla_split_count(max_pages, pages_per_split) * (kv_lora + 2);
}

status launch_mla_decode_split(const mla_decode_args& a, int64_t pages_per_split, float* workspace,
                               int64_t workspace_floats, cudaStream_t stream) noexcept {
  if (pages_per_split < 1) return status::bad_size;
  if (const status s = check_mla(a); s != status::ok) return s;
  if (a.batch == 0 || a.heads == 0) return status::ok;
  const int64_t splits = mla_split_count(a.max_pages, pages_per_split);
  if (splits > 65535) return status::bad_size;
  if (splits == 1) return launch_mla_decode_plain(a, stream);
  if (workspace == nullptr) return status::null_pointer;
  if (workspace_floats < mla_split_workspace_floats(a.batch, a.heads, a.kv_lora, a.max_pages, pages_per_split))
    return status::bad_size;
  const dim3 grid(static_cast<unsigned>(a.heads), static_cast<unsigned>(a.batch), static_cast<unsigned>(splits));
  const size_t smem = static_cast<size_t>(2 * a.kv_lora + a.rope) * sizeof(float);
  mla_decode_plain_kernel<true><<<grid, 128, smem, stream>>>(a, pages_per_split, workspace);
  if (const status s = launched(); s != status::ok) return s;
  const dim3 cgrid(static_cast<unsigned>(a.heads), static_cast<unsigned>(a.batch));
  mla_combine_kernel<<<cgrid, 128, static_cast<size_t>(splits) * sizeof(float), stream>>>(
      workspace, splits, a.heads, a.kv_lora, a.out);
  return launched();
}

status launch_moe_w4a16_gemv(const moe_gemm_args& a, cudaStream_t stream) noexcept {
  if (a.block != gv_rows) return status::unsupported;
  if (a.experts < 1 || a.n < 1 || a.k < 32 || a.k % 32 != 0 || a.pairs < 0 || a.a_div < 1 ||
      a.capacity < 0 || a.capacity % a.block != 0 || a.lda < a.k || a.ldy < a.n ||
      a.pairs > INT32_MAX - 1 || a.capacity / a.block > 65535 || ceil_div(a.n, 32) > INT32_MAX)
    return status::bad_size;
  if (a.capacity == 0 || a.pairs == 0) return status::ok;
  if (a.a == nullptr || a.tiles == nullptr || a.scales == nullptr || a.sorted_token_ids == nullptr ||
      a.expert_ids == nullptr || a.num_tokens_post_padded == nullptr || a.y == nullptr)
    return status::null_pointer;
  if (reinterpret_cast<uintptr_t>(a.tiles) % 16 != 0) return status::bad_size;  // 128-bit loads
  const dim3 grid(static_cast<unsigned>(ceil_div(a.n, 32)), static_cast<unsigned>(a.capacity / a.block));
  moe_w4a16_gemv_kernel<<<grid, gv_warps * 32, 0, stream>>>(a);
  return launched();
}

bool mla_decode_heads_supported(int64_t heads, int64_t kv_lora, int64_t rope) noexcept {
  return heads >= 1 && heads <= 32 && kv_lora >= 32 && kv_lora % 32 == 0 && kv_lora <= 32 * mh_dims &&
         rope >= 0 && kv_lora + rope <= 32 * mh_q_regs;
}

status launch_mla_decode_heads(const mla_decode_args& a, int64_t pages_per_split, float* workspace,
                               int64_t workspace_floats, cudaStream_t stream) noexcept {
  if (pages_per_split < 1) return status::bad_size;
  if (const status s = check_mla(a); s != status::ok) return s;
  if (!mla_decode_heads_supported(a.heads, a.kv_lora, a.rope)) return status::unsupported;
  if (a.batch == 0) return status::ok;
  const int64_t splits = mla_split_count(a.max_pages, pages_per_split);
  if (splits > INT32_MAX) return status::bad_size;
  float* partial = nullptr;
  if (splits > 1) {
    if (workspace == nullptr) return status::null_pointer;
    if (workspace_floats < mla_split_workspace_floats(a.batch, a.heads, a.kv_lora, a.max_pages, pages_per_split))
      return status::bad_size;
    partial = workspace;
  }
  const int hpw = a.heads <= 16 ? 1 : 2;
  const auto warps = static_cast<unsigned>((a.heads + hpw - 1) / hpw);
  const dim3 grid(static_cast<unsigned>(splits), static_cast<unsigned>(a.batch));
  const size_t smem = static_cast<size_t>(mh_chunk * (a.kv_lora + a.rope)) * sizeof(uint16_t);
  if (hpw == 1)
    mla_decode_heads_kernel<1><<<grid, warps * 32, smem, stream>>>(a, pages_per_split, partial);
  else
    mla_decode_heads_kernel<2><<<grid, warps * 32, smem, stream>>>(a, pages_per_split, partial);
  if (const status s = launched(); s != status::ok || splits == 1) return s;
  const dim3 cgrid(static_cast<unsigned>(a.heads), static_cast<unsigned>(a.batch));
  mla_combine_kernel<<<cgrid, 128, static_cast<size_t>(splits) * sizeof(float), stream>>>(
      workspace, splits, a.heads, a.kv_lora, a.out);
  return launched();
}

status launch_gemv_bf16_f32(const uint16_t* w, int64_t rows, int64_t k, const float* x, int64_t ldx,
                            int64_t tokens, float* y, int64_t ldy, cudaStream_t stream) noexcept {
  if (rows < 0 || k < 1 || tokens < 0 || ldx < k || ldy < rows || tokens > 65535 ||
      ceil_div(rows, 4) > INT32_MAX)
    return status::bad_size;
  if (rows == 0 || tokens == 0) return status::ok;
  if (w == nullptr || x == nullptr || y == nullptr) return status::null_pointer;
  if (rows % 4 == 0) {
    const dim3 grid(static_cast<unsigned>(ceil_div(rows, 16)), static_cast<unsigned>(tokens));
    gemv_bf16_f32_kernel<4><<<grid, 128, 0, stream>>>(w, rows, k, x, ldx, y, ldy);
  } else {
    const dim3 grid(static_cast<unsigned>(ceil_div(rows, 4)), static_cast<unsigned>(tokens));
    gemv_bf16_f32_kernel<1><<<grid, 128, 0, stream>>>(w, rows, k, x, ldx, y, ldy);
  }
  return launched();
}

status launch_residual(const residual_args& a, cudaStream_t stream) noexcept {
  if (a.rows < 0 || a.n < 1 || a.rows > INT32_MAX || (a.routed != nullptr && a.top_k < 1) ||
      (a.norm_w != nullptr && ((a.y != nullptr && a.ldy < a.n) || a.ldyb < a.n)))
    return status::bad_size;
  if (a.rows == 0) return status::ok;
  if (a.h == nullptr || a.add == nullptr || (a.routed != nullptr && a.live == nullptr) ||
      (a.norm_w != nullptr && a.yb == nullptr))
    return status::null_pointer;
  residual_kernel<<<static_cast<unsigned>(a.rows), 256, 0, stream>>>(a);
  return launched();
}

status launch_mask_padding_routes(int32_t* ids, int64_t rows, int64_t top_k, int32_t experts,
                                  const int32_t* live, cudaStream_t stream) noexcept {
  if (rows < 0 || top_k < 1 || experts < 1) return status::bad_size;
  if (rows == 0) return status::ok;
  if (ids == nullptr || live == nullptr) return status::null_pointer;
  mask_padding_routes_kernel<<<1, 256, 0, stream>>>(ids, rows, top_k, experts, live);
  return launched();
}

status launch_rms_norm_bf16(const float* x, int64_t ldx, const float* w, float* y, int64_t ldy,
                            uint16_t* yb, int64_t ldyb, int64_t rows, int64_t n, float eps,
                            cudaStream_t stream) noexcept {
  if (rows < 0 || n < 1 || ldx < n || (y != nullptr && ldy < n) || ldyb < n || rows > INT32_MAX)
    return status::bad_size;
  if (rows == 0) return status::ok;
  if (x == nullptr || w == nullptr || yb == nullptr) return status::null_pointer;
  if (n <= 1024)
    rms_norm_bf16_kernel<128><<<static_cast<unsigned>(rows), 128, 0, stream>>>(x, ldx, w, y, ldy, yb, ldyb, n, eps);
  else
    rms_norm_bf16_kernel<512><<<static_cast<unsigned>(rows), 512, 0, stream>>>(x, ldx, w, y, ldy, yb, ldyb, n, eps);
  return launched();
}

status launch_latent_norm_rope_write(const float* kv, int64_t ldkv, int64_t rows, int64_t kv_lora,
                                     int64_t rope, const float* w, float eps,
                                     const int32_t* positions, const float* inv_freq,
                                     float amplitude, const int32_t* slots, uint16_t* cache,
                                     cudaStream_t stream) noexcept {
  if (rows < 0 || kv_lora < 1 || rope < 0 || rope % 2 != 0 || ldkv < kv_lora + rope || rows > INT32_MAX)
    return status::bad_size;
  if (rows == 0) return status::ok;
  if (kv == nullptr || w == nullptr || slots == nullptr || cache == nullptr ||
      (rope > 0 && (positions == nullptr || inv_freq == nullptr)))
    return status::null_pointer;
  latent_norm_rope_write_kernel<<<static_cast<unsigned>(rows), 128, 0, stream>>>(
      kv, ldkv, kv_lora, rope, w, eps, positions, inv_freq, amplitude, slots, cache);
  return launched();
}

status launch_silu_mul_bf16(const float* gate_up, int64_t ld_in, uint16_t* out, int64_t ld_out,
                            int64_t tokens, int64_t inter, cudaStream_t stream) noexcept {
  if (tokens < 0 || inter < 0 || tokens > 65535 || ld_in < 2 * inter || ld_out < inter)
    return status::bad_size;
  if (tokens == 0 || inter == 0) return status::ok;
  if (gate_up == nullptr || out == nullptr) return status::null_pointer;
  const dim3 grid(static_cast<unsigned>(ceil_div(inter, 256) < 64 ? ceil_div(inter, 256) : 64),
                  static_cast<unsigned>(tokens));
  silu_mul_bf16_kernel<<<grid, 256, 0, stream>>>(gate_up, ld_in, out, ld_out, inter);
  return launched();
}

status launch_fill_random_bf16(uint16_t* p, int64_t n, uint64_t seed, float scale, cudaStream_t stream) noexcept {
  if (n < 0) return status::bad_size;
  if (n == 0) return status::ok;
  if (p == nullptr) return status::null_pointer;
  fill_random_bf16_kernel<<<fill_grid(n), 256, 0, stream>>>(p, n, seed, scale);
  return launched();
}

status launch_fill_random_u32(uint32_t* p, int64_t n, uint64_t seed, cudaStream_t stream) noexcept {
  if (n < 0) return status::bad_size;
  if (n == 0) return status::ok;
  if (p == nullptr) return status::null_pointer;
  fill_random_u32_kernel<<<fill_grid(n), 256, 0, stream>>>(p, n, seed);
  return launched();
}

status launch_fill_f32(float* p, int64_t n, float value, cudaStream_t stream) noexcept {
  if (n < 0) return status::bad_size;
  if (n == 0) return status::ok;
  if (p == nullptr) return status::null_pointer;
  fill_f32_kernel<<<fill_grid(n), 256, 0, stream>>>(p, n, value);
  return launched();
}

}  // namespace troupe::kernels::cuda
