// Low-bit weight kernels (compressed-tensors INT4, FP8 E4M3 block-scaled) against double-precision
// references written from the documented layouts, at every instruction-set level this machine
// runs, on random data with odd sizes, strides and row ranges; guard values around y catch
// writes outside the rows asked for. The e4m3 decoding and the INT4 packing are also checked
// against tables made by ml_dtypes and the compressed-tensors package
// (tools/reference/make_low_bit_fixtures.py).

#define BOOST_TEST_MODULE low_bit
#include <algorithm>
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <ostream>
#include <random>
#include <vector>

#include "cpu/low_bit.hpp"
#include "fixtures/low_bit/reference.inc"
#include "kernels/print_kernel_types.hpp"

namespace k = troupe::kernels::cpu;
using k::isa;
using k::scale_type;
using k::status;

namespace {

constexpr float guard = -12345.5f;

std::vector<isa> levels() {
  std::vector<isa> out{isa::scalar};
  for (isa l : {isa::avx2, isa::avx512})
    if (k::isa_available(l)) out.push_back(l);
  return out;
}

float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

/// e4m3fn by its definition, in double: 1 sign, 4 exponent bits (bias 7), 3 mantissa bits.
double ref_e4m3(uint8_t v) {
  const int e = (v >> 3) & 0xF, m = v & 7;
  if (e == 15 && m == 7) return NAN;
  const double mag = e == 0 ? std::ldexp(m, -9) : std::ldexp(8 + m, e - 10);
  return (v & 0x80) ? -mag : mag;
}

double ref_half(uint16_t h) {  // IEEE binary16
  const int e = (h >> 10) & 0x1F, m = h & 0x3FF;
  const double mag = e == 0 ? std::ldexp(m, -24) : std::ldexp(1024 + m, e - 25);
  return (h & 0x8000) ? -mag : mag;
}

double ref_bf16(uint16_t h) { return float_of(uint32_t{h} << 16); }

/// An INT4 matrix with its own storage; scales are stored as `st`.
struct int4_case {
  int64_t rows, cols, group;
  scale_type st;
  std::vector<uint32_t> packed;
  std::vector<uint16_t> s16;
  std::vector<float> s32;
  k::int4_group_matrix m;

  int4_case(int64_t rows_, int64_t cols_, int64_t group_, scale_type st_, std::mt19937& gen,
            bool exact = false)
      : rows(rows_), cols(cols_), group(group_), st(st_) {
    m.rows = rows;
    m.cols = cols;
    m.group = group;
    m.packed_stride = (cols + 7) / 8 + 3;  // wider than needed
    m.scale_stride = (cols + group - 1) / group + 2;
    // Every nibble random, those past `cols` in the last word included: they must be ignored.
    packed.resize(static_cast<size_t>(rows * m.packed_stride));
    for (auto& p : packed) p = static_cast<uint32_t>(gen());
    std::uniform_real_distribution<float> mag(0.002f, 0.2f);
    std::uniform_int_distribution<int> pow2(-9, -1);
    const size_t ns = static_cast<size_t>(rows * m.scale_stride);
    std::vector<float> s(ns);
    for (auto& v : s) v = exact ? std::ldexp(1.0f, pow2(gen)) : mag(gen);
    if (st == scale_type::f32) {
      s32 = s;
      m.scales = s32.data();
    } else {
      s16.resize(ns);
      for (size_t i = 0; i < ns; ++i)
        s16[i] = st == scale_type::bf16 ? k::fp32_to_bf16(s[i]) : k::fp32_to_fp16(s[i]);
      m.scales = s16.data();
    }
    m.packed = packed.data();
    m.scales_type = st;
  }

  double scale(int64_t r, int64_t g) const {
    const size_t i = static_cast<size_t>(r * m.scale_stride + g);
    switch (st) {
      case scale_type::bf16:
        return ref_bf16(s16[i]);
      case scale_type::f16:
        return ref_half(s16[i]);
      case scale_type::f32:
        return s32[i];
    }
    return 0;
  }
  double at(int64_t r, int64_t c) const {
    const uint32_t word = packed[static_cast<size_t>(r * m.packed_stride + c / 8)];
    return (static_cast<int>((word >> (4 * (c % 8))) & 0xF) - 8) * scale(r, c / group);
  }
};

struct fp8_case {
  std::vector<uint8_t> data;
  std::vector<float> scales;
  k::fp8_block_matrix m;

