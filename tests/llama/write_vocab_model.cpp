// write_vocab_model VOCAB.gguf TEMPLATE.jinja OUT.gguf [--llama3-rope]
// Writes a tiny random llama model around a real vocabulary (one of llama.cpp's vocab-only test
// files, installed by scripts/install-deps: Llama 2's SentencePiece or Llama 3's byte-level BPE)
// with the chat template read from TEMPLATE.jinja, for check_vocab_models.py: `troupe generate`
// on it against llama.cpp's greedy output (tools/reference/vocab_model_reference.py).
// --llama3-rope adds Llama 3's RoPE: base 500000 and rope_freqs.weight (Llama 3.1's frequency
// factors); --qwen2 makes it a qwen2 file (NEOX RoPE, base 10^6, q/k/v biases); --phi3 a phi3
// file (NEOX RoPE, fused q/k/v and gate/up, named "Phi-3"). The bytes are the
// same on every run and machine: weights come from a 32-bit integer generator and are quantised to
// Q8_0 here, not by troupe's kernels.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "cpu/quant.hpp"
#include "gguf_test_writer.hpp"
#include "troupe/error.hpp"
#include "troupe/formats/gguf.hpp"

namespace {

using troupe::gguf_value_type;
namespace kc = troupe::kernels::cpu;

constexpr uint64_t hidden = 64, heads = 2, kv_heads = 1, ffn = 128, layers = 2;

/// xorshift32: the same sequence everywhere.
struct generator {
  uint32_t s;
  float next(float scale) {  // uniform in [-scale, scale)
    s ^= s << 13;
    s ^= s >> 17;
    s ^= s << 5;
    return scale * (static_cast<float>(s >> 8) / 8388608.0f - 1.0f);
  }
};

/// rows × cols weights, uniform with the standard deviation of scale / sqrt(cols), as Q8_0.
std::string q8_0_matrix(generator& g, uint64_t rows, uint64_t cols, float scale) {
  const float bound = scale * std::sqrt(3.0f / static_cast<float>(cols));
  std::string out;
  for (uint64_t r = 0; r < rows; ++r) {
    for (uint64_t b = 0; b < cols / 32; ++b) {
      float x[32], amax = 0;
      for (float& v : x) {
        v = g.next(bound);
        amax = std::max(amax, std::fabs(v));
      }
      kc::block_q8_0 blk{};
      const float d = amax / 127.0f;
      blk.d = kc::fp32_to_fp16(d);
      for (int i = 0; i < 32; ++i)
        blk.qs[i] = static_cast<int8_t>(d == 0 ? 0 : std::lround(x[i] / d));
      out.append(reinterpret_cast<const char*>(&blk), sizeof blk);
    }
  }
  return out;
}

std::string floats(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}
std::string ones(uint64_t n) { return floats(std::vector<float>(n, 1.0f)); }

/// Llama 3.1's RoPE scaling as per-pair divisors of the angle (what convert_hf_to_gguf.py
/// stores in rope_freqs.weight): factor 8, low/high frequency factors 1 and 4, trained on 8192.
std::vector<float> llama3_freq_factors(uint64_t dims, double base) {
  const double factor = 8, low = 1, high = 4, original = 8192;
  std::vector<float> out;
  for (uint64_t i = 0; i < dims; i += 2) {
    const double wavelen = 2 * M_PI * std::pow(base, static_cast<double>(i) / dims);
    if (wavelen < original / high) {
      out.push_back(1.0f);
    } else if (wavelen > original / low) {
      out.push_back(static_cast<float>(factor));
    } else {
      const double smooth = (original / wavelen - low) / (high - low);
      out.push_back(static_cast<float>(1 / ((1 - smooth) / factor + smooth)));
    }
  }
  return out;
}

std::string read_file(const char* path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw troupe::error(troupe::errc::not_found, std::string("cannot read ") + path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

int main(int argc, char** argv) {
  const std::string variant = argc == 5 ? argv[4] : "";
  const bool llama3_rope = variant == "--llama3-rope", qwen2 = variant == "--qwen2",
             phi3 = variant == "--phi3";
  if (argc != 4 && !llama3_rope && !qwen2 && !phi3) {
    std::cerr << "usage: write_vocab_model VOCAB.gguf TEMPLATE.jinja OUT.gguf "
                 "[--llama3-rope | --qwen2 | --phi3]\n";
    return 2;
  }
  try {
    const troupe::gguf_file vocab = troupe::gguf_file::open(argv[1]);
    const float rope_base = llama3_rope ? 500000.0f : qwen2 ? 1000000.0f : 10000.0f;
    const std::string arch = qwen2 ? "qwen2" : phi3 ? "phi3" : "llama";
    const auto key = [&](const char* k) { return arch + "." + k; };
    troupe::test::gguf_writer w;
    w.kv_string("general.architecture", arch);
    // "Phi-3" in the name turns on llama.cpp's (and troupe's) Phi-3 vocabulary rules.
    w.kv_string("general.name", phi3 ? "Phi-3 test: random weights, a real vocabulary"
                                     : "troupe test: random weights, a real vocabulary");
    w.kv(key("context_length"), gguf_value_type::u32, uint32_t{512});
    w.kv(key("embedding_length"), gguf_value_type::u32, uint32_t{hidden});
    w.kv(key("block_count"), gguf_value_type::u32, uint32_t{layers});
    w.kv(key("feed_forward_length"), gguf_value_type::u32, uint32_t{ffn});
    w.kv(key("attention.head_count"), gguf_value_type::u32, uint32_t{heads});
    w.kv(key("attention.head_count_kv"), gguf_value_type::u32, uint32_t{kv_heads});
    if (!qwen2)  // qwen2 files leave it to the head size
      w.kv(key("rope.dimension_count"), gguf_value_type::u32, uint32_t{hidden / heads});
    w.kv(key("attention.layer_norm_rms_epsilon"), gguf_value_type::f32, 1e-5f);
    w.kv(key("rope.freq_base"), gguf_value_type::f32, rope_base);
    w.kv_string("tokenizer.ggml.model", vocab.get_string("tokenizer.ggml.model"));
    w.kv_string("tokenizer.ggml.pre", vocab.get_string("tokenizer.ggml.pre"));
    const std::vector<std::string> tokens = vocab.get_string_array("tokenizer.ggml.tokens");
    w.kv_string_array("tokenizer.ggml.tokens", tokens);
    if (vocab.contains("tokenizer.ggml.scores"))
      w.kv_array("tokenizer.ggml.scores", gguf_value_type::f32,
                 vocab.get_float_array("tokenizer.ggml.scores"));
    if (vocab.contains("tokenizer.ggml.merges"))
      w.kv_string_array("tokenizer.ggml.merges", vocab.get_string_array("tokenizer.ggml.merges"));
    std::vector<int32_t> types;
    for (int64_t t : vocab.get_int_array("tokenizer.ggml.token_type"))
      types.push_back(static_cast<int32_t>(t));
    w.kv_array("tokenizer.ggml.token_type", gguf_value_type::i32, types);
    for (const char* key : {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                            "tokenizer.ggml.unknown_token_id"})
      if (vocab.contains(key)) w.kv(key, gguf_value_type::u32, vocab.get_u32(key));
    for (const char* key : {"tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token"})
      if (vocab.contains(key))
        w.kv(key, gguf_value_type::boolean, static_cast<uint8_t>(vocab.get_bool(key)));
    w.kv_string("tokenizer.chat_template", read_file(argv[2]));

    generator g{0x7f4a7c15u};
    const uint64_t vocab_size = tokens.size(), head_dim = hidden / heads;
    const uint32_t q8_0 = 8, f32 = 0;
    w.tensor("token_embd.weight", q8_0, {hidden, vocab_size},
             q8_0_matrix(g, vocab_size, hidden, 1.0f));
    w.tensor("output_norm.weight", f32, {hidden}, ones(hidden));
    if (llama3_rope)
      w.tensor("rope_freqs.weight", f32, {head_dim / 2},
               floats(llama3_freq_factors(head_dim, rope_base)));
    for (uint64_t i = 0; i < layers; ++i) {
      const std::string p = "blk." + std::to_string(i) + ".";
      w.tensor(p + "attn_norm.weight", f32, {hidden}, ones(hidden));
      const uint64_t kv_dim = kv_heads * head_dim;
      std::string q = q8_0_matrix(g, hidden, hidden, 2), k = q8_0_matrix(g, kv_dim, hidden, 2),
                  v = q8_0_matrix(g, kv_dim, hidden, 3);
      if (phi3) {  // fused: the rows of q, then k, then v
        w.tensor(p + "attn_qkv.weight", q8_0, {hidden, hidden + 2 * kv_dim}, q + k + v);
      } else {
        w.tensor(p + "attn_q.weight", q8_0, {hidden, hidden}, std::move(q));
        w.tensor(p + "attn_k.weight", q8_0, {hidden, kv_dim}, std::move(k));
        w.tensor(p + "attn_v.weight", q8_0, {hidden, kv_dim}, std::move(v));
      }
      w.tensor(p + "attn_output.weight", q8_0, {hidden, hidden}, q8_0_matrix(g, hidden, hidden, 3));
      w.tensor(p + "ffn_norm.weight", f32, {hidden}, ones(hidden));
      std::string gate = q8_0_matrix(g, ffn, hidden, 2), up = q8_0_matrix(g, ffn, hidden, 2);
      if (phi3) {  // fused: gate rows, then up rows
        w.tensor(p + "ffn_up.weight", q8_0, {hidden, 2 * ffn}, gate + up);
      } else {
        w.tensor(p + "ffn_gate.weight", q8_0, {hidden, ffn}, std::move(gate));
        w.tensor(p + "ffn_up.weight", q8_0, {hidden, ffn}, std::move(up));
      }
      w.tensor(p + "ffn_down.weight", q8_0, {ffn, hidden}, q8_0_matrix(g, hidden, ffn, 3));
      if (qwen2) {  // Qwen2's q/k/v biases
        auto bias = [&](uint64_t n) {
          std::vector<float> b(n);
          for (float& x : b) x = g.next(0.5f);
          return floats(b);
        };
        w.tensor(p + "attn_q.bias", f32, {hidden}, bias(hidden));
        w.tensor(p + "attn_k.bias", f32, {kv_heads * head_dim}, bias(kv_heads * head_dim));
        w.tensor(p + "attn_v.bias", f32, {kv_heads * head_dim}, bias(kv_heads * head_dim));
      }
    }
    const std::string bytes = w.bytes();
    std::ofstream out(argv[3], std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) {
      std::cerr << "write_vocab_model: cannot write " << argv[3] << "\n";
      return 1;
    }
  } catch (const troupe::error& e) {
    std::cerr << "write_vocab_model: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
