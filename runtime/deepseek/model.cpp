// Loading a DeepSeek-V3-architecture checkpoint: names, dtypes and shapes of every tensor checked
// against config.json; weights stay in the mapped files in their stored format.

#include "troupe/deepseek/model.hpp"

#include <cstring>
#include <string>

#include "cpu/low_bit.hpp"
#include "cpu/quant.hpp"
#include "deepseek/linear.hpp"
#include "deepseek/model_storage.hpp"
#include "troupe/error.hpp"
#include "troupe/formats/safetensors.hpp"

namespace troupe::deepseek {

model::~model() = default;

int64_t linear_weight::bytes() const noexcept {
  switch (fmt) {
    case format::dense: return rows * static_cast<int64_t>(row_stride);
    case format::int4_group: {
      const int64_t scale_bytes = scale_type == static_cast<uint8_t>(kc::scale_type::f32) ? 4 : 2;
      return rows * (packed_stride * 4 + scale_stride * scale_bytes);
    }
    case format::fp8_block:
      return rows * static_cast<int64_t>(row_stride) +
             ((rows + block_rows - 1) / block_rows) * ((cols + block_cols - 1) / block_cols) * 4;
  }
  return 0;
}

namespace {

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

class loader {
 public:
  loader(const safetensors_checkpoint& ckpt, const config& cfg) : ckpt_(ckpt), cfg_(cfg) {}

  const safetensors_tensor& tensor(const std::string& name) const { return ckpt_.tensor(name); }

  void expect_shape(const safetensors_tensor& t, const std::vector<int64_t>& shape,
                    const std::string& why) const {
    if (t.shape != shape)
      throw error(errc::parse_error,
                  "checkpoint " + ckpt_.path().string() + ": tensor '" + t.name + "' has shape " +
                      shape_text(t.shape) + " but config.json (" + why + ") needs " +
                      shape_text(shape) + "; the weights and config.json do not belong together");
  }

  [[noreturn]] void unsupported_dtype(const safetensors_tensor& t, const char* wanted) const {
    throw error(errc::unsupported, "checkpoint " + ckpt_.path().string() + ": tensor '" + t.name +
                                       "' is " + to_string(t.dtype) + "; troupe computes it from " +
                                       wanted + " only");
  }

  /// A 1-D fp32 copy (norm weights, biases), from f32, f16 or bf16.
  std::vector<float> vector(const std::string& name, int64_t n, const std::string& why) const {
    const auto& t = tensor(name);
    expect_shape(t, {n}, why);
    return to_f32(t);
  }

  std::vector<float> to_f32(const safetensors_tensor& t) const {
    std::vector<float> out(static_cast<size_t>(t.elements()));
    const auto* p = t.data;
    for (size_t i = 0; i < out.size(); ++i) {
      switch (t.dtype) {
        case safetensors_dtype::f32: std::memcpy(&out[i], p + 4 * i, 4); break;
        case safetensors_dtype::f16:
        case safetensors_dtype::bf16: {
          uint16_t h;
          std::memcpy(&h, p + 2 * i, 2);
          out[i] = t.dtype == safetensors_dtype::f16 ? kc::fp16_to_fp32(h) : kc::bf16_to_fp32(h);
          break;
        }
        default: unsupported_dtype(t, "F32, F16 or BF16");
      }
    }
    return out;
  }

