#pragma once
/// CPU quantisation kernels: ggml block layouts, fp16/bf16 conversions, row dequantisation,
/// activation quantisation and fused dot products, with a scalar reference and AVX2/AVX-512
/// variants picked at run time. Pointers and sizes in, a status out: nothing here knows troupe.

#include <cstddef>
#include <cstdint>

namespace troupe::kernels::cpu {

/// Tensor element types, numbered exactly as ggml's `enum ggml_type` (the ids stored in GGUF).
enum class quant_type : uint32_t {
  f32 = 0,
  f16 = 1,
  q4_0 = 2,
  q4_1 = 3,
  q5_0 = 6,
  q5_1 = 7,
  q8_0 = 8,
  q8_1 = 9,
  q2_k = 10,
  q3_k = 11,
  q4_k = 12,
  q5_k = 13,
  q6_k = 14,
  q8_k = 15,
  iq4_nl = 20,
  iq4_xs = 23,
  bf16 = 30,
};

/// What a kernel reports. Kernels never throw and never write outside the ranges they are given.
enum class status : uint8_t {
  ok = 0,
  unsupported_type = 1,  ///< No kernel for this type (or this weight/activation pair).
  bad_size = 2,          ///< n is negative or not a multiple of the type's block size.
  null_pointer = 3,      ///< A required pointer is null.
  unsupported_isa = 4,   ///< The requested instruction set is not compiled in or not on this CPU.
};

const char* to_string(status s) noexcept;

/// "q4_K", "f32", ...: ggml's lowercase type names; "unknown" for ids this file does not list.
const char* type_name(quant_type t) noexcept;

inline constexpr int qk4_0 = 32;
inline constexpr int qk4_1 = 32;
inline constexpr int qk5_0 = 32;
inline constexpr int qk5_1 = 32;
inline constexpr int qk8_0 = 32;
inline constexpr int qk8_1 = 32;
inline constexpr int qk_k = 256;
inline constexpr int qk4_nl = 32;
inline constexpr int k_scale_size = 12;

/// Half-precision bit patterns are kept as raw uint16_t so that block structs are trivially copyable.
struct block_q4_0 {
  uint16_t d;            // fp16 scale
  uint8_t qs[qk4_0 / 2]; // element j in the low nibble of qs[j], element j+16 in its high nibble
};
static_assert(sizeof(block_q4_0) == 18, "block_q4_0 must match ggml's 18-byte layout");

struct block_q4_1 {
  uint16_t d;  // fp16 scale
  uint16_t m;  // fp16 minimum
  uint8_t qs[qk4_1 / 2];
};
static_assert(sizeof(block_q4_1) == 20, "block_q4_1 must match ggml's 20-byte layout");

struct block_q5_0 {
  uint16_t d;             // fp16 scale
  uint8_t qh[4];          // bit j: the fifth (high) bit of element j
  uint8_t qs[qk5_0 / 2];  // low 4 bits: element j in the low nibble of qs[j], j+16 in the high one
};
static_assert(sizeof(block_q5_0) == 22, "block_q5_0 must match ggml's 22-byte layout");

struct block_q5_1 {
  uint16_t d;  // fp16 scale
  uint16_t m;  // fp16 minimum
  uint8_t qh[4];
  uint8_t qs[qk5_1 / 2];
};
static_assert(sizeof(block_q5_1) == 24, "block_q5_1 must match ggml's 24-byte layout");

struct block_q8_0 {
  uint16_t d;  // fp16 scale
  int8_t qs[qk8_0];
};
static_assert(sizeof(block_q8_0) == 34, "block_q8_0 must match ggml's 34-byte layout");

/// Activation block for Q4_1 weights. Unlike ggml's Q8_1 (fp16 d and s), d and s are fp32 here:
/// it never reaches a file, and fp32 keeps the min term m·s exact to fp32 rounding.
struct block_q8_1 {
  float d;  // scale
  float s;  // d * sum(qs)
  int8_t qs[qk8_1];
};
static_assert(sizeof(block_q8_1) == 40, "block_q8_1 is 2 floats + 32 int8");

/// 16 sub-blocks of 16: element = d·scale·q − dmin·min, q in 0..3.
struct block_q2_k {
  uint8_t scales[qk_k / 16];  // per 16 elements: 4-bit scale (low nibble), 4-bit min (high)
  uint8_t qs[qk_k / 4];       // 2-bit quants: element 128h + 32c + l in bits 2c of qs[32h + l]
  uint16_t d;                 // fp16 super-block scale for the scales
  uint16_t dmin;              // fp16 super-block scale for the mins
};
static_assert(sizeof(block_q2_k) == 84, "block_q2_K must match ggml's 84-byte layout");

/// 16 sub-blocks of 16: element = d·(scale − 32)·(q − 4·(high bit clear)), q in 0..3.
struct block_q3_k {
  uint8_t hmask[qk_k / 8];  // high bits: element 32c + l (c = 0..7) in bit c of hmask[l]
  uint8_t qs[qk_k / 4];     // low 2 bits, placed as Q2_K's
  uint8_t scales[12];       // 16 6-bit scales: low 4 bits of j in byte j % 8 (j >= 8: high
                            // nibble), high 2 bits in bits 2·(j / 4) of byte 8 + j % 4
  uint16_t d;               // fp16 super-block scale
};
static_assert(sizeof(block_q3_k) == 110, "block_q3_K must match ggml's 110-byte layout");

/// The 16 values of ggml's non-linear 4-bit quants (kvalues_iq4nl), indexed by the nibble.
inline constexpr int8_t iq4_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                          1,    13,   25,  38,  53,  69,  89,  113};