  fp8_case(int64_t rows, int64_t cols, int64_t br, int64_t bc, std::mt19937& gen) {
    m.rows = rows;
    m.cols = cols;
    m.block_rows = br;
    m.block_cols = bc;
    m.stride = cols + 5;
    m.scale_stride = (cols + bc - 1) / bc + 1;
    data.resize(static_cast<size_t>(rows * m.stride));
    for (auto& b : data) {
      b = static_cast<uint8_t>(gen());
      if ((b & 0x7F) == 0x7F) b ^= 1;  // no NaN here (see fp8_nan_propagates)
    }
    std::uniform_real_distribution<float> mag(1e-4f, 1e-2f);
    scales.resize(static_cast<size_t>((rows + br - 1) / br * m.scale_stride));
    for (auto& v : scales) v = mag(gen);
    m.data = data.data();
    m.scale_inv = scales.data();
  }

  double at(int64_t r, int64_t c) const {
    return ref_e4m3(data[static_cast<size_t>(r * m.stride + c)]) *
           scales[static_cast<size_t>(r / m.block_rows * m.scale_stride + c / m.block_cols)];
  }
};

/// Activations [tokens, ldx] with ldx > cols; integers in [-4, 4] when exact.
std::vector<float> make_x(int64_t tokens, int64_t cols, int64_t ldx, std::mt19937& gen,
                          bool exact = false) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_int_distribution<int> small(-4, 4);
  std::vector<float> x(static_cast<size_t>(tokens * ldx), 1e30f);  // padding must not be read
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t c = 0; c < cols; ++c)
      x[static_cast<size_t>(t * ldx + c)] = exact ? static_cast<float>(small(gen)) : nd(gen);
  return x;
}

/// Runs `gemm` for rows [rb, re) and checks y against the double reference `at`: exactly when
/// `exact`, else |y - ref| <= tol·Σ|w·x|; every other element of y keeps the guard value.
template <class Gemm, class At>
void check_gemm(Gemm gemm, At at, int64_t rows, int64_t cols, int64_t rb, int64_t re,
                int64_t tokens, const std::vector<float>& x, int64_t ldx, double tol, bool exact,
                isa level) {
  const int64_t ldy = rows + 5;
  std::vector<float> y(static_cast<size_t>(tokens * ldy + 16), guard);
  BOOST_TEST_REQUIRE(gemm(rb, re, x.data(), ldx, tokens, y.data(), ldy, level) == status::ok);
  int bad = 0;
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t r = rb; r < re; ++r) {
      double ref = 0, mag = 0;
      for (int64_t c = 0; c < cols; ++c) {
        const double p = at(r, c) * x[static_cast<size_t>(t * ldx + c)];
        ref += p;
        mag += std::fabs(p);
      }
      const double got = y[static_cast<size_t>(t * ldy + r)];
      const bool ok = exact ? got == ref : std::fabs(got - ref) <= tol * mag + 1e-30;
      if (!ok && bad++ < 5)
        BOOST_ERROR("isa " << k::to_string(level) << " rows " << rows << " cols " << cols
                           << " tokens " << tokens << " y[" << t << "," << r << "] = " << got
                           << ", reference " << ref << " (Σ|w·x| " << mag << ")");
    }
  }
  for (size_t i = 0; i < y.size(); ++i) {
    const auto t = static_cast<int64_t>(i) / ldy, r = static_cast<int64_t>(i) % ldy;
    if (t < tokens && r >= rb && r < re) continue;
    if (y[i] != guard && bad++ < 5) BOOST_ERROR("wrote y element " << i << " outside the rows");
  }
  BOOST_TEST(bad == 0);
}

constexpr int64_t test_rows[] = {1, 7, 33, 100};
constexpr int64_t test_cols[] = {8, 40, 72, 200, 1000, 2056};
constexpr int64_t test_tokens[] = {1, 3, 8, 17};

}  // namespace

