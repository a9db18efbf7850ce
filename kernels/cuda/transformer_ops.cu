// Device code of the per-token ops: RMSNorm, adjacent-pair RoPE, SiLU·mul, embedding gather,
// DeepSeek-V3 top-k routing, GGUF Q8_0/Q4_1 mat-vec, argmax and absorbed MLA decode attention.
// One translation unit on purpose (nvcc time). Contracts: ops.hpp.

#include <cuda_fp16.h>

#include <cfloat>
#include <climits>

#include "cuda/common.cuh"
#include "cuda/ops.hpp"

namespace troupe::kernels::cuda {

using detail::bf16_to_f32;
using detail::block_sum;
using detail::ceil_div;
using detail::f32_to_bf16;
using detail::launched;
using detail::warp_max;
using detail::warp_sum;

// ---- RMSNorm ----------------------------------------------------------------------------------

template <int Threads>
__global__ void __launch_bounds__(Threads)
    rms_norm_kernel(const float* x, int64_t ldx, const float* w, float* y, int64_t ldy, int64_t n,
                    float eps) {
  const float* xr = x + blockIdx.x * ldx;
  float* yr = y + blockIdx.x * ldy;
  float ss = 0;
  for (int64_t i = threadIdx.x; i < n; i += Threads) ss += xr[i] * xr[i];
  ss = block_sum(ss);
  const float inv = rsqrtf(ss / static_cast<float>(n) + eps);
  for (int64_t i = threadIdx.x; i < n; i += Threads) yr[i] = xr[i] * inv * w[i];
}

status launch_rms_norm(const float* x, int64_t ldx, const float* w, float* y, int64_t ldy,
                       int64_t rows, int64_t n, float eps, cudaStream_t stream) noexcept {
  if (rows < 0 || n < 1 || ldx < n || ldy < n || rows > INT32_MAX) return status::bad_size;
  if (rows == 0) return status::ok;
  if (x == nullptr || w == nullptr || y == nullptr) return status::null_pointer;
  if (n <= 1024)
    rms_norm_kernel<128><<<static_cast<unsigned>(rows), 128, 0, stream>>>(x, ldx, w, y, ldy, n, eps);
  else
    rms_norm_kernel<512><<<static_cast<unsigned>(rows), 512, 0, stream>>>(x, ldx, w, y, ldy, n, eps);
  return launched();
}

// ---- RoPE, adjacent pairs ---------------------------------------------------------------------

__global__ void rope_adjacent_kernel(float* x, int64_t heads, int64_t token_stride,
                                     int64_t head_stride, int64_t rope_offset, int64_t pairs,
                                     const int32_t* positions, const float* inv_freq,
                                     float amplitude) {
  const int64_t t = blockIdx.x / heads, h = blockIdx.x % heads;
  float* v = x + t * token_stride + h * head_stride + rope_offset;
  const float pos = static_cast<float>(positions[t]);
  for (int64_t i = threadIdx.x; i < pairs; i += blockDim.x) {
    float s, c;
    sincosf(pos * inv_freq[i], &s, &c);
    c *= amplitude;
    s *= amplitude;
    const float a = v[2 * i], b = v[2 * i + 1];
    v[2 * i] = a * c - b * s;
    v[2 * i + 1] = a * s + b * c;
  }
}

status launch_rope_adjacent(float* x, int64_t tokens, int64_t heads, int64_t token_stride,
                            int64_t head_stride, int64_t rope_offset, int64_t rope_dim,
                            const int32_t* positions, const float* inv_freq, float amplitude,
                            cudaStream_t stream) noexcept {
  if (tokens < 0 || heads < 0 || rope_dim < 0 || rope_dim % 2 != 0 || rope_offset < 0 ||
      head_stride < 0 || token_stride < 0 || tokens * heads > INT32_MAX)
    return status::bad_size;
  if (heads > 1 && head_stride < rope_offset + rope_dim) return status::bad_size;
  if (tokens > 1 && token_stride < (heads - 1) * head_stride + rope_offset + rope_dim)
    return status::bad_size;
  if (tokens == 0 || heads == 0 || rope_dim == 0) return status::ok;
  if (x == nullptr || positions == nullptr || inv_freq == nullptr) return status::null_pointer;
  const int threads = rope_dim / 2 >= 64 ? 64 : 32;
  rope_adjacent_kernel<<<static_cast<unsigned>(tokens * heads), threads, 0, stream>>>(
      x, heads, token_stride, head_stride, rope_offset, rope_dim / 2, positions, inv_freq,
      amplitude);
  return launched();
}

// ---- SiLU · mul -------------------------------------------------------------------------------

__global__ void silu_mul_kernel(const float* gate_up, int64_t ld_in, float* out, int64_t ld_out,
                                int64_t inter) {
  const float* g = gate_up + blockIdx.y * ld_in;
  float* o = out + blockIdx.y * ld_out;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < inter;
       i += int64_t{gridDim.x} * blockDim.x) {
    const float a = g[i];
    o[i] = a / (1.0f + expf(-a)) * g[inter + i];
  }
}

