// Loading a GGUF file of llama.cpp's `deepseek2` architecture into the same deepseek::model the
// safetensors loader builds: config from the deepseek2.* metadata, tensors by llama.cpp's names,
// every shape checked against that metadata, weights left in the mapped file in their ggml type.
//
// What llama.cpp's converter (convert_hf_to_gguf.py, DeepseekV2Model) does to the HF tensors, and
// so what is undone here:
//  - dimension order: ggml's ne[0] is the row length, so a HF [out, in] matrix is [in, out] here;
//    the stacked experts ffn_{gate,up,down}_exps are [in, out, experts], expert e a contiguous
//    slice;
//  - kv_b_proj [heads·(nope + v), kv_lora] is, in conversions since MLA-as-MQA, split per head into
//    attn_k_b = k_b.transpose(1, 2), torch shape [heads, kv_lora, nope] (ne [nope, kv_lora,
//    heads]), and attn_v_b, torch shape [heads, v, kv_lora] (ne [kv_lora, v, heads]); older files
//    keep attn_kv_b whole. The plain attention form needs kv_b, so it is rebuilt in fp32;
//  - the q and k rope dims are not permuted for deepseek2 (only the older `deepseek` class
//    permutes), and llama.cpp rotates them as adjacent pairs, as troupe's decoder does.

#include <cstring>
#include <string>

#include "cpu/quant.hpp"
#include "deepseek/linear.hpp"
#include "deepseek/model_storage.hpp"
#include "troupe/deepseek/config.hpp"
#include "troupe/deepseek/model.hpp"
#include "troupe/error.hpp"
#include "troupe/formats/gguf.hpp"

namespace troupe::deepseek {

namespace {

constexpr const char* arch = "deepseek2";

std::string key_of(std::string_view name) { return std::string(arch) + "." + std::string(name); }

/// Reads the deepseek2.* keys of one file, with errors that name the file and the key.
class metadata {
 public:
  explicit metadata(const gguf_file& f) : f_(f) {}

  bool has(std::string_view name) const { return f_.contains(key_of(name)); }
  int64_t count(std::string_view name) const { return checked(name, f_.get_u64(key_of(name))); }
  int64_t count_or(std::string_view name, int64_t fallback) const {
    return has(name) ? count(name) : fallback;
  }
  double real(std::string_view name) const { return f_.get_f32(key_of(name)); }
  double real_or(std::string_view name, double fallback) const {
    return has(name) ? real(name) : fallback;
  }
  bool flag_or(std::string_view name, bool fallback) const {
    return has(name) ? f_.get_bool(key_of(name)) : fallback;
  }

  [[noreturn]] void fail(std::string_view name, const std::string& what) const {
    throw error(errc::parse_error,
                "gguf " + f_.path().string() + ": metadata key '" + key_of(name) + "' " + what);
  }
  void positive(std::string_view name, int64_t v) const {
    if (v <= 0) fail(name, "is " + std::to_string(v) + ", expected a positive count");
  }