struct block_iq4_nl {
  uint16_t d;              // fp16 scale
  uint8_t qs[qk4_nl / 2];  // element j: iq4_values[low nibble of qs[j]], j+16: the high nibble
};
static_assert(sizeof(block_iq4_nl) == 18, "block_iq4_nl must match ggml's 18-byte layout");

/// 8 sub-blocks of 32, each an IQ4_NL block with a 6-bit scale (stored +32) under one fp16 d.
struct block_iq4_xs {
  uint16_t d;                   // fp16 super-block scale
  uint16_t scales_h;            // high 2 bits of sub-block j's scale in bits 2j, 2j+1
  uint8_t scales_l[qk_k / 64];  // low 4 bits: sub-block 2k in the low nibble of [k], 2k+1 high
  uint8_t qs[qk_k / 2];         // 16 bytes per sub-block, nibbles as IQ4_NL's
};
static_assert(sizeof(block_iq4_xs) == 136, "block_iq4_xs must match ggml's 136-byte layout");

struct block_q4_k {
  uint16_t d;                      // fp16 super-block scale for the 6-bit scales
  uint16_t dmin;                   // fp16 super-block scale for the 6-bit mins
  uint8_t scales[k_scale_size];    // 8 scales and 8 mins, 6 bits each
  uint8_t qs[qk_k / 2];            // 4-bit quants, 64 elements per 32 bytes (low nibbles first)
};
static_assert(sizeof(block_q4_k) == 144, "block_q4_K must match ggml's 144-byte layout");

struct block_q5_k {
  uint16_t d;                    // fp16 super-block scale for the 6-bit scales
  uint16_t dmin;                 // fp16 super-block scale for the 6-bit mins
  uint8_t scales[k_scale_size];  // 8 scales and 8 mins, 6 bits each (as Q4_K)
  uint8_t qh[qk_k / 8];          // fifth bits: bit 2j / 2j+1 of qh[l] for element l of sub-block 2j / 2j+1
  uint8_t qs[qk_k / 2];          // low 4 bits, 64 elements per 32 bytes (low nibbles first)
};
static_assert(sizeof(block_q5_k) == 176, "block_q5_K must match ggml's 176-byte layout");

struct block_q6_k {
  uint8_t ql[qk_k / 2];      // low 4 bits
  uint8_t qh[qk_k / 4];      // high 2 bits
  int8_t scales[qk_k / 16];  // 8-bit scale per 16 elements
  uint16_t d;                // fp16 super-block scale (at the end)
};
static_assert(sizeof(block_q6_k) == 210, "block_q6_K must match ggml's 210-byte layout");