status launch_silu_mul(const float* gate_up, int64_t ld_in, float* out, int64_t ld_out,
                       int64_t tokens, int64_t inter, cudaStream_t stream) noexcept {
  if (tokens < 0 || inter < 0 || tokens > 65535 || (tokens > 1 && (ld_in < 2 * inter ||
                                                                    ld_out < inter)))
    return status::bad_size;
  if (tokens == 0 || inter == 0) return status::ok;
  if (gate_up == nullptr || out == nullptr) return status::null_pointer;
  const dim3 grid(static_cast<unsigned>(ceil_div(inter, 256) < 64 ? ceil_div(inter, 256) : 64),
                  static_cast<unsigned>(tokens));
  silu_mul_kernel<<<grid, 256, 0, stream>>>(gate_up, ld_in, out, ld_out, inter);
  return launched();
}

// ---- Embedding --------------------------------------------------------------------------------

template <typename Out>
__global__ void embedding_kernel(const uint16_t* table, int64_t vocab, int64_t dim,
                                 const int32_t* ids, Out* out) {
  const int32_t id = ids[blockIdx.x];
  Out* o = out + blockIdx.x * dim;
  const bool valid = id >= 0 && id < vocab;
  const uint16_t* row = table + (valid ? id : 0) * dim;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    const uint16_t v = valid ? row[i] : uint16_t{0};
    if constexpr (sizeof(Out) == 4)
      o[i] = bf16_to_f32(v);
    else
      o[i] = v;
  }
}

template <typename Out>
status launch_embedding(const uint16_t* table, int64_t vocab, int64_t dim, const int32_t* ids,
                        int64_t tokens, Out* out, cudaStream_t stream) noexcept {
  if (vocab < 1 || dim < 1 || tokens < 0 || tokens > INT32_MAX) return status::bad_size;
  if (tokens == 0) return status::ok;
  if (table == nullptr || ids == nullptr || out == nullptr) return status::null_pointer;
  embedding_kernel<Out><<<static_cast<unsigned>(tokens), 256, 0, stream>>>(table, vocab, dim, ids,
                                                                            out);
  return launched();
}

status launch_embedding_f32(const uint16_t* table, int64_t vocab, int64_t dim, const int32_t* ids,
                            int64_t tokens, float* out, cudaStream_t stream) noexcept {
  return launch_embedding(table, vocab, dim, ids, tokens, out, stream);
}

status launch_embedding_bf16(const uint16_t* table, int64_t vocab, int64_t dim, const int32_t* ids,
                             int64_t tokens, uint16_t* out, cudaStream_t stream) noexcept {
  return launch_embedding(table, vocab, dim, ids, tokens, out, stream);
}

// ---- Routing ----------------------------------------------------------------------------------

/// Index of the largest value among v[i] for unmasked i < n across the warp (ties: lower index);
/// -1 when none is left.
__device__ int warp_argmax(const float* v, const bool* taken, int n) {
  float best = -FLT_MAX;
  int idx = INT_MAX;
  for (int i = threadIdx.x % 32; i < n; i += 32)
    if (!taken[i] && (idx == INT_MAX || v[i] > best || (v[i] == best && i < idx))) {
      best = v[i];
      idx = i;
    }
  for (int o = 16; o > 0; o >>= 1) {
    const float ob = __shfl_xor_sync(0xFFFFFFFFu, best, o);
    const int oi = __shfl_xor_sync(0xFFFFFFFFu, idx, o);
    if (oi != INT_MAX && (idx == INT_MAX || ob > best || (ob == best && oi < idx))) {
      best = ob;
      idx = oi;
    }
  }
  return idx == INT_MAX ? -1 : idx;
}