  /// The Linear module `module` (checkpoint name without ".weight") of shape [rows, cols], in
  /// whichever stored format the checkpoint uses for it.
  linear_weight linear(const std::string& module, int64_t rows, int64_t cols, const std::string& why) const {
    linear_weight w;
    w.rows = rows;
    w.cols = cols;
    if (const auto* packed = ckpt_.find(module + ".weight_packed")) {
      w.name = packed->name;
      w.fmt = linear_weight::format::int4_group;
      if (cfg_.quant.kind != weight_quant::int4_group || cfg_.quant.bits != 4 || !cfg_.quant.symmetric)
        throw error(errc::unsupported,
                    "checkpoint " + ckpt_.path().string() + ": tensor '" + packed->name +
                        "' is pack-quantized but config.json's quantization_config does not describe "
                        "symmetric 4-bit compressed-tensors weights; troupe supports that scheme only");
      if (packed->dtype != safetensors_dtype::i32) unsupported_dtype(*packed, "I32 packed words");
      w.group = cfg_.quant.group_size;
      w.packed_stride = (cols + 7) / 8;
      expect_shape(*packed, {rows, w.packed_stride}, why + ", 8 INT4 values per I32");
      if (const auto* shape = ckpt_.find(module + ".weight_shape")) {
        if (shape->dtype != safetensors_dtype::i32 && shape->dtype != safetensors_dtype::i64)
          unsupported_dtype(*shape, "I32 or I64");
        expect_shape(*shape, {2}, "a weight_shape holds [out, in]");
        int64_t dims[2];
        for (int i = 0; i < 2; ++i) {
          if (shape->dtype == safetensors_dtype::i32) {
            int32_t v;
            std::memcpy(&v, shape->data + 4 * i, 4);
            dims[i] = v;
          } else {
            std::memcpy(&dims[i], shape->data + 8 * i, 8);
          }
        }
        if (dims[0] != rows || dims[1] != cols)
          throw error(errc::parse_error, "checkpoint " + ckpt_.path().string() + ": tensor '" +
                                             shape->name + "' says [" + std::to_string(dims[0]) + ", " +
                                             std::to_string(dims[1]) + "] but config.json (" + why +
                                             ") needs [" + std::to_string(rows) + ", " +
                                             std::to_string(cols) + "]");
      }
      const auto& scale = tensor(module + ".weight_scale");
      w.scale_stride = (cols + w.group - 1) / w.group;
      expect_shape(scale, {rows, w.scale_stride}, why + ", one scale per " + std::to_string(w.group) + " inputs");
      switch (scale.dtype) {
        case safetensors_dtype::bf16: w.scale_type = static_cast<uint8_t>(kc::scale_type::bf16); break;
        case safetensors_dtype::f16: w.scale_type = static_cast<uint8_t>(kc::scale_type::f16); break;
        case safetensors_dtype::f32: w.scale_type = static_cast<uint8_t>(kc::scale_type::f32); break;
        default: unsupported_dtype(scale, "BF16, F16 or F32 scales");
      }
      if (ckpt_.find(module + ".weight_zero_point") != nullptr)
        throw error(errc::unsupported, "checkpoint " + ckpt_.path().string() + ": tensor '" + module +
                                           ".weight_zero_point' means asymmetric INT4; troupe supports "
                                           "symmetric compressed-tensors weights only");
      w.packed = reinterpret_cast<const uint32_t*>(packed->data);
      w.scales = scale.data;
      return w;
    }
    const auto& t = tensor(module + ".weight");
    w.name = t.name;
    expect_shape(t, {rows, cols}, why);
    switch (t.dtype) {
      case safetensors_dtype::f32:
      case safetensors_dtype::f16:
      case safetensors_dtype::bf16: {
        const auto type = t.dtype == safetensors_dtype::f32   ? kc::quant_type::f32
                          : t.dtype == safetensors_dtype::f16 ? kc::quant_type::f16
                                                              : kc::quant_type::bf16;
        w.fmt = linear_weight::format::dense;
        w.dense_type = static_cast<uint32_t>(type);
        w.data = t.data;
        w.row_stride = static_cast<size_t>(cols) * element_size(t.dtype);
        return w;
      }
      case safetensors_dtype::f8_e4m3: {
        w.fmt = linear_weight::format::fp8_block;
        w.data = t.data;
        w.row_stride = static_cast<size_t>(cols);
        w.block_rows = cfg_.quant.kind == weight_quant::fp8_block ? cfg_.quant.block_rows : 128;
        w.block_cols = cfg_.quant.kind == weight_quant::fp8_block ? cfg_.quant.block_cols : 128;
        const auto& s = tensor(module + ".weight_scale_inv");
        if (s.dtype != safetensors_dtype::f32) unsupported_dtype(s, "F32 block scales");
        expect_shape(s, {(rows + w.block_rows - 1) / w.block_rows, (cols + w.block_cols - 1) / w.block_cols},
                     why + ", one scale per " + std::to_string(w.block_rows) + "x" +
                         std::to_string(w.block_cols) + " block");
        w.scale_inv = reinterpret_cast<const float*>(s.data);
        return w;
      }
      default: unsupported_dtype(t, "F32, F16, BF16, F8_E4M3 (block-scaled) or compressed-tensors INT4");
    }
  }