 private:
  // Below 2^31, so that the product of two sizes (rows x cols) cannot overflow before the tensor
  // shapes, which the file's size bounds, are checked against them.
  int64_t checked(std::string_view name, uint64_t v) const {
    if (v >= (uint64_t{1} << 31))
      fail(name, "is " + std::to_string(v) + ", far beyond any model dimension");
    return static_cast<int64_t>(v);
  }
  const gguf_file& f_;
};

std::string shape_text(const std::vector<uint64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

bool computable(uint32_t type) {
  switch (static_cast<kc::quant_type>(type)) {
    case kc::quant_type::f32:
    case kc::quant_type::f16:
    case kc::quant_type::bf16:
    case kc::quant_type::q8_0:
    case kc::quant_type::q4_0:
    case kc::quant_type::q4_1:
    case kc::quant_type::q5_0:
    case kc::quant_type::q5_1:
    case kc::quant_type::q4_k:
    case kc::quant_type::q5_k:
    case kc::quant_type::q6_k:
      return true;
    default:
      return false;
  }
}

class gguf_loader {
 public:
  explicit gguf_loader(const gguf_file& f) : f_(f) {}

  const gguf_tensor& tensor(const std::string& name) const { return f_.tensor(name); }
  const gguf_tensor* find(const std::string& name) const { return f_.find_tensor(name); }

  /// `ne` in ggml order (row length first); `why` names the metadata keys it comes from.
  void expect_shape(const gguf_tensor& t, const std::vector<int64_t>& ne,
                    const std::string& why) const {
    std::vector<uint64_t> want(ne.begin(), ne.end());
    if (t.shape != want)
      throw error(errc::parse_error,
                  "gguf " + f_.path().string() + ": tensor '" + t.name + "' has shape " +
                      shape_text(t.shape) +
                      " (ggml order, row length first) but the deepseek2 metadata (" + why +
                      ") needs " + shape_text(want) +
                      "; the tensors and the metadata do not belong together");
  }

  kc::quant_type type_of(const gguf_tensor& t) const {
    if (!computable(t.type)) {
      const auto name = ggml_type_name(t.type);
      throw error(errc::unsupported,
                  "gguf " + f_.path().string() + ": tensor '" + t.name + "' is of ggml type " +
                      (name.empty() ? "#" + std::to_string(t.type) : std::string(name)) +
                      "; troupe computes F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K and Q6_K only "
                      "(requantize the file, e.g. with llama-quantize)");
    }
    return static_cast<kc::quant_type>(t.type);
  }

  /// The whole tensor in fp32, row by row of ne[0] elements.
  std::vector<float> to_f32(const gguf_tensor& t) const {
    const auto type = type_of(t);
    const auto n = static_cast<int64_t>(t.shape.empty() ? 1 : t.shape[0]);
    const int64_t rows = static_cast<int64_t>(t.elements()) / n;
    const int64_t stride = kc::row_bytes(type, n);
    std::vector<float> out(static_cast<size_t>(t.elements()));
    for (int64_t r = 0; r < rows; ++r)
      if (kc::dequantize_row(type, t.data + r * stride, out.data() + r * n, n) != kc::status::ok)
        throw error(errc::unsupported, "gguf " + f_.path().string() + ": tensor '" + t.name +
                                           "' cannot be dequantized (its row length " +
                                           std::to_string(n) +
                                           " does not fit the block size of its type)");
    return out;
  }

  std::vector<float> vector(const std::string& name, int64_t n, const std::string& why) const {
    const auto& t = tensor(name);
    expect_shape(t, {n}, why);
    return to_f32(t);
  }

  /// A matrix [rows, cols] (ggml ne [cols, rows]), or with `experts` > 0 a stack ne [cols, rows,
  /// experts] of which only the shape is checked here (see slice).
  linear_weight linear(const std::string& name, int64_t rows, int64_t cols,
                       const std::string& why) const {
    const auto& t = tensor(name);
    expect_shape(t, {cols, rows}, why);
    return slice(t, 0, rows, cols);
  }

  /// Matrix `index` [rows, cols] of a tensor whose first two dims are [cols, rows].
  linear_weight slice(const gguf_tensor& t, int64_t index, int64_t rows, int64_t cols) const {
    linear_weight w;
    w.name = t.shape.size() > 2 ? t.name + "[" + std::to_string(index) + "]" : t.name;
    w.rows = rows;
    w.cols = cols;
    w.fmt = linear_weight::format::dense;
    const auto type = type_of(t);
    w.dense_type = static_cast<uint32_t>(type);
    const int64_t stride = kc::row_bytes(type, cols);
    if (stride <= 0)
      throw error(errc::unsupported, "gguf " + f_.path().string() + ": tensor '" + t.name +
                                         "' has rows of " + std::to_string(cols) +
                                         " elements, not whole blocks of its type");
    w.row_stride = static_cast<size_t>(stride);
    w.data = t.data + index * rows * stride;
    return w;
  }

  mlp_weights mlp(const std::string& prefix, const std::string& suffix, int64_t hidden,
                  int64_t inter, const std::string& why) const {
    return {linear(prefix + "ffn_gate" + suffix + ".weight", inter, hidden, why),
            linear(prefix + "ffn_up" + suffix + ".weight", inter, hidden, why),
            linear(prefix + "ffn_down" + suffix + ".weight", hidden, inter, why)};
  }

 private:
  const gguf_file& f_;
};

}  // namespace

config config::from_gguf(const gguf_file& f) {
  const std::string where = f.path().string();
  const std::string architecture = f.get_string("general.architecture");
  if (architecture != arch)
    throw error(errc::unsupported, "gguf " + where + ": general.architecture is \"" + architecture +
                                       "\"; the DeepSeek-V3 engine reads \"deepseek2\" files only");
  const metadata md(f);
  config c;
  c.model_type = arch;
  c.num_hidden_layers = md.count("block_count");
  c.hidden_size = md.count("embedding_length");
  c.num_attention_heads = md.count("attention.head_count");
  c.kv_lora_rank = md.count("attention.kv_lora_rank");
  c.q_lora_rank = md.count_or("attention.q_lora_rank", 0);
  c.qk_rope_head_dim = md.count("rope.dimension_count");
  c.first_k_dense_replace = md.count_or("leading_dense_block_count", 0);
  c.intermediate_size = md.count_or("feed_forward_length", 0);
  c.moe_intermediate_size = md.count("expert_feed_forward_length");
  c.n_routed_experts = md.count("expert_count");
  c.num_experts_per_tok = md.count("expert_used_count");
  c.n_shared_experts = md.count_or("expert_shared_count", 0);
  c.n_group = md.count_or("expert_group_count", 1);
  c.topk_group = md.count_or("expert_group_used_count", 1);
  c.max_position_embeddings = md.count_or("context_length", 0);
  c.moe_layer_freq = 1;
  c.rms_norm_eps = md.real("attention.layer_norm_rms_epsilon");
  c.rope_theta = md.real_or("rope.freq_base", 10000);
  c.routed_scaling_factor = md.real_or("expert_weights_scale", 1);
  c.norm_topk_prob = md.flag_or("expert_weights_norm", false);
  for (const char* k :
       {"block_count", "embedding_length", "attention.head_count", "attention.kv_lora_rank",
        "rope.dimension_count", "expert_feed_forward_length", "expert_count", "expert_used_count",
        "expert_group_count", "expert_group_used_count"})
    md.positive(k, md.count_or(k, 1));
  if (c.qk_rope_head_dim % 2 != 0)
    md.fail("rope.dimension_count",
            "is " + std::to_string(c.qk_rope_head_dim) + ", but rope rotates pairs");

  // Per-head sizes: MLA-as-MQA files give them as *_mla and describe the latent as one kv head.
  const int64_t kv_heads = md.count_or("attention.head_count_kv", c.num_attention_heads);
  c.num_key_value_heads = c.num_attention_heads;
  int64_t qk_head = 0;
  if (md.has("attention.key_length_mla")) {
    qk_head = md.count("attention.key_length_mla");
    c.v_head_dim = md.count("attention.value_length_mla");
    if (md.has("attention.key_length") &&
        md.count("attention.key_length") != c.kv_lora_rank + c.qk_rope_head_dim)
      md.fail("attention.key_length",
              "is " + std::to_string(md.count("attention.key_length")) +
                  ", but an MLA-as-MQA file stores kv_lora_rank + rope.dimension_count = " +
                  std::to_string(c.kv_lora_rank + c.qk_rope_head_dim));
    if (kv_heads != 1 && kv_heads != c.num_attention_heads)
      md.fail("attention.head_count_kv", "is " + std::to_string(kv_heads) +
                                             ", expected 1 (MLA as MQA) or " +
                                             std::to_string(c.num_attention_heads));
  } else {
    qk_head = md.count("attention.key_length");
    c.v_head_dim = md.count("attention.value_length");
    if (kv_heads != c.num_attention_heads)
      md.fail("attention.head_count_kv",
              "is " + std::to_string(kv_heads) + " but attention.head_count is " +
                  std::to_string(c.num_attention_heads) +
                  "; a file without attention.key_length_mla keeps one kv head per head");
  }
  c.qk_nope_head_dim = qk_head - c.qk_rope_head_dim;
  if (c.qk_nope_head_dim <= 0)
    md.fail(
        md.has("attention.key_length_mla") ? "attention.key_length_mla" : "attention.key_length",
        "is " + std::to_string(qk_head) + ", not more than rope.dimension_count " +
            std::to_string(c.qk_rope_head_dim));
  md.positive(md.has("attention.value_length_mla") ? "attention.value_length_mla"
                                                   : "attention.value_length",
              c.v_head_dim);

  // Routing.
  if (!md.has("expert_gating_func")) {
    c.scoring_func = "softmax";
  } else {
    switch (const int64_t g = md.count("expert_gating_func")) {
      case 1:
        c.scoring_func = "softmax";
        break;
      case 2:
        c.scoring_func = "sigmoid";
        break;
      default:
        throw error(errc::unsupported,
                    "gguf " + where + ": metadata key '" + key_of("expert_gating_func") + "' is " +
                        std::to_string(g) + "; troupe routes with 1 (softmax) or 2 (sigmoid) only");
    }
  }
  c.topk_method = f.find_tensor("blk." + std::to_string(c.first_k_dense_replace) +
                                ".exp_probs_b.bias") != nullptr
                      ? "noaux_tc"
                      : "greedy";
  if (c.first_k_dense_replace > c.num_hidden_layers)
    md.fail("leading_dense_block_count", "is " + std::to_string(c.first_k_dense_replace) +
                                             ", more than the " +
                                             std::to_string(c.num_hidden_layers) + " blocks");
  if (c.first_k_dense_replace > 0) md.positive("feed_forward_length", c.intermediate_size);
  if (c.num_experts_per_tok > c.n_routed_experts)
    md.fail("expert_used_count", "is " + std::to_string(c.num_experts_per_tok) +
                                     ", more than the " + std::to_string(c.n_routed_experts) +
                                     " experts (expert_count)");
  if (c.n_routed_experts % c.n_group != 0)
    md.fail("expert_group_count", "is " + std::to_string(c.n_group) +
                                      ", which does not divide the " +
                                      std::to_string(c.n_routed_experts) + " experts");
  if (c.topk_group > c.n_group)
    md.fail("expert_group_used_count", "is " + std::to_string(c.topk_group) + ", more than the " +
                                           std::to_string(c.n_group) +
                                           " groups (expert_group_count)");
  if (c.num_experts_per_tok > c.topk_group * (c.n_routed_experts / c.n_group))
    md.fail("expert_used_count",
            "is " + std::to_string(c.num_experts_per_tok) +
                ", more than the experts in the expert_group_used_count groups");
  if (!(c.rms_norm_eps > 0)) md.fail("attention.layer_norm_rms_epsilon", "is not positive");
  if (!(c.rope_theta > 1)) md.fail("rope.freq_base", "is not a base above 1");
  if (!(c.routed_scaling_factor > 0)) md.fail("expert_weights_scale", "is not positive");

  // Rope scaling.
  const std::string scaling = f.get_string(key_of("rope.scaling.type"), "none");
  if (scaling == "yarn") {
    yarn_scaling y;
    y.factor = md.real("rope.scaling.factor");
    y.original_max_position_embeddings =
        md.count_or("rope.scaling.original_context_length", y.original_max_position_embeddings);
    y.beta_fast = md.real_or("rope.scaling.yarn_beta_fast", y.beta_fast);
    y.beta_slow = md.real_or("rope.scaling.yarn_beta_slow", y.beta_slow);
    // llama.cpp writes 0.1·mscale_all_dim (PR #17945) and cancels ggml's YaRN amplitude on
    // cos/sin, which is mscale == mscale_all_dim in DeepSeek's terms.
    y.mscale_all_dim = md.real_or("rope.scaling.yarn_log_multiplier", 0) / 0.1;
    y.mscale = y.mscale_all_dim;
    if (!(y.factor >= 1)) md.fail("rope.scaling.factor", "is below 1");
    c.yarn = y;
  } else if (scaling != "none") {
    throw error(errc::unsupported,
                "gguf " + where + ": metadata key '" + key_of("rope.scaling.type") + "' is \"" +
                    scaling + "\"; troupe runs deepseek2 with \"yarn\" or no rope scaling");
  }

  // Vocabulary: the key, else the token list, else the embedding's row count.
  if (md.has("vocab_size")) {
    c.vocab_size = md.count("vocab_size");
  } else if (const auto* tokens = f.find("tokenizer.ggml.tokens")) {
    c.vocab_size = static_cast<int64_t>(tokens->count);
  } else {
    const auto& embd = f.tensor("token_embd.weight");
    c.vocab_size = embd.shape.size() == 2 ? static_cast<int64_t>(embd.shape[1]) : 0;
  }
  md.positive("vocab_size", c.vocab_size);
  c.tie_word_embeddings = f.find_tensor("output.weight") == nullptr;
  c.bos_token_id =
      f.contains("tokenizer.ggml.bos_token_id") ? f.get_u32("tokenizer.ggml.bos_token_id") : -1;
  c.eos_token_id =
      f.contains("tokenizer.ggml.eos_token_id") ? f.get_u32("tokenizer.ggml.eos_token_id") : -1;
  return c;
}

std::shared_ptr<const model> model::load_gguf(const std::filesystem::path& file) {
  std::shared_ptr<model> m(new model());
  m->storage_ = std::make_unique<storage>();
  m->storage_->gguf.emplace(gguf_file::open(file));
  const gguf_file& f = *m->storage_->gguf;
  m->cfg_ = config::from_gguf(f);
  m->path_ = file;
  const config& c = m->cfg_;
  const gguf_loader ld(f);
  const int64_t H = c.num_attention_heads, hidden = c.hidden_size;
  const int64_t nope = c.qk_nope_head_dim, vdim = c.v_head_dim, R = c.kv_lora_rank,
                qk = c.qk_head_dim();

  m->embed_ = ld.linear("token_embd.weight", c.vocab_size, hidden, "vocab_size x embedding_length");
  m->final_norm_ = ld.vector("output_norm.weight", hidden, "embedding_length");
  m->lm_head_ = c.tie_word_embeddings ? m->embed_
                                      : ld.linear("output.weight", c.vocab_size, hidden,
                                                  "vocab_size x embedding_length");

  m->layers_.resize(static_cast<size_t>(c.num_hidden_layers));
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    auto& L = m->layers_[static_cast<size_t>(i)];
    const std::string b = "blk." + std::to_string(i) + ".";
    L.attn_norm = ld.vector(b + "attn_norm.weight", hidden, "embedding_length");
    L.ffn_norm = ld.vector(b + "ffn_norm.weight", hidden, "embedding_length");
    if (c.q_lora_rank > 0) {
      L.q_a =
          ld.linear(b + "attn_q_a.weight", c.q_lora_rank, hidden, "q_lora_rank x embedding_length");
      L.q_a_norm = ld.vector(b + "attn_q_a_norm.weight", c.q_lora_rank, "q_lora_rank");
      L.q_b = ld.linear(b + "attn_q_b.weight", H * qk, c.q_lora_rank,
                        "head_count·key_length_mla x q_lora_rank");
    } else {
      L.q = ld.linear(b + "attn_q.weight", H * qk, hidden,
                      "head_count·key_length_mla x embedding_length");
    }
    L.kv_a = ld.linear(b + "attn_kv_a_mqa.weight", R + c.qk_rope_head_dim, hidden,
                       "(kv_lora_rank + rope.dimension_count) x embedding_length");
    L.kv_a_norm = ld.vector(b + "attn_kv_a_norm.weight", R, "kv_lora_rank");
    L.o = ld.linear(b + "attn_output.weight", hidden, H * vdim,
                    "embedding_length x head_count·value_length_mla");

    // kv_b [H·(nope + v), R] in fp32: whole in older files, else rebuilt from k_b and v_b.
    std::vector<float> kv_b;
    if (ld.find(b + "attn_kv_b.weight") == nullptr && ld.find(b + "attn_k_b.weight") == nullptr)
      throw error(errc::not_found, "gguf " + file.string() + ": no tensor '" + b +
                                       "attn_kv_b.weight' nor the '" + b + "attn_k_b.weight' + '" +
                                       b + "attn_v_b.weight' that newer conversions split it into");
    if (ld.find(b + "attn_kv_b.weight") != nullptr) {
      L.kv_b =
          ld.linear(b + "attn_kv_b.weight", H * (nope + vdim), R,
                    "head_count·(key_length - rope.dimension_count + value_length) x kv_lora_rank");
      kv_b = dequantize(L.kv_b);
    } else {
      const auto& kt = ld.tensor(b + "attn_k_b.weight");
      const auto& vt = ld.tensor(b + "attn_v_b.weight");
      ld.expect_shape(kt, {nope, R, H},
                      "key_length_mla - rope.dimension_count, kv_lora_rank, head_count: k_b "
                      "transposed per head");
      ld.expect_shape(vt, {R, vdim, H}, "kv_lora_rank, value_length_mla, head_count");
      const auto k_b = ld.to_f32(kt);  // [H][R][nope]
      const auto v_b = ld.to_f32(vt);  // [H][v][R]
      kv_b.resize(static_cast<size_t>(H * (nope + vdim) * R));
      for (int64_t h = 0; h < H; ++h) {
        float* dst = kv_b.data() + h * (nope + vdim) * R;
        for (int64_t d = 0; d < nope; ++d)
          for (int64_t r = 0; r < R; ++r)
            dst[d * R + r] = k_b[static_cast<size_t>((h * R + r) * nope + d)];
        std::memcpy(dst + nope * R, v_b.data() + h * vdim * R,
                    static_cast<size_t>(vdim * R) * sizeof(float));
      }
      auto& owned = m->storage_->owned.emplace_back(kv_b);
      L.kv_b.name = kt.name + " + " + vt.name;
      L.kv_b.rows = H * (nope + vdim);
      L.kv_b.cols = R;
      L.kv_b.fmt = linear_weight::format::dense;
      L.kv_b.dense_type = static_cast<uint32_t>(kc::quant_type::f32);
      L.kv_b.data = owned.data();
      L.kv_b.row_stride = static_cast<size_t>(R) * sizeof(float);
    }
    // Absorbed-form matrices, as model::load: per head, rows [0, nope) of kv_b are W_UK.
    L.w_uk.resize(static_cast<size_t>(H * nope * R));
    L.w_uv.resize(static_cast<size_t>(H * vdim * R));
    for (int64_t h = 0; h < H; ++h) {
      const float* src = kv_b.data() + h * (nope + vdim) * R;
      std::memcpy(L.w_uk.data() + h * nope * R, src, static_cast<size_t>(nope * R) * sizeof(float));
      std::memcpy(L.w_uv.data() + h * vdim * R, src + nope * R,
                  static_cast<size_t>(vdim * R) * sizeof(float));
    }

    L.moe = c.is_moe_layer(i);
    if (!L.moe) {
      L.dense =
          ld.mlp(b, "", hidden, c.intermediate_size, "feed_forward_length x embedding_length");
      continue;
    }
    const int64_t E = c.n_routed_experts, inter = c.moe_intermediate_size;
    {
      const auto& gate = ld.tensor(b + "ffn_gate_inp.weight");
      ld.expect_shape(gate, {hidden, E}, "embedding_length, expert_count");
      L.router = ld.to_f32(gate);
    }
    if (ld.find(b + "exp_probs_b.bias") != nullptr)
      L.router_bias = ld.vector(b + "exp_probs_b.bias", E, "expert_count");
    else
      L.router_bias.assign(static_cast<size_t>(E), 0.0f);
    const auto& gate = ld.tensor(b + "ffn_gate_exps.weight");
    const auto& up = ld.tensor(b + "ffn_up_exps.weight");
    const auto& down = ld.tensor(b + "ffn_down_exps.weight");
    const std::string why = "embedding_length, expert_feed_forward_length, expert_count";
    ld.expect_shape(gate, {hidden, inter, E}, why);
    ld.expect_shape(up, {hidden, inter, E}, why);
    ld.expect_shape(down, {inter, hidden, E},
                    "expert_feed_forward_length, embedding_length, expert_count");
    L.experts.reserve(static_cast<size_t>(E));
    for (int64_t e = 0; e < E; ++e)
      L.experts.push_back({ld.slice(gate, e, inter, hidden), ld.slice(up, e, inter, hidden),
                           ld.slice(down, e, hidden, inter)});
    if (c.n_shared_experts > 0)
      L.shared = ld.mlp(b, "_shexp", hidden, inter * c.n_shared_experts,
                        "expert_feed_forward_length·expert_shared_count x embedding_length");
  }
  return m;
}

}  // namespace troupe::deepseek