__global__ void __launch_bounds__(32)
    route_topk_kernel(const float* logits, const float* bias, int experts, int groups,
                      int topk_group, int top_k, bool norm, float scaling, int32_t* ids,
                      float* weights) {
  __shared__ float scores[1024], choice[1024], group_score[32];
  __shared__ bool taken[1024], group_taken[32], group_kept[32];
  const int lane = threadIdx.x;
  const float* l = logits + int64_t{blockIdx.x} * experts;
  for (int e = lane; e < experts; e += 32) {
    const float s = 1.0f / (1.0f + expf(-l[e]));
    scores[e] = s;
    choice[e] = s + (bias != nullptr ? bias[e] : 0.0f);
    taken[e] = false;
  }
  __syncwarp();
  if (groups > 1 && topk_group < groups) {
    const int per = experts / groups;
    if (lane < groups) {
      float best = -INFINITY, second = -INFINITY;
      for (int j = 0; j < per; ++j) {
        const float c = choice[lane * per + j];
        if (c > best) {
          second = best;
          best = c;
        } else if (c > second) {
          second = c;
        }
      }
      group_score[lane] = per > 1 ? best + second : best;
      group_taken[lane] = false;
      group_kept[lane] = false;
    }
    __syncwarp();
    for (int i = 0; i < topk_group; ++i) {
      const int g = warp_argmax(group_score, group_taken, groups);
      if (lane == 0 && g >= 0) group_taken[g] = group_kept[g] = true;
      __syncwarp();
    }
    for (int e = lane; e < experts; e += 32)
      if (!group_kept[e / per]) choice[e] = 0.0f;
    __syncwarp();
  }
  float sum = 0;
  float mine = 0;  // lane j < top_k keeps slot j's weight
  for (int j = 0; j < top_k; ++j) {
    const int e = warp_argmax(choice, taken, experts);
    const float s = scores[e];
    sum += s;
    if (lane == j) mine = s;
    if (lane == 0) {
      taken[e] = true;
      ids[int64_t{blockIdx.x} * top_k + j] = e;
    }
    __syncwarp();
  }
  if (lane < top_k) {
    if (norm) mine /= sum + 1e-20f;
    weights[int64_t{blockIdx.x} * top_k + lane] = mine * scaling;
  }
}

status launch_route_topk(const float* logits, const float* bias, int64_t tokens, int64_t experts,
                         int64_t groups, int64_t topk_group, int64_t top_k, bool norm_topk_prob,
                         float scaling, int32_t* ids, float* weights, cudaStream_t stream) noexcept {
  if (tokens < 0 || experts < 1 || groups < 1 || top_k < 1 || top_k > experts ||
      topk_group < 1 || topk_group > groups || tokens > INT32_MAX)
    return status::bad_size;
  if (experts > 1024 || groups > 32 || top_k > 32 || experts % groups != 0)
    return status::unsupported;
  if (tokens == 0) return status::ok;
  if (logits == nullptr || ids == nullptr || weights == nullptr) return status::null_pointer;
  route_topk_kernel<<<static_cast<unsigned>(tokens), 32, 0, stream>>>(
      logits, bias, static_cast<int>(experts), static_cast<int>(groups),
      static_cast<int>(topk_group), static_cast<int>(top_k), norm_topk_prob, scaling, ids, weights);
  return launched();
}

// ---- GGUF Q8_0 / Q4_1 mat-vec -----------------------------------------------------------------

__device__ __forceinline__ float fp16_bits(const uint8_t* p) {
  return __half2float(__ushort_as_half(static_cast<unsigned short>(p[0] | (p[1] << 8))));
}

/// Dot of one 32-value block with x[0..32).
template <uint32_t Type>
__device__ __forceinline__ float block_dot(const uint8_t* b, const float* x) {
  float acc = 0;
  if constexpr (Type == 8) {  // Q8_0: fp16 d, int8 qs[32]
    const auto* qs = reinterpret_cast<const int8_t*>(b + 2);
#pragma unroll
    for (int i = 0; i < 32; ++i) acc += static_cast<float>(qs[i]) * x[i];
    return acc * fp16_bits(b);
  } else {  // Q4_1: fp16 d, fp16 m, uint8 qs[16]; low nibbles are values 0..15, high 16..31
    const uint8_t* qs = b + 4;
    float xs = 0;
#pragma unroll
    for (int i = 0; i < 16; ++i) {
      acc += static_cast<float>(qs[i] & 0xF) * x[i] + static_cast<float>(qs[i] >> 4) * x[i + 16];
      xs += x[i] + x[i + 16];
    }
    return acc * fp16_bits(b) + xs * fp16_bits(b + 2);
  }
}