// ---- e4m3 -----------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(fp8_e4m3_all_bytes_match_ml_dtypes_and_definition) {
  for (int v = 0; v < 256; ++v) {
    const float got = k::fp8_e4m3_to_fp32(static_cast<uint8_t>(v));
    const float table = float_of(fp8_e4m3fn_bits[v]);
    const double def = ref_e4m3(static_cast<uint8_t>(v));
    if ((v & 0x7F) == 0x7F) {
      BOOST_TEST(std::isnan(got), "byte " << v);
      BOOST_TEST(std::isnan(table), "byte " << v);
      continue;
    }
    uint32_t bits;
    std::memcpy(&bits, &got, 4);
    BOOST_TEST(bits == fp8_e4m3fn_bits[v], "byte " << v << ": " << got << " vs " << table);
    BOOST_TEST(static_cast<double>(got) == def, "byte " << v);
  }
  BOOST_TEST(k::fp8_e4m3_to_fp32(0x7E) == 448.0f);
  BOOST_TEST(k::fp8_e4m3_to_fp32(0x01) == 0x1.0p-9f);
  BOOST_TEST(std::signbit(k::fp8_e4m3_to_fp32(0x80)));
}

// ---- INT4 -----------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(int4_gemm_matches_double_reference) {
  std::mt19937 gen(11);
  for (int64_t rows : test_rows) {
    for (int64_t cols : test_cols) {
      int4_case w(rows, cols, 32, scale_type::bf16, gen);
      for (int64_t tokens : test_tokens) {
        const int64_t ldx = cols + 3;
        const auto x = make_x(tokens, cols, ldx, gen);
        const int64_t rb = rows / 3, re = rows - rows / 4;
        for (isa level : levels()) {
          auto gemm = [&](auto... a) { return k::int4_group_gemm(w.m, a...); };
          auto at = [&](int64_t r, int64_t c) { return w.at(r, c); };
          check_gemm(gemm, at, rows, cols, 0, rows, tokens, x, ldx, 2e-6, false, level);
          check_gemm(gemm, at, rows, cols, rb, re, tokens, x, ldx, 2e-6, false, level);
        }
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(int4_gemm_groups_scale_types_and_many_tokens) {
  std::mt19937 gen(12);
  struct shape {
    int64_t rows, cols, group, tokens;
    scale_type st;
  };
  const shape shapes[] = {{9, 200, 8, 5, scale_type::bf16},   {9, 200, 16, 2, scale_type::f16},
                          {9, 200, 24, 4, scale_type::f32},   {9, 1000, 64, 3, scale_type::bf16},
                          {9, 1000, 128, 9, scale_type::f16}, {5, 300, 40, 1, scale_type::bf16},
                          {4, 2056, 32, 64, scale_type::f32}, {3, 136, 32, 300, scale_type::bf16},
                          {6, 7, 32, 2, scale_type::bf16},    {2, 1, 8, 1, scale_type::f16}};
  for (const auto& s : shapes) {
    int4_case w(s.rows, s.cols, s.group, s.st, gen);
    const int64_t ldx = s.cols + 1;
    const auto x = make_x(s.tokens, s.cols, ldx, gen);
    for (isa level : levels()) {
      auto gemm = [&](auto... a) { return k::int4_group_gemm(w.m, a...); };
      auto at = [&](int64_t r, int64_t c) { return w.at(r, c); };
      check_gemm(gemm, at, s.rows, s.cols, 1, s.rows, s.tokens, x, ldx, 2e-6, false, level);
    }
  }
}

BOOST_AUTO_TEST_CASE(int4_gemm_exact_on_small_integers) {
  // Integer activations, power-of-two scales: every partial sum is exact in fp32.
  std::mt19937 gen(13);
  for (int64_t cols : {72, 1000, 8192}) {
    int4_case w(13, cols, 32, scale_type::bf16, gen, true);
    const auto x = make_x(6, cols, cols, gen, true);
    for (isa level : levels()) {
      auto gemm = [&](auto... a) { return k::int4_group_gemm(w.m, a...); };
      auto at = [&](int64_t r, int64_t c) { return w.at(r, c); };
      check_gemm(gemm, at, 13, cols, 0, 13, 6, x, cols, 0, true, level);
    }
  }
}

BOOST_AUTO_TEST_CASE(int4_gemm_relative_error_at_8192_columns) {
  // The engine's requirement: relative error well below 1e-4 against double at cols 8192.
  std::mt19937 gen(14);
  const int64_t rows = 32, cols = 8192, tokens = 4;
  int4_case w(rows, cols, 32, scale_type::bf16, gen);
  const auto x = make_x(tokens, cols, cols, gen);
  for (isa level : levels()) {
    std::vector<float> y(tokens * rows);
    BOOST_TEST_REQUIRE(k::int4_group_gemm(w.m, 0, rows, x.data(), cols, tokens, y.data(), rows,
                                          level) == status::ok);
    double err = 0, norm = 0, worst = 0;
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t r = 0; r < rows; ++r) {
        double ref = 0;
        for (int64_t c = 0; c < cols; ++c) ref += w.at(r, c) * x[t * cols + c];
        const double d = y[t * rows + r] - ref;
        err += d * d;
        norm += ref * ref;
        worst = std::max(worst, std::fabs(d) / std::fabs(ref));
      }
    BOOST_TEST_MESSAGE(k::to_string(level) << ": relative error " << std::sqrt(err / norm)
                                           << ", worst element " << worst);
    BOOST_TEST(std::sqrt(err / norm) < 1e-6);
    auto gemm = [&](auto... a) { return k::int4_group_gemm(w.m, a...); };
    auto at = [&](int64_t r, int64_t c) { return w.at(r, c); };
    check_gemm(gemm, at, rows, cols, 0, rows, tokens, x, cols, 2e-6, false, level);
  }
}

BOOST_AUTO_TEST_CASE(int4_dequantize_row_follows_layout) {
  std::mt19937 gen(15);
  for (scale_type st : {scale_type::bf16, scale_type::f16, scale_type::f32}) {
    int4_case w(4, 77, 24, st, gen);
    std::vector<float> out(78, guard);
    for (int64_t r = 0; r < 4; ++r) {
      BOOST_TEST_REQUIRE(k::int4_group_dequantize_row(w.m, r, out.data()) == status::ok);
      for (int64_t c = 0; c < 77; ++c) BOOST_TEST(out[c] == float(w.at(r, c)));  // one rounding
      BOOST_TEST(out[77] == guard);
    }
  }
}

BOOST_AUTO_TEST_CASE(int4_quantize_matches_compressed_tensors) {
  std::vector<float> wf(int4_rows * int4_cols);
  for (size_t i = 0; i < wf.size(); ++i) wf[i] = float_of(uint32_t{int4_weight_bf16[i]} << 16);
  const int64_t words = int4_cols / 8, groups = int4_cols / int4_group;
  std::vector<uint32_t> packed(int4_rows * words);
  std::vector<uint16_t> scales(int4_rows * groups);
  BOOST_TEST_REQUIRE(k::int4_group_quantize(wf.data(), int4_rows, int4_cols, int4_group,
                                            packed.data(), scales.data()) == status::ok);
  for (size_t i = 0; i < scales.size(); ++i)
    BOOST_TEST(scales[i] == int4_scale_bf16[i], "scale " << i);
  for (size_t i = 0; i < packed.size(); ++i)
    BOOST_TEST(packed[i] == int4_packed[i],
               "word " << i << std::hex << ": " << packed[i] << " vs " << int4_packed[i]);
}

BOOST_AUTO_TEST_CASE(int4_reads_what_compressed_tensors_reads) {
  // compressed-tensors' own read path (unpack_from_int32 + dequantize, bf16 result) on its packing.
  k::int4_group_matrix m;
  m.rows = int4_rows;
  m.cols = int4_cols;
  m.group = int4_group;
  m.packed = int4_packed;
  m.packed_stride = int4_cols / 8;
  m.scales = int4_scale_bf16;
  m.scale_stride = int4_cols / int4_group;
  std::vector<float> out(int4_cols);
  for (int64_t r = 0; r < int4_rows; ++r) {
    BOOST_TEST_REQUIRE(k::int4_group_dequantize_row(m, r, out.data()) == status::ok);
    for (int64_t c = 0; c < int4_cols; ++c)
      BOOST_TEST(k::fp32_to_bf16(out[c]) == int4_dequantized_bf16[r * int4_cols + c],
                 "r " << r << " c " << c);
  }
  // A partial last word as pack_to_int32 writes it, through every kernel (unit scales, integer
  // activations: exact).
  const std::vector<uint16_t> ones(int4_odd_rows * 2, 0x3F80);  // bf16 1.0, 2 groups per row
  m.rows = int4_odd_rows;
  m.cols = int4_odd_cols;
  m.packed = int4_odd_packed;
  m.packed_stride = (int4_odd_cols + 7) / 8;
  m.scales = ones.data();
  m.scale_stride = 2;
  for (int64_t r = 0; r < int4_odd_rows; ++r) {
    BOOST_TEST_REQUIRE(k::int4_group_dequantize_row(m, r, out.data()) == status::ok);
    for (int64_t c = 0; c < int4_odd_cols; ++c)
      BOOST_TEST(out[c] == float(int4_odd_q[r * int4_odd_cols + c]), "r " << r << " c " << c);
  }
  std::mt19937 gen(17);
  const auto x = make_x(3, int4_odd_cols, int4_odd_cols, gen, true);
  for (isa level : levels()) {
    auto gemm = [&](auto... a) { return k::int4_group_gemm(m, a...); };
    auto at = [&](int64_t r, int64_t c) { return double(int4_odd_q[r * int4_odd_cols + c]); };
    check_gemm(gemm, at, int4_odd_rows, int4_odd_cols, 0, int4_odd_rows, 3, x, int4_odd_cols, 0,
               true, level);
  }
}

BOOST_AUTO_TEST_CASE(int4_quantize_odd_sizes_round_trip) {
  // Partial last word and group: padding nibbles are 0 (as pack_to_int32 pads), nothing is
  // written past the outputs, and every weight comes back within about half a step.
  std::mt19937 gen(16);
  std::normal_distribution<float> nd(0.0f, 0.3f);
  for (int64_t cols : {1, 13, 44, 100}) {
    const int64_t rows = 3, group = 32, words = (cols + 7) / 8, groups = (cols + 31) / 32;
    std::vector<float> wf(rows * cols);
    for (auto& v : wf) v = nd(gen);
    std::vector<uint32_t> packed(rows * words + 1, 0xDEADBEEF);
    std::vector<uint16_t> scales(rows * groups + 1, 0xBEEF);
    BOOST_TEST_REQUIRE(k::int4_group_quantize(wf.data(), rows, cols, group, packed.data(),
                                              scales.data()) == status::ok);
    BOOST_TEST(packed.back() == 0xDEADBEEF);
    BOOST_TEST(scales.back() == 0xBEEF);
    k::int4_group_matrix m;
    m.rows = rows;
    m.cols = cols;
    m.group = group;
    m.packed = packed.data();
    m.packed_stride = words;
    m.scales = scales.data();
    m.scale_stride = groups;
    std::vector<float> out(cols);
    for (int64_t r = 0; r < rows; ++r) {
      if (cols % 8 != 0) BOOST_TEST((packed[r * words + words - 1] >> (4 * (cols % 8))) == 0u);
      BOOST_TEST_REQUIRE(k::int4_group_dequantize_row(m, r, out.data()) == status::ok);
      for (int64_t c = 0; c < cols; ++c) {
        const double s = ref_bf16(scales[r * groups + c / group]);
        const double wb = ref_bf16(k::fp32_to_bf16(wf[r * cols + c]));
        // Half a step, plus bf16's rounding of w/s and of absmax/7.5 (which can push the
        // group maximum past 7.5 steps, then it clamps to 7).
        BOOST_TEST(std::fabs(out[c] - wb) <= 0.6 * s, "r " << r << " c " << c);
      }
    }
  }
}

// ---- FP8 ------------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(fp8_gemm_matches_double_reference) {
  std::mt19937 gen(21);
  for (int64_t rows : test_rows) {
    for (int64_t cols : test_cols) {
      fp8_case w(rows, cols, 128, 128, gen);
      for (int64_t tokens : test_tokens) {
        const int64_t ldx = cols + 2;
        const auto x = make_x(tokens, cols, ldx, gen);
        const int64_t rb = rows / 4, re = rows - rows / 3;
        for (isa level : levels()) {
          auto gemm = [&](auto... a) { return k::fp8_block_gemm(w.m, a...); };
          auto at = [&](int64_t r, int64_t c) { return w.at(r, c); };
          check_gemm(gemm, at, rows, cols, 0, rows, tokens, x, ldx, 2e-6, false, level);
          check_gemm(gemm, at, rows, cols, rb, re, tokens, x, ldx, 2e-6, false, level);
        }
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(fp8_gemm_odd_blocks) {
  std::mt19937 gen(22);
  struct shape {
    int64_t rows, cols, br, bc, tokens;
  };
  const shape shapes[] = {{10, 200, 3, 40, 3}, {7, 300, 128, 7, 2}, {5, 129, 2, 16, 5},
                          {9, 1000, 4, 48, 1}, {3, 5, 1, 1, 4},     {4, 8192, 128, 128, 2}};
  for (const auto& s : shapes) {
    fp8_case w(s.rows, s.cols, s.br, s.bc, gen);
    const auto x = make_x(s.tokens, s.cols, s.cols, gen);
    for (isa level : levels()) {
      auto gemm = [&](auto... a) { return k::fp8_block_gemm(w.m, a...); };
      auto at = [&](int64_t r, int64_t c) { return w.at(r, c); };
      check_gemm(gemm, at, s.rows, s.cols, 0, s.rows, s.tokens, x, s.cols, 2e-6, false, level);
    }
  }
}

BOOST_AUTO_TEST_CASE(fp8_nan_propagates_to_its_row_only) {
  std::mt19937 gen(23);
  fp8_case w(3, 70, 128, 128, gen);
  w.data[1 * w.m.stride + 5] = 0x7F;   // in the vector part
  w.data[2 * w.m.stride + 66] = 0xFF;  // in the tail
  const auto x = make_x(2, 70, 70, gen);
  for (isa level : levels()) {
    std::vector<float> y(6);
    BOOST_TEST_REQUIRE(k::fp8_block_gemm(w.m, 0, 3, x.data(), 70, 2, y.data(), 3, level) ==
                       status::ok);
    for (int t = 0; t < 2; ++t) {
      BOOST_TEST(!std::isnan(y[t * 3 + 0]));
      BOOST_TEST(std::isnan(y[t * 3 + 1]));
      BOOST_TEST(std::isnan(y[t * 3 + 2]));
    }
  }
}

BOOST_AUTO_TEST_CASE(fp8_dequantize_row_follows_layout) {
  std::mt19937 gen(24);
  fp8_case w(5, 150, 2, 64, gen);
  std::vector<float> out(151, guard);
  for (int64_t r = 0; r < 5; ++r) {
    BOOST_TEST_REQUIRE(k::fp8_block_dequantize_row(w.m, r, out.data()) == status::ok);
    for (int64_t c = 0; c < 150; ++c)
      BOOST_TEST(double(out[c]) == double(float(w.at(r, c))), "r " << r << " c " << c);
    BOOST_TEST(out[150] == guard);
  }
}

// ---- argument checks --------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(arguments_are_checked) {
  std::mt19937 gen(31);
  int4_case w(4, 64, 32, scale_type::bf16, gen);
  fp8_case f(4, 64, 128, 128, gen);
  std::vector<float> x(3 * 64), y(3 * 4);
  auto i4 = [&](const k::int4_group_matrix& m, int64_t rb, int64_t re, const float* xp, int64_t ldx,
                int64_t tokens, float* yp,
                int64_t ldy) { return k::int4_group_gemm(m, rb, re, xp, ldx, tokens, yp, ldy); };
  BOOST_TEST(i4(w.m, 0, 4, x.data(), 64, 3, y.data(), 4) == status::ok);
  BOOST_TEST(i4(w.m, -1, 4, x.data(), 64, 3, y.data(), 4) == status::bad_size);
  BOOST_TEST(i4(w.m, 3, 2, x.data(), 64, 3, y.data(), 4) == status::bad_size);
  BOOST_TEST(i4(w.m, 0, 5, x.data(), 64, 3, y.data(), 5) == status::bad_size);
  BOOST_TEST(i4(w.m, 0, 4, x.data(), 64, -1, y.data(), 4) == status::bad_size);
  BOOST_TEST(i4(w.m, 0, 4, x.data(), 63, 3, y.data(), 4) == status::bad_size);
  BOOST_TEST(i4(w.m, 0, 4, x.data(), 64, 3, y.data(), 3) == status::bad_size);
  BOOST_TEST(i4(w.m, 0, 4, x.data(), 0, 1, y.data(), 0) == status::ok);  // one token: no ld
  BOOST_TEST(i4(w.m, 0, 4, nullptr, 64, 3, y.data(), 4) == status::null_pointer);
  BOOST_TEST(i4(w.m, 0, 4, x.data(), 64, 3, nullptr, 4) == status::null_pointer);
  BOOST_TEST(i4(w.m, 2, 2, nullptr, 64, 3, nullptr, 4) == status::ok);  // nothing to do
  for (int64_t g : {0, -8, 12, 4}) {
    auto m = w.m;
    m.group = g;
    BOOST_TEST(i4(m, 0, 4, x.data(), 64, 3, y.data(), 4) == status::bad_size, "group " << g);
  }
  {
    auto m = w.m;
    m.packed_stride = 7;
    BOOST_TEST(i4(m, 0, 4, x.data(), 64, 3, y.data(), 4) == status::bad_size);
    m = w.m;
    m.scale_stride = 1;
    BOOST_TEST(i4(m, 0, 4, x.data(), 64, 3, y.data(), 4) == status::bad_size);
    m = w.m;
    m.packed = nullptr;
    BOOST_TEST(i4(m, 0, 4, x.data(), 64, 3, y.data(), 4) == status::null_pointer);
    m = w.m;
    m.scales = nullptr;
    BOOST_TEST(i4(m, 0, 4, x.data(), 64, 3, y.data(), 4) == status::null_pointer);
    m = w.m;
    m.cols = 0;  // an empty row sums to 0
    std::fill(y.begin(), y.end(), guard);
    BOOST_TEST(i4(m, 1, 3, nullptr, 0, 3, y.data(), 4) == status::ok);
    BOOST_TEST(y[1] == 0.0f);
    BOOST_TEST(y[0] == guard);
  }
  BOOST_TEST(k::int4_group_dequantize_row(w.m, 4, y.data()) == status::bad_size);
  BOOST_TEST(k::int4_group_dequantize_row(w.m, 0, nullptr) == status::null_pointer);

  auto f8 = [&](const k::fp8_block_matrix& m, int64_t rb, int64_t re, const float* xp, int64_t ldx,
                int64_t tokens, float* yp,
                int64_t ldy) { return k::fp8_block_gemm(m, rb, re, xp, ldx, tokens, yp, ldy); };
  BOOST_TEST(f8(f.m, 0, 4, x.data(), 64, 3, y.data(), 4) == status::ok);
  BOOST_TEST(f8(f.m, 0, 5, x.data(), 64, 3, y.data(), 5) == status::bad_size);
  BOOST_TEST(f8(f.m, 0, 4, x.data(), 64, 3, nullptr, 4) == status::null_pointer);
  {
    auto m = f.m;
    m.stride = 63;
    BOOST_TEST(f8(m, 0, 4, x.data(), 64, 3, y.data(), 4) == status::bad_size);
    m = f.m;
    m.block_cols = 0;
    BOOST_TEST(f8(m, 0, 4, x.data(), 64, 3, y.data(), 4) == status::bad_size);
    m = f.m;
    m.block_rows = -1;
    BOOST_TEST(f8(m, 0, 4, x.data(), 64, 3, y.data(), 4) == status::bad_size);
    m = f.m;
    m.scale_stride = 0;
    BOOST_TEST(f8(m, 0, 4, x.data(), 64, 3, y.data(), 4) == status::bad_size);
    m = f.m;
    m.scale_inv = nullptr;
    BOOST_TEST(f8(m, 0, 4, x.data(), 64, 3, y.data(), 4) == status::null_pointer);
  }
  BOOST_TEST(k::fp8_block_dequantize_row(f.m, -1, y.data()) == status::bad_size);

  std::vector<uint32_t> packed(8);
  std::vector<uint16_t> scales(2);
  BOOST_TEST(k::int4_group_quantize(x.data(), 1, 64, 12, packed.data(), scales.data()) ==
             status::bad_size);
  BOOST_TEST(k::int4_group_quantize(nullptr, 1, 64, 32, packed.data(), scales.data()) ==
             status::null_pointer);

  for (isa l : {isa::avx2, isa::avx512}) {
    if (k::isa_available(l)) continue;
    BOOST_TEST(k::int4_group_gemm(w.m, 0, 4, x.data(), 64, 3, y.data(), 4, l) ==
               status::unsupported_isa);
    BOOST_TEST(k::fp8_block_gemm(f.m, 0, 4, x.data(), 64, 3, y.data(), 4, l) ==
               status::unsupported_isa);
  }
}
