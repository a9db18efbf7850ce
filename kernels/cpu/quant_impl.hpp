#pragma once
/// Private to the CPU quant kernels: the per-ISA function tables that quant.cpp dispatches to.

#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "cpu/quant.hpp"

namespace troupe::kernels::cpu::detail {

/// Dot product of n elements (a whole number of blocks, checked by the caller).
using dot_fn = float (*)(int64_t n, const void* w, const void* a);
/// Quantises n fp32 values (a whole number of blocks) into y.
using quantize_fn = void (*)(const float* x, void* y, int64_t n);
/// y[t·y_stride + r] = dot_fn(n, row r, activation row t) for r < rows, t < tokens, bit for bit:
/// the per-row dot product in the same order of operations, several rows and tokens per pass.
using mat_mat_fn = void (*)(int64_t rows, int64_t n, const void* w, size_t row_stride,
                            const void* a, size_t act_stride, int64_t tokens, float* y,
                            int64_t y_stride);

/// Q8_K activations with the tokens in the lanes, for the K-quant lanes kernels
/// (mat_mat_ggml_batched's order on AVX-512 VNNI): tokens in groups of lanes_tokens (the last
/// padded with zero activations), and per group and 256-element block, lanes_block_bytes at
/// offset (group·nb + block)·lanes_block_bytes:
///   [64][16 tokens][4 bytes]  quants 4k..4k+3 of each token;
///   [8][16 tokens][2 int16]   bsums 2p and 2p+1 of each token;
///   [16 tokens] float         d.
inline constexpr int64_t lanes_tokens = 16;
inline constexpr size_t lanes_quants_bytes = 64 * 16 * 4;
inline constexpr size_t lanes_bsums_bytes = 8 * 16 * 4;
inline constexpr size_t lanes_block_bytes = lanes_quants_bytes + lanes_bsums_bytes + 16 * 4;

/// y[t·y_stride + r] for r < rows, t < tokens in ggml's tiled K-quant order (as tiled_k), from
/// activations packed as above.
using lanes_fn = void (*)(int64_t rows, int64_t n, const void* w, size_t row_stride,
                          const void* lanes, int64_t tokens, float* y, int64_t y_stride);

/// One entry per weight type; activation quantisers per activation type.
struct kernel_table {
  dot_fn dot_f32;
  dot_fn dot_f16;
  dot_fn dot_bf16;
  dot_fn dot_q8_0;
  dot_fn dot_q4_0;
  dot_fn dot_q4_1;
  dot_fn dot_q4_k;
  dot_fn dot_q6_k;
  quantize_fn quantize_q8_0;
  quantize_fn quantize_q8_1;
  quantize_fn quantize_q8_k;
  /// Multi-row kernels; nullptr where the level has none (the dispatch loops over the dot).
  mat_mat_fn mat_mat_q8_0;
  mat_mat_fn mat_mat_q4_1;
  dot_fn dot_q5_0;  // (after the multi-row kernels: the tables list their entries in order)
  dot_fn dot_q5_1;
  mat_mat_fn mat_mat_q5_0;
  mat_mat_fn mat_mat_q5_1;
  dot_fn dot_q5_k;
  dot_fn dot_q2_k;
  dot_fn dot_q3_k;
  dot_fn dot_iq4_nl;
  dot_fn dot_iq4_xs;
  mat_mat_fn mat_mat_q4_0;
  /// The K-quants and IQ4_XS: one row × 4 tokens at a time, the row decoded once; IQ4_NL:
  /// 2 rows × 2 tokens.
  mat_mat_fn mat_mat_q4_k;
  mat_mat_fn mat_mat_q6_k;
  mat_mat_fn mat_mat_q5_k;
  mat_mat_fn mat_mat_iq4_nl;
  mat_mat_fn mat_mat_iq4_xs;
  mat_mat_fn mat_mat_q2_k;
  mat_mat_fn mat_mat_q3_k;
  /// ggml's tiled K-quant order (mat_mat_ggml_batched) for q2_K, q3_K, q4_K, q5_K, q6_K, iq4_xs;
  /// nullptr at the scalar level.
  mat_mat_fn tiled_k[6];
  /// The same order from packed activations (lanes_fn), same type order; nullptr where the
  /// level (or the CPU: AVX-512 VNNI) has none.
  lanes_fn tiled_k_lanes[6];
  /// Whether mat_mat runs Q5_0 / Q4_0 weights by 4 or more tokens as rows widened to Q8_0
  /// blocks through mat_mat_q8_0, rather than through mat_mat_q5_0 / mat_mat_q4_0: where that
  /// measured faster (bench_quant mat_mat_64_tokens, AMD Zen 4: both at the AVX2 level; with
  /// VNNI Q4_0 only, 94 against 81 Gop/s, while Q5_0's own tiles made 85 against 67).
  bool widen_q5_0 = false;
  bool widen_q4_0 = false;
  /// IQ4_NL rows summed in Q8_0's order (tinyBLAS's, mat_mat_ggml_batched) without widening;
  /// nullptr: widened to Q8_0 blocks through mat_mat_q8_0.
  mat_mat_fn tinyblas_iq4_nl = nullptr;
};

/// Decodes the 6-bit scale and min of sub-block j (0..7) of a Q4_K block (ggml get_scale_min_k4).
/// `static`: each translation unit keeps its own copy, so the linker can never pick the one
/// compiled with -mavx512f for the scalar path (no shared inline definitions across ISAs).
static inline void q4_k_scale_min(int j, const uint8_t* q, uint8_t* sc, uint8_t* m) noexcept {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

/// The 16 scales of a Q3_K block (6 bits each, packed as block_q3_k describes), minus 32.
static inline void q3_k_scales(const uint8_t* packed, int8_t* out) noexcept {
  for (int j = 0; j < 16; ++j) {
    const int low = j < 8 ? packed[j] & 0xF : packed[j - 8] >> 4;
    const int high = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
    out[j] = static_cast<int8_t>((low | high << 4) - 32);
  }
}

/// The scale of sub-block j (0..7) of an IQ4_XS block, minus 32 (ggml stores it +32).
static inline int iq4_xs_scale(const block_iq4_xs& b, int j) noexcept {
  return (((b.scales_l[j / 2] >> (4 * (j % 2))) & 0xF) | (((b.scales_h >> (2 * j)) & 3) << 4)) - 32;
}

/// Prefetching for the tiles. A tile walks its R rows side by side, block by block, and the
/// hardware prefetchers follow that interleaved pattern badly once the weights outgrow the
/// last-level cache. So each tile asks, a tile ahead, for the R rows after its own (R·ws bytes,
/// the next tile's, contiguous when ws is the row size) as one ascending run of cache lines,
/// `chunk` bytes per block (prefetch_chunk) so that the run ends with the tile.
///
/// Measured on AMD EPYC Zen 4 (1 thread, a 28 MB Q8_0 matrix of 576-wide rows, one token): the
/// ascending run streams at 17-19 GB/s; one hint per row and block (block i of each next row, the
/// earlier scheme, which had doubled Zen 3's speed over none) at 7-9; no hint at 4. Prefetches
/// never fault, so the run may pass the matrix's end (integer arithmetic: so may the address).
template <int R>
static inline size_t prefetch_chunk(size_t ws, int64_t nb) noexcept {
  const size_t blocks = nb > 0 ? static_cast<size_t>(nb) : 1;
  return ((R * ws + blocks - 1) / blocks + 63) & ~size_t{63};
}

/// The i-th chunk of the rows after the tile whose first row starts at `tile` (see above).
template <int R>
static inline void prefetch_next_tile(const unsigned char* tile, size_t ws, int64_t i,
                                      size_t chunk) noexcept {
  const uintptr_t at = reinterpret_cast<uintptr_t>(tile) + static_cast<size_t>(R) * ws +
                       static_cast<size_t>(i) * chunk;
  for (size_t o = 0; o < chunk; o += 64)
    __builtin_prefetch(reinterpret_cast<const void*>(at + o), 0, 3);
}

/// One multi-row kernel: R rows × T tokens over nb blocks, y[t·ys + r] (the tile_* functions of
/// the ISA files, wrapped as Tile<R, T>::run).
using tile_fn = void (*)(int64_t nb, const unsigned char* w, size_t ws, const unsigned char* a,
                         size_t as, float* y, int64_t ys);

/// A mat_mat_fn made of tiles: tokens in groups of T (then singly) and, for each group, rows in
/// groups of G (then the rest in one tile), so a tile's weights stay in L1 while the tokens pass
/// over it. Tile<R, T>::run must exist for R in 1..G and for T and 1. Each ISA file instantiates
/// it with its own (internal-linkage) tiles.
template <template <int, int> class Tile, int G, int T>
void mat_mat_tiles(int64_t rows, int64_t n, const void* w, size_t ws, const void* a, size_t as,
                   int64_t tokens, float* y, int64_t ys) {
  static constexpr auto table = []<int... R>(std::integer_sequence<int, R...>, auto tokens_c) {
    struct pair {
      tile_fn group[sizeof...(R)];
      tile_fn single[sizeof...(R)];
    };
    return pair{{Tile<R + 1, decltype(tokens_c)::value>::run...}, {Tile<R + 1, 1>::run...}};
  }(std::make_integer_sequence<int, G>(), std::integral_constant<int, T>());
  const int64_t nb = n / 32;
  const auto* wp = static_cast<const unsigned char*>(w);
  const auto* ap = static_cast<const unsigned char*>(a);
  auto pass = [&](int64_t t, const tile_fn* tiles) {
    const unsigned char* at = ap + static_cast<size_t>(t) * as;
    float* yt = y + t * ys;
    int64_t r = 0;
    for (; r + G <= rows; r += G)
      tiles[G - 1](nb, wp + static_cast<size_t>(r) * ws, ws, at, as, yt + r, ys);
    if (r < rows) tiles[rows - r - 1](nb, wp + static_cast<size_t>(r) * ws, ws, at, as, yt + r, ys);
  };
  int64_t t = 0;
  for (; t + T <= tokens; t += T) pass(t, table.group);
  for (; t < tokens; ++t) pass(t, table.single);
}

/// Q8_K activations exactly as ggml quantises them for the K-quant dot products (its x86 build
/// uses this reference code too): the element of largest magnitude (the first, on ties) maps to
/// −127, so d = 1 / (−127 / max) may be negative; others round to nearest even, at most 127.
/// `static`: one copy per ISA file, compiled with that file's flags (no shared inline symbol).
static inline void quantize_q8_k_ggml(const float* x, void* vy, int64_t n) noexcept {
  auto* y = static_cast<block_q8_k*>(vy);
  for (int64_t i = 0; i < n / qk_k; ++i, x += qk_k) {
    float max = 0.0f, amax = 0.0f;
    for (int j = 0; j < qk_k; ++j) {
      const float ax = x[j] < 0 ? -x[j] : x[j];
      if (ax > amax) {
        amax = ax;
        max = x[j];
      }
    }
    if (amax == 0.0f) {
      y[i] = block_q8_k{};
      continue;
    }
    const float iscale = -127.0f / max;
    for (int j = 0; j < qk_k; ++j) {
      // Round to nearest even by the fp32 adder (ggml's nearest_int): |iscale·x| <= 127. The
      // product is rounded to fp32 first, as ggml's (compiled without FMA contraction there) is:
      // the empty asm keeps GCC from fusing it into the add where -mfma allows it.
      float p = iscale * x[j];
      __asm__("" : "+x"(p));
      const float v = p + 12582912.0f;
      int32_t bits;
      __builtin_memcpy(&bits, &v, sizeof bits);
      const int q = (bits & 0x007FFFFF) - 0x00400000;
      y[i].qs[j] = static_cast<int8_t>(q < 127 ? q : 127);
    }
    for (int g = 0; g < qk_k / 16; ++g) {
      int sum = 0;
      for (int l = 0; l < 16; ++l) sum += y[i].qs[16 * g + l];
      y[i].bsums[g] = static_cast<int16_t>(sum);
    }
    y[i].d = 1.0f / iscale;
  }
}

const kernel_table& scalar_kernels() noexcept;
/// Defined in quant_avx2.cpp / quant_avx512.cpp; only call after the CPU check passed.
const kernel_table& avx2_kernels() noexcept;
const kernel_table& avx512_kernels() noexcept;
/// Defined in quant_avx512_vnni.cpp; only call after the CPU reported avx512f, avx512bw,
/// avx512vl and avx512vnni: puts the VNNI multi-row kernels into t (Q4_1, Q5_1, Q8_0, Q5_0, Q4_0
/// and IQ4_NL tiles, IQ4_NL in tinyBLAS's order, Q4_K and Q6_K rows, the K-quant lanes kernels)
/// and sets its widening flags for them.
void use_avx512_vnni_kernels(kernel_table& t) noexcept;
/// Q4_K × Q8_K in vec_dot's order with VPDPWSSD (quant_avx2.cpp, a VNNI-targeted function):
/// mat_mat_q4_k for use_avx512_vnni_kernels.
void mat_mat_q4_k_vnni(int64_t rows, int64_t n, const void* w, size_t ws, const void* a,
                       size_t as, int64_t tokens, float* y, int64_t ys);
/// Q6_K × Q8_K the same way: mat_mat_q6_k for use_avx512_vnni_kernels.
void mat_mat_q6_k_vnni(int64_t rows, int64_t n, const void* w, size_t ws, const void* a,
                       size_t as, int64_t tokens, float* y, int64_t ys);
/// Defined in quant_avx512_vnni_lanes.cpp, same CPU condition: the six lanes_fn kernels in
/// kernel_table::tiled_k_lanes's order.
const lanes_fn* avx512_vnni_lanes_kernels() noexcept;

}  // namespace troupe::kernels::cpu::detail