template <uint32_t Type>
__global__ void __launch_bounds__(128)
    ggml_mat_vec_kernel(const uint8_t* w, int64_t rows, int64_t blocks, int64_t row_stride,
                        const float* x, int64_t ldx, float* y, int64_t ldy) {
  constexpr int block_bytes = Type == 8 ? 34 : 20;
  const int64_t r = int64_t{blockIdx.x} * 4 + threadIdx.x / 32;
  if (r >= rows) return;
  const int lane = threadIdx.x % 32;
  const uint8_t* wr = w + r * row_stride;
  const float* xt = x + int64_t{blockIdx.y} * ldx;
  float acc = 0;
  for (int64_t b = lane; b < blocks; b += 32) acc += block_dot<Type>(wr + b * block_bytes, xt + b * 32);
  acc = warp_sum(acc);
  if (lane == 0) y[int64_t{blockIdx.y} * ldy + r] = acc;
}

status launch_ggml_mat_vec(uint32_t weight_type, const void* w, int64_t rows, int64_t n,
                           int64_t row_stride, const float* x, int64_t ldx, int64_t tokens,
                           float* y, int64_t ldy, cudaStream_t stream) noexcept {
  if (weight_type != 8 && weight_type != 3) return status::unsupported;
  const int64_t block_bytes = weight_type == 8 ? 34 : 20;
  if (rows < 0 || n < 0 || n % 32 != 0 || tokens < 0 || tokens > 65535 ||
      row_stride < n / 32 * block_bytes || ceil_div(rows, 4) > INT32_MAX ||
      (tokens > 1 && (ldx < n || ldy < rows)))
    return status::bad_size;
  if (rows == 0 || tokens == 0) return status::ok;
  if (w == nullptr || x == nullptr || y == nullptr) return status::null_pointer;
  const dim3 grid(static_cast<unsigned>(ceil_div(rows, 4)), static_cast<unsigned>(tokens));
  const auto* wb = static_cast<const uint8_t*>(w);
  if (weight_type == 8)
    ggml_mat_vec_kernel<8><<<grid, 128, 0, stream>>>(wb, rows, n / 32, row_stride, x, ldx, y, ldy);
  else
    ggml_mat_vec_kernel<3><<<grid, 128, 0, stream>>>(wb, rows, n / 32, row_stride, x, ldx, y, ldy);
  return launched();
}

// ---- Argmax -----------------------------------------------------------------------------------