  mlp_weights mlp(const std::string& prefix, int64_t inter, const std::string& why) const {
    const int64_t hidden = cfg_.hidden_size;
    return {linear(prefix + ".gate_proj", inter, hidden, why), linear(prefix + ".up_proj", inter, hidden, why),
            linear(prefix + ".down_proj", hidden, inter, why)};
  }

 private:
  const safetensors_checkpoint& ckpt_;
  const config& cfg_;
};

}  // namespace

std::shared_ptr<const model> model::load(const std::filesystem::path& dir) {
  if (dir.extension() == ".gguf" && !std::filesystem::is_directory(dir)) return load_gguf(dir);
  const auto config_path = dir / "config.json";
  if (!std::filesystem::exists(config_path))
    throw error(errc::not_found, "no config.json in " + dir.string() +
                                     ": a DeepSeek-V3/Kimi checkpoint directory holds config.json and "
                                     "its *.safetensors files");
  std::shared_ptr<model> m(new model());
  m->cfg_ = config::from_file(config_path);
  m->path_ = dir;
  m->storage_ = std::make_unique<storage>();
  m->storage_->checkpoint.emplace(safetensors_checkpoint::open(dir));
  const config& c = m->cfg_;
  const loader ld(*m->storage_->checkpoint, c);
  const std::string p = c.tensor_prefix + "model.";
  const int64_t H = c.num_attention_heads;
  const int64_t hidden = c.hidden_size;

  m->embed_ = ld.linear(p + "embed_tokens", c.vocab_size, hidden, "vocab_size x hidden_size");
  if (m->embed_.fmt != linear_weight::format::dense)
    throw error(errc::unsupported, "checkpoint " + dir.string() + ": tensor '" + m->embed_.name +
                                       "' is quantised; troupe reads embeddings from F32, F16 or BF16");
  m->final_norm_ = ld.vector(p + "norm.weight", hidden, "hidden_size");
  if (c.tie_word_embeddings && m->storage_->checkpoint->find(c.tensor_prefix + "lm_head.weight") == nullptr)
    m->lm_head_ = m->embed_;
  else
    m->lm_head_ = ld.linear(c.tensor_prefix + "lm_head", c.vocab_size, hidden, "vocab_size x hidden_size");

  m->layers_.resize(static_cast<size_t>(c.num_hidden_layers));
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    auto& L = m->layers_[static_cast<size_t>(i)];
    const std::string lp = p + "layers." + std::to_string(i) + ".";
    const std::string a = lp + "self_attn.";
    L.attn_norm = ld.vector(lp + "input_layernorm.weight", hidden, "hidden_size");
    L.ffn_norm = ld.vector(lp + "post_attention_layernorm.weight", hidden, "hidden_size");
    const int64_t qk = c.qk_head_dim();
    if (c.q_lora_rank > 0) {
      L.q_a = ld.linear(a + "q_a_proj", c.q_lora_rank, hidden, "q_lora_rank x hidden_size");
      L.q_a_norm = ld.vector(a + "q_a_layernorm.weight", c.q_lora_rank, "q_lora_rank");
      L.q_b = ld.linear(a + "q_b_proj", H * qk, c.q_lora_rank,
                        "heads·(qk_nope_head_dim + qk_rope_head_dim) x q_lora_rank");
    } else {
      L.q = ld.linear(a + "q_proj", H * qk, hidden, "heads·(qk_nope_head_dim + qk_rope_head_dim) x hidden_size");
    }
    L.kv_a = ld.linear(a + "kv_a_proj_with_mqa", c.kv_lora_rank + c.qk_rope_head_dim, hidden,
                       "(kv_lora_rank + qk_rope_head_dim) x hidden_size");
    L.kv_a_norm = ld.vector(a + "kv_a_layernorm.weight", c.kv_lora_rank, "kv_lora_rank");
    L.kv_b = ld.linear(a + "kv_b_proj", H * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank,
                       "heads·(qk_nope_head_dim + v_head_dim) x kv_lora_rank");
    L.o = ld.linear(a + "o_proj", hidden, H * c.v_head_dim, "hidden_size x heads·v_head_dim");
    {
      // Absorbed-form matrices: per head, rows [0, nope) of kv_b are W_UK, rows [nope, nope + v) W_UV.
      const auto kv_b = dequantize(L.kv_b);
      const int64_t nope = c.qk_nope_head_dim, v = c.v_head_dim, r = c.kv_lora_rank;
      L.w_uk.resize(static_cast<size_t>(H * nope * r));
      L.w_uv.resize(static_cast<size_t>(H * v * r));
      for (int64_t h = 0; h < H; ++h) {
        const float* src = kv_b.data() + h * (nope + v) * r;
        std::memcpy(L.w_uk.data() + h * nope * r, src, static_cast<size_t>(nope * r) * sizeof(float));
        std::memcpy(L.w_uv.data() + h * v * r, src + nope * r, static_cast<size_t>(v * r) * sizeof(float));
      }
    }
    L.moe = c.is_moe_layer(i);
    const std::string f = lp + "mlp";
    if (!L.moe) {
      L.dense = ld.mlp(f, c.intermediate_size, "intermediate_size x hidden_size");
      continue;
    }
    const int64_t E = c.n_routed_experts;
    {
      const auto& gate = ld.tensor(f + ".gate.weight");
      ld.expect_shape(gate, {E, hidden}, "n_routed_experts x hidden_size");
      L.router = ld.to_f32(gate);
    }
    if (m->storage_->checkpoint->find(f + ".gate.e_score_correction_bias") != nullptr)
      L.router_bias = ld.vector(f + ".gate.e_score_correction_bias", E, "n_routed_experts");
    else
      L.router_bias.assign(static_cast<size_t>(E), 0.0f);
    L.experts.reserve(static_cast<size_t>(E));
    for (int64_t e = 0; e < E; ++e)
      L.experts.push_back(ld.mlp(f + ".experts." + std::to_string(e), c.moe_intermediate_size,
                                 "moe_intermediate_size x hidden_size"));
    if (c.n_shared_experts > 0)
      L.shared = ld.mlp(f + ".shared_experts", c.moe_intermediate_size * c.n_shared_experts,
                        "moe_intermediate_size·n_shared_experts x hidden_size");
  }
  return m;
}

void model::embed(int32_t token, float* out) const noexcept {
  const auto* row = static_cast<const std::byte*>(embed_.data) + static_cast<size_t>(token) * embed_.row_stride;
  (void)kc::dequantize_row(static_cast<kc::quant_type>(embed_.dense_type), row, out, cfg_.hidden_size);
}

int64_t model::expert_bytes(int64_t layer) const noexcept {
  int64_t total = 0;
  for (const auto& e : layers_[static_cast<size_t>(layer)].experts)
    total += e.gate.bytes() + e.up.bytes() + e.down.bytes();
  return total;
}

}  // namespace troupe::deepseek