struct block_q8_k {
  float d;
  int8_t qs[qk_k];
  int16_t bsums[qk_k / 16];  // sum of each 16 consecutive qs
};
static_assert(sizeof(block_q8_k) == 292, "block_q8_K must match ggml's 292-byte layout");

/// Elements per block (1 for f32/f16/bf16); 0 for types this file does not know.
int64_t block_elements(quant_type t) noexcept;
/// Bytes per block; 0 for types this file does not know.
int64_t block_bytes(quant_type t) noexcept;
/// Bytes of a row of n elements; -1 when n is not a whole number of blocks or the type is unknown.
int64_t row_bytes(quant_type t, int64_t n) noexcept;

/// The activation format a weight type is multiplied with (ggml's vec_dot_type): f32 for
/// f32/f16/bf16 weights, q8_0 for q8_0/q4_0/q5_0/iq4_nl, q8_1 for q4_1/q5_1, q8_k for
/// q2_K/q3_K/q4_K/q5_K/q6_K/iq4_xs. Returns false for other types.
bool activation_type(quant_type weight, quant_type* out) noexcept;

// ---- scalar conversions (exact, round-to-nearest-even; NaN stays NaN) -----------------------
float fp16_to_fp32(uint16_t h) noexcept;
uint16_t fp32_to_fp16(float f) noexcept;
/// `static`: each translation unit keeps its own copy, so the kernels compiled with AVX flags
/// can call it too without the linker ever picking their copy for baseline callers.
static inline float bf16_to_fp32(uint16_t h) noexcept {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  __builtin_memcpy(&f, &bits, sizeof f);
  return f;
}
uint16_t fp32_to_bf16(float f) noexcept;

/// Instruction-set levels. `best` means the widest one this CPU supports and this build has.
/// `avx512` is F + BW + VL; within it, the Q4_1/Q8_0 multi-row kernels (mat_mat, mat_vec) use
/// VNNI where the CPU has it (same results bit for bit, like every level's).
enum class isa : uint8_t { scalar = 0, avx2 = 1, avx512 = 2, best = 255 };
const char* to_string(isa level) noexcept;
/// True when kernels for `level` are compiled in and the CPU runs them.
bool isa_available(isa level) noexcept;
/// The level `isa::best` resolves to on this machine (TROUPE_KERNELS_ISA=scalar|avx2|avx512 caps it).
isa best_isa() noexcept;

// ---- row kernels ---------------------------------------------------------------------------
// n is the number of elements; it must be a multiple of the block size of every type involved.

/// y[0..n) = dequantised x, as ggml's dequantize_row_* computes it. x is a row of `t` (any
/// weight type that activation_type accepts).
status dequantize_row(quant_type t, const void* x, float* y, int64_t n, isa level = isa::best) noexcept;

/// Quantises an fp32 activation row x[0..n) to `t` (q8_0, q8_1, q8_K; f32 copies). Values are
/// rounded to nearest-even into [-127, 127].
status quantize_row(quant_type t, const float* x, void* y, int64_t n, isa level = isa::best) noexcept;

/// *out = sum_i w[i]·a[i] over n elements, where w is a row of `weight` and a is a row of
/// activation_type(weight) (fp32 for float weights). Int8 quants must lie in [-127, 127]
/// (what quantize_row produces): -128 would saturate the 16-bit pair sums of the SIMD kernels.
status vec_dot(quant_type weight, int64_t n, const void* w, const void* a, float* out,
               isa level = isa::best) noexcept;

/// y[r] = vec_dot(row r of w, a) for r in [0, rows). Rows are `row_stride` bytes apart.
status mat_vec(quant_type weight, int64_t rows, int64_t n, const void* w, size_t row_stride,
               const void* a, float* y, isa level = isa::best) noexcept;

