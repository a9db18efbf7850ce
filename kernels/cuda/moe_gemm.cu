// Device code of the W4A16 grouped GEMM of the routed experts (contract: ops.hpp,
// launch_moe_w4a16_gemm; weight layout: int4_repack.hpp; row order: moe_align.hpp).
//
// A CTA owns one moe-aligned block of BM sorted (token, slot) rows and 128 output columns; each
// thread owns one column. Per 32-wide K group the CTA stages the BM activation rows (bf16 -> fp32)
// in shared memory, and each thread loads its column's whole group with one 128-bit load (the
// warp's 32 loads are 512 contiguous bytes in the repacked layout) and its bf16 scale, dequantises
// the 32 nibbles in registers and accumulates BM dot products. Plain CUDA cores, no tensor cores:
// the correct baseline that a wgmma/Marlin-style kernel will be checked against.

#include "cuda/common.cuh"
#include "cuda/int4_repack.hpp"
#include "cuda/moe_align.hpp"
#include "cuda/ops.hpp"

namespace troupe::kernels::cuda {

using detail::bf16_to_f32;
using detail::ceil_div;
using detail::launched;

namespace {

constexpr int moe_threads = 128;  // = output columns per CTA

template <int BM>
__global__ void __launch_bounds__(moe_threads) moe_w4a16_gemm_kernel(moe_gemm_args a) {
  __shared__ float xs[BM][33];  // +1: no bank conflicts on the staging writes
  __shared__ int32_t rows[BM];
  const int64_t blk = blockIdx.y;
  if (blk * BM >= *a.num_tokens_post_padded) return;
  const int32_t e = a.expert_ids[blk];
  if (e < 0 || e >= a.experts) return;
  const int tid = threadIdx.x;
  if (tid < BM) rows[tid] = a.sorted_token_ids[blk * BM + tid];
  __syncthreads();

  const int64_t n = int64_t{blockIdx.x} * moe_threads + tid;
  const int64_t groups = a.k / int4_tile_group;
  const uint32_t* tiles = a.tiles + e * int4_tile_words(a.n, a.k);
  const uint16_t* scales = a.scales + e * int4_tile_scales(a.n, a.k);
  float acc[BM];
#pragma unroll
  for (int m = 0; m < BM; ++m) acc[m] = 0;

  for (int64_t g = 0; g < groups; ++g) {
    for (int i = tid; i < BM * 32; i += moe_threads) {
      const int m = i / 32, c = i % 32;
      const int32_t p = rows[m];
      xs[m][c] = p < a.pairs ? bf16_to_f32(a.a[(p / a.a_div) * a.lda + g * 32 + c]) : 0.0f;
    }
    __syncthreads();
    if (n < a.n) {
      const uint4 t = *reinterpret_cast<const uint4*>(tiles + (g * a.n + n) * 4);
      const float scale = bf16_to_f32(scales[g * a.n + n]);
      float w[32];
      const uint32_t words[4] = {t.x, t.y, t.z, t.w};
#pragma unroll
      for (int i = 0; i < 32; ++i)
        w[i] = static_cast<float>(static_cast<int>((words[i / 8] >> (4 * (i % 8))) & 0xFu) - 8);
#pragma unroll
      for (int m = 0; m < BM; ++m) {
        float part = 0;
#pragma unroll
        for (int i = 0; i < 32; ++i) part += w[i] * xs[m][i];
        acc[m] += part * scale;
      }
    }
    __syncthreads();
  }
  if (n >= a.n) return;
#pragma unroll
  for (int m = 0; m < BM; ++m) {
    const int32_t p = rows[m];
    if (p < a.pairs)
      a.y[p * a.ldy + n] = acc[m] * (a.route_weights != nullptr ? a.route_weights[p] : 1.0f);
  }
}

/// One CTA of 1024 threads: per-expert counts with shared atomics, a serial prefix over the
/// experts (<= 4096) by thread 0, sentinel fill, then a scatter through atomic cursors.
__global__ void __launch_bounds__(1024)
    moe_align_kernel(const int32_t* ids, int64_t pairs, int32_t experts, int32_t block,
                     const int32_t* map, int32_t* sorted, int32_t* expert_ids, int64_t capacity,
                     int32_t* post_padded) {
  extern __shared__ int32_t smem[];
  int32_t* count = smem;             // [experts]
  int32_t* cursor = smem + experts;  // [experts]
  __shared__ int32_t blocks;
  const int tid = threadIdx.x;
  auto local = [&](int32_t e) { return e >= 0 && e < experts && (map == nullptr || map[e] >= 0); };
  for (int e = tid; e < experts; e += 1024) count[e] = 0;
  __syncthreads();
  for (int64_t p = tid; p < pairs; p += 1024)
    if (local(ids[p])) atomicAdd(&count[ids[p]], 1);
  __syncthreads();
  if (tid == 0) {
    int32_t rows = 0, b = 0;
    for (int32_t e = 0; e < experts; ++e) {
      cursor[e] = rows;
      if (count[e] == 0) continue;
      const int32_t padded = (count[e] + block - 1) / block * block;
      const int32_t id = map == nullptr ? e : map[e];
      for (int32_t i = 0; i < padded / block; ++i) expert_ids[b++] = id;
      rows += padded;
    }
    blocks = b;
    *post_padded = rows;
  }
  __syncthreads();
  const auto sentinel = static_cast<int32_t>(pairs);
  for (int64_t i = tid; i < capacity; i += 1024) sorted[i] = sentinel;
  for (int64_t i = blocks + tid; i < capacity / block; i += 1024) expert_ids[i] = -1;
  __syncthreads();
  for (int64_t p = tid; p < pairs; p += 1024)
    if (local(ids[p])) sorted[atomicAdd(&cursor[ids[p]], 1)] = static_cast<int32_t>(p);
}

}  // namespace

status launch_moe_align_block_size(const int32_t* topk_ids, int64_t tokens, int64_t top_k,
                                   int64_t experts, int64_t block, const int32_t* expert_map,
                                   int32_t* sorted_token_ids, int32_t* expert_ids,
                                   int64_t capacity, int32_t* num_tokens_post_padded,
                                   cudaStream_t stream) noexcept {
  if (tokens < 0 || top_k < 0 || experts < 1 || block < 1 || (tokens > 0 && top_k < 1) ||
      block > INT32_MAX || tokens * top_k > INT32_MAX - 1)
    return status::bad_size;
  if (experts > 4096) return status::unsupported;
  if (capacity < moe_align_capacity(tokens, top_k, experts, block) || capacity % block != 0 ||
      capacity > INT32_MAX)
    return status::bad_size;
  if (num_tokens_post_padded == nullptr || (tokens > 0 && topk_ids == nullptr) ||
      (capacity > 0 && (sorted_token_ids == nullptr || expert_ids == nullptr)))
    return status::null_pointer;
  const size_t smem = static_cast<size_t>(experts) * 2 * sizeof(int32_t);
  moe_align_kernel<<<1, 1024, smem, stream>>>(topk_ids, tokens * top_k, static_cast<int32_t>(experts),
                                              static_cast<int32_t>(block), expert_map,
                                              sorted_token_ids, expert_ids, capacity,
                                              num_tokens_post_padded);
  return launched();
}

status launch_moe_w4a16_gemm(const moe_gemm_args& a, cudaStream_t stream) noexcept {
  if (a.block != 16 && a.block != 32 && a.block != 64) return status::unsupported;
  if (a.experts < 1 || a.n < 1 || a.k < 32 || a.k % 32 != 0 || a.pairs < 0 || a.a_div < 1 ||
      a.capacity < 0 || a.capacity % a.block != 0 || a.lda < a.k || a.ldy < a.n ||
      a.pairs > INT32_MAX - 1 || a.capacity / a.block > 65535 || ceil_div(a.n, moe_threads) > 65535)
    return status::bad_size;
  if (a.capacity == 0 || a.pairs == 0) return status::ok;
  if (a.a == nullptr || a.tiles == nullptr || a.scales == nullptr || a.sorted_token_ids == nullptr ||
      a.expert_ids == nullptr || a.num_tokens_post_padded == nullptr || a.y == nullptr)
    return status::null_pointer;
  if (reinterpret_cast<uintptr_t>(a.tiles) % 16 != 0) return status::bad_size;  // 128-bit loads
  const dim3 grid(static_cast<unsigned>(ceil_div(a.n, moe_threads)),
                  static_cast<unsigned>(a.capacity / a.block));
  switch (a.block) {
    case 16: moe_w4a16_gemm_kernel<16><<<grid, moe_threads, 0, stream>>>(a); break;
    case 32: moe_w4a16_gemm_kernel<32><<<grid, moe_threads, 0, stream>>>(a); break;
    default: moe_w4a16_gemm_kernel<64><<<grid, moe_threads, 0, stream>>>(a); break;
  }
  return launched();
}

}  // namespace troupe::kernels::cuda