__global__ void __launch_bounds__(256)
    argmax_kernel(const float* logits, int64_t ld, int64_t vocab, int32_t* ids) {
  const float* l = logits + blockIdx.x * ld;
  float best = -INFINITY;
  int64_t idx = INT64_MAX;
  for (int64_t i = threadIdx.x; i < vocab; i += 256) {
    const float v = l[i];
    if (v > best || (v == best && i < idx)) {
      best = v;
      idx = i;
    }
  }
  __shared__ float sv[256];
  __shared__ int64_t si[256];
  sv[threadIdx.x] = best;
  si[threadIdx.x] = idx;
  __syncthreads();
  for (int s = 128; s > 0; s >>= 1) {
    if (threadIdx.x < s) {
      const float ov = sv[threadIdx.x + s];
      const int64_t oi = si[threadIdx.x + s];
      if (ov > sv[threadIdx.x] || (ov == sv[threadIdx.x] && oi < si[threadIdx.x])) {
        sv[threadIdx.x] = ov;
        si[threadIdx.x] = oi;
      }
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) ids[blockIdx.x] = si[0] == INT64_MAX ? 0 : static_cast<int32_t>(si[0]);
}

status launch_argmax(const float* logits, int64_t ld, int64_t batch, int64_t vocab, int32_t* ids,
                     cudaStream_t stream) noexcept {
  if (batch < 0 || vocab < 1 || vocab > INT32_MAX || batch > INT32_MAX || (batch > 1 && ld < vocab))
    return status::bad_size;
  if (batch == 0) return status::ok;
  if (logits == nullptr || ids == nullptr) return status::null_pointer;
  argmax_kernel<<<static_cast<unsigned>(batch), 256, 0, stream>>>(logits, ld, vocab, ids);
  return launched();
}

// ---- MLA absorbed decode ----------------------------------------------------------------------

/// One CTA per (head, sequence), 128 threads; online softmax over chunks of one page (64
/// positions): a warp scores a position (dot over kv_lora + rope), then each thread accumulates
/// its kv_lora / 128 latent dimensions. The cache is read once per head (heads share nothing yet;
/// a CTA over several heads would read it once per sequence: the next step for speed).
template <int DimsPerThread>
__global__ void __launch_bounds__(128) mla_decode_kernel(mla_decode_args a) {
  extern __shared__ float q[];  // [kv_lora + rope]
  __shared__ float p[mla_page_size];
  const int64_t h = blockIdx.x, b = blockIdx.y;
  const int64_t width = a.kv_lora + a.rope;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const float* ql = a.q_latent + (b * a.heads + h) * a.kv_lora;
  const float* qr = a.q_rope + (b * a.heads + h) * a.rope;
  for (int64_t i = tid; i < a.kv_lora; i += 128) q[i] = ql[i];
  for (int64_t i = tid; i < a.rope; i += 128) q[a.kv_lora + i] = qr[i];
  __syncthreads();
  const int64_t len = a.seq_lens[b];
  float acc[DimsPerThread];
#pragma unroll
  for (int d = 0; d < DimsPerThread; ++d) acc[d] = 0;
  float m = -INFINITY, l = 0;
  for (int64_t base = 0; base < len; base += mla_page_size) {
    const int64_t page = a.block_table[b * a.max_pages + base / mla_page_size];
    const uint16_t* c = a.cache + page * mla_page_size * width;
    const int count = static_cast<int>(len - base < mla_page_size ? len - base : mla_page_size);
    for (int j = warp; j < count; j += 4) {
      const uint16_t* cj = c + j * width;
      float s = 0;
      for (int64_t i = lane; i < width; i += 32) s += q[i] * bf16_to_f32(cj[i]);
      s = warp_sum(s);
      if (lane == 0) p[j] = s * a.scale;
    }
    __syncthreads();
    float mc = -INFINITY;
    for (int j = 0; j < count; ++j) mc = fmaxf(mc, p[j]);
    const float mn = fmaxf(m, mc);
    const float factor = expf(m - mn);  // 0 on the first chunk
    __syncthreads();
    if (tid < count) p[tid] = expf(p[tid] - mn);
    __syncthreads();
    float ps = 0;
    for (int j = 0; j < count; ++j) ps += p[j];
    l = l * factor + ps;
    m = mn;
#pragma unroll
    for (int d = 0; d < DimsPerThread; ++d) {
      const int64_t dim = tid + d * 128;
      float v = acc[d] * factor;
      if (dim < a.kv_lora)
        for (int j = 0; j < count; ++j) v += p[j] * bf16_to_f32(c[j * width + dim]);
      acc[d] = v;
    }
    __syncthreads();  // p is rewritten by the next chunk
  }
  float* o = a.out + (b * a.heads + h) * a.kv_lora;
  const float inv = l > 0 ? 1.0f / l : 0.0f;
#pragma unroll
  for (int d = 0; d < DimsPerThread; ++d) {
    const int64_t dim = tid + d * 128;
    if (dim < a.kv_lora) o[dim] = acc[d] * inv;
  }
}

status launch_mla_decode(const mla_decode_args& a, cudaStream_t stream) noexcept {
  if (a.batch < 0 || a.heads < 0 || a.max_pages < 0 || a.batch > 65535 || a.heads > INT32_MAX)
    return status::bad_size;
  if (a.kv_lora < 128 || a.kv_lora % 128 != 0 || a.kv_lora > 1024 || a.rope < 0 || a.rope > 128 ||
      a.rope % 2 != 0)
    return status::unsupported;
  if (a.batch == 0 || a.heads == 0) return status::ok;
  if (a.q_latent == nullptr || (a.rope > 0 && a.q_rope == nullptr) || a.cache == nullptr ||
      a.block_table == nullptr || a.seq_lens == nullptr || a.out == nullptr)
    return status::null_pointer;
  const dim3 grid(static_cast<unsigned>(a.heads), static_cast<unsigned>(a.batch));
  const size_t smem = static_cast<size_t>(a.kv_lora + a.rope) * sizeof(float);
  switch (a.kv_lora / 128) {
    case 1: mla_decode_kernel<1><<<grid, 128, smem, stream>>>(a); break;
    case 2: mla_decode_kernel<2><<<grid, 128, smem, stream>>>(a); break;
    case 4: mla_decode_kernel<4><<<grid, 128, smem, stream>>>(a); break;
    default: mla_decode_kernel<8><<<grid, 128, smem, stream>>>(a); break;
  }
  return launched();
}

}  // namespace troupe::kernels::cuda