/// y[t·y_stride + r] = vec_dot(row r of w, activation row t) for r in [0, rows), t in [0, tokens):
/// every result is bit-identical to the vec_dot call, but at the SIMD levels Q8_0, Q4_0, Q5_0,
/// Q4_1, Q5_1 and IQ4_NL weights are walked several rows and tokens at a time (Q4_0, and Q5_0
/// without VNNI, widened to Q8_0 blocks from 4 tokens on), and Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and IQ4_XS one
/// row by 4 tokens, so that the activation blocks, the weight decoding, the dependency chains and the
/// loop overhead are shared. Weight rows are `row_stride` bytes apart, activation rows (of
/// activation_type(weight)) `act_stride` bytes apart. y: [tokens, y_stride], y_stride >= rows.
status mat_mat(quant_type weight, int64_t rows, int64_t n, const void* w, size_t row_stride,
               const void* a, size_t act_stride, int64_t tokens, float* y, int64_t y_stride,
               isa level = isa::best) noexcept;

/// Whether llama.cpp's CPU backend (x86, AVX2 / AVX-512 VNNI) sums `weight` by `tokens`
/// activation rows otherwise than its vec_dot: its tiled K-quant matmul (ggml-cpu/tiled) takes
/// q2_K, q3_K, q4_K, q5_K, q6_K and iq4_xs weights by 8 tokens or more, and llamafile's tinyBLAS
/// iq4_nl weights by 2 or more (one accumulator over all blocks, not vec_dot's two). For the
/// other quant types its batched paths sum as vec_dot does.
bool ggml_batched_order(quant_type weight, int64_t tokens) noexcept;

/// mat_mat summed as llama.cpp's batched paths sum where ggml_batched_order says they differ:
/// - the tiled K-quant matmul (its AVX-512 VNNI microkernel): per 256-element block, the exact
///   integer sums s1 = Σ scale·Σ quant·activation and (types with mins) s2 = Σ min·Σ activation,
///   then f = (float)s1·d_w, f -= d_min·(float)s2 fused, and out += f·d_a fused, block after
///   block from 0;
/// - tinyBLAS for iq4_nl: Q8_0's order (acc += d_w·d_a · the block's 8 int32 lanes, one
///   accumulator, then the horizontal sum), over the rows' values (widened to Q8_0 blocks
///   first where the level has no IQ4_NL kernel in that order).
/// Same arguments and checks as mat_mat, which it is otherwise (and at the scalar level).
status mat_mat_ggml_batched(quant_type weight, int64_t rows, int64_t n, const void* w,
                            size_t row_stride, const void* a, size_t act_stride, int64_t tokens,
                            float* y, int64_t y_stride, isa level = isa::best) noexcept;

/// Q8_K activations with the tokens in SIMD lanes, for mat_mat_ggml_batched_lanes: the K-quant
/// batched products of a forward pass take the same activations for every weight matrix of a
/// width, so mat_mul packs them once per call. Available (true) where the level has such
/// kernels (AVX-512 VNNI) and ggml_batched_order(weight, tokens) holds for a K-quant or IQ4_XS
/// weight.
bool q8_k_lanes_available(quant_type weight, int64_t tokens, isa level = isa::best) noexcept;
/// Bytes pack_q8_k_lanes writes for `tokens` rows of n elements (n % 256 == 0); -1 otherwise.
int64_t q8_k_lanes_bytes(int64_t n, int64_t tokens) noexcept;
/// Packs `tokens` Q8_K rows (act_stride bytes apart) into out (q8_k_lanes_bytes(n, tokens)).
status pack_q8_k_lanes(const void* a, size_t act_stride, int64_t n, int64_t tokens,
                       void* out) noexcept;
/// mat_mat_ggml_batched from packed activations (q8_k_lanes_available must hold): the same
/// results bit for bit.
status mat_mat_ggml_batched_lanes(quant_type weight, int64_t rows, int64_t n, const void* w,
                                  size_t row_stride, const void* lanes, int64_t tokens, float* y,
                                  int64_t y_stride, isa level = isa::best) noexcept;

}  // namespace troupe::kernels::cpu
