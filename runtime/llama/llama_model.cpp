// llama-architecture forward pass on the CPU kernels (see troupe/llama/llama_model.hpp).

#include "troupe/llama/llama_model.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <string_view>

#include "cpu/quant.hpp"
#include "llama_weights.hpp"
#include "troupe/error.hpp"
#include "troupe/llama/batch_decoder.hpp"

namespace troupe::llama {

namespace kc = troupe::kernels::cpu;

namespace {

[[noreturn]] void fail(errc code, const gguf_file& f, const std::string& what) {
  throw error(code, f.path().string() + ": " + what);
}

std::string shape_of(const gguf_tensor& t) {
  std::string shape;
  for (auto d : t.shape) shape += (shape.empty() ? "" : ", ") + std::to_string(d);
  return "[" + shape + "]";
}

/// Tensor t (of shape [n, rows] or [n, rows, experts]) as a matrix of `rows` rows of n elements
/// of a type the kernels multiply (the first expert's, for an expert tensor).
matrix as_matrix(const gguf_file& f, const gguf_tensor& t, const std::string& name, int64_t n,
                 int64_t rows, bool needs_dot) {
  matrix m;
  m.type = static_cast<kc::quant_type>(t.type);
  kc::quant_type act{};
  const int64_t rb = kc::row_bytes(m.type, n);
  if (rb <= 0 || (needs_dot && !kc::activation_type(m.type, &act))) {
    fail(errc::unsupported, f,
         "tensor " + name + " has type " + std::string(ggml_type_name(t.type)) +
             ", which the CPU kernels do not multiply (supported: F32, F16, BF16, Q4_0, Q4_1, "
             "Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS)");
  }
  m.rows = rows;
  m.n = n;
  m.row_stride = static_cast<size_t>(rb);
  m.data = t.data;
  return m;
}

matrix load_matrix(const gguf_file& f, const std::string& name, int64_t n, int64_t rows,
                   bool needs_dot = true) {
  const gguf_tensor& t = f.tensor(name);
  if (t.shape.size() != 2 || static_cast<int64_t>(t.shape[0]) != n ||
      static_cast<int64_t>(t.shape[1]) != rows) {
    fail(errc::parse_error, f,
         "tensor " + name + " has shape " + shape_of(t) + ", expected [" + std::to_string(n) +
             ", " + std::to_string(rows) + "]");
  }
  return as_matrix(f, t, name, n, rows, needs_dot);
}

/// The `experts` matrices of a 3-D expert tensor (GGUF shape [n, rows, experts]) as expert 0's
/// matrix; *expert_stride = the bytes from one expert's matrix to the next.
matrix load_experts(const gguf_file& f, const std::string& name, int64_t n, int64_t rows,
                    int64_t experts, size_t* expert_stride) {
  const gguf_tensor& t = f.tensor(name);
  if (t.shape.size() != 3 || static_cast<int64_t>(t.shape[0]) != n ||
      static_cast<int64_t>(t.shape[1]) != rows || static_cast<int64_t>(t.shape[2]) != experts) {
    fail(errc::parse_error, f,
         "tensor " + name + " has shape " + shape_of(t) + ", expected [" + std::to_string(n) +
             ", " + std::to_string(rows) + ", " + std::to_string(experts) + "] (" +
             std::to_string(experts) + " experts of " + std::to_string(rows) + " rows)");
  }
  matrix m = as_matrix(f, t, name, n, rows, true);
  *expert_stride = static_cast<size_t>(rows) * m.row_stride;
  return m;
}

/// A 1-D tensor of n elements (qwen2moe's ffn_gate_inp_shexp) as a matrix of one row.
matrix load_gate_vector(const gguf_file& f, const std::string& name, int64_t n) {
  const gguf_tensor& t = f.tensor(name);
  const bool one_row = t.shape.size() == 1 || (t.shape.size() == 2 && t.shape[1] == 1);
  if (!one_row || static_cast<int64_t>(t.shape[0]) != n) {
    fail(errc::parse_error, f,
         "tensor " + name + " has shape " + shape_of(t) + ", expected [" + std::to_string(n) + "]");
  }
  return as_matrix(f, t, name, n, 1, true);
}

/// Rows [first, first + count) of m.
matrix row_slice(const matrix& m, int64_t first, int64_t count) {
  matrix r = m;
  r.rows = count;
  r.data = static_cast<const std::byte*>(m.data) + static_cast<size_t>(first) * m.row_stride;
  return r;
}

const float* load_vector(const gguf_file& f, const std::string& name, int64_t n) {
  const gguf_tensor& t = f.tensor(name);
  if (t.type != 0 || t.elements() != static_cast<uint64_t>(n)) {
    fail(errc::unsupported, f,
         "tensor " + name + " must be F32 with " + std::to_string(n) + " elements (it is " +
             std::string(ggml_type_name(t.type)) + " with " + std::to_string(t.elements()) + ")");
  }
  return reinterpret_cast<const float*>(t.data);
}

/// Positive per-pair frequency factors [rope_dim / 2] from tensor `name`.
const float* load_freq_factors(const gguf_file& f, const std::string& name, int64_t rope_dim) {
  const float* v = load_vector(f, name, rope_dim / 2);
  for (int64_t i = 0; i < rope_dim / 2; ++i) {
    if (!(v[i] > 0) || !std::isfinite(v[i])) {
      fail(errc::parse_error, f,
           name + "[" + std::to_string(i) + "] is " + std::to_string(v[i]) +
               "; frequency factors must be positive");
    }
  }
  return v;
}

/// The rotary embedding as llama.cpp configures it for a llama file (llama_model::load_hparams
/// and llama_context's defaults): scaling type and factor, YaRN's correction range and magnitude,
/// the per-pair frequency factors of Llama 3.1+ (`rope_freqs.weight`), and LongRoPE's two sets
/// (`rope_factors_long/short.weight`, Phi-3 128k and Phi-3.5), as llama_model::get_rope_factors
/// picks them.
void read_rope(const gguf_file& f, llama_hparams& h, llama_model::impl& w) {
  const auto key = [&](const char* k) { return h.arch + "." + k; };
  kc::rope_params& r = w.rope;
  r.dims = h.rope_dim;
  r.freq_base = h.rope_base;
  float factor = f.get_f32(key("rope.scaling.factor"), f.get_f32(key("rope.scale_linear"), 0));
  h.rope_scaling = f.get_string(key("rope.scaling.type"), factor != 0 ? "linear" : "none");
  if (h.rope_scaling != "none" && h.rope_scaling != "linear" && h.rope_scaling != "yarn" &&
      h.rope_scaling != "longrope") {
    fail(errc::unsupported, f,
         key("rope.scaling.type") + " '" + h.rope_scaling +
             "' is not supported (troupe applies none, linear, yarn and longrope, and "
             "rope_freqs.weight)");
  }
  if (!(factor >= 0) || !std::isfinite(factor)) {
    fail(errc::parse_error, f, key("rope.scaling.factor") + " must be a positive number");
  }
  h.rope_scaling_factor = factor == 0 ? 1 : factor;
  // llama.cpp: 1/factor whenever the file gives a factor (a "none" file's factor is ignored).
  r.freq_scale = h.rope_scaling == "none" ? 1.0f : 1.0f / h.rope_scaling_factor;
  h.rope_original_context = f.get_u32(key("rope.scaling.original_context_length"),
                                      static_cast<uint32_t>(h.context));
  r.attn_factor = 1.0f;
  if (h.rope_scaling == "yarn") {
    r.ext_factor = 1.0f;
    const auto get_mscale = [](float scale, float mscale) {
      return scale <= 1.0f ? 1.0f : 0.1f * mscale * std::log(scale) + 1.0f;
    };
    // mistral3 files may set YaRN's betas and (as transformers' mscale_all_dim) a log multiplier;
    // llama.cpp reads them for that architecture only.
    const bool mistral3 = h.arch == "mistral3";
    const auto setting = [&](const char* k, float fallback) {
      return mistral3 ? f.get_f32(key(k), fallback) : fallback;
    };
    const float beta_fast = setting("rope.scaling.yarn_beta_fast", 32.0f);
    const float beta_slow = setting("rope.scaling.yarn_beta_slow", 1.0f);
    const float log_mul = setting("rope.scaling.yarn_log_multiplier", 0.0f);
    const float yarn_factor = 1.0f / r.freq_scale;
    r.attn_factor = log_mul != 0.0f
                        ? get_mscale(yarn_factor, 1.0f) / get_mscale(yarn_factor, log_mul)
                        : get_mscale(yarn_factor, 1.0f);
    r.attn_factor *= 1.0f / (1.0f + 0.1f * std::log(yarn_factor));  // kernel multiplies it back
    kc::rope_yarn_corr_dims(h.rope_dim, h.rope_original_context, h.rope_base, beta_fast,
                            beta_slow, &r.corr_low, &r.corr_high);
  }
  r.attn_factor *= f.get_f32(key("rope.scaling.attn_factor"), 1.0f);
  if (f.find_tensor("rope_freqs.weight")) {  // llama.cpp prefers these to LongRoPE's
    r.freq_factors = load_freq_factors(f, "rope_freqs.weight", h.rope_dim);
    h.rope_freq_factors = true;
  } else if (f.find_tensor("rope_factors_long.weight") ||
             f.find_tensor("rope_factors_short.weight")) {
    if (!f.find_tensor("rope_factors_long.weight") || !f.find_tensor("rope_factors_short.weight")) {
      fail(errc::parse_error, f,
           "LongRoPE needs both rope_factors_long.weight and rope_factors_short.weight; the "
           "file has one (reconvert the model)");
    }
    // Short factors for a sequence within the original context, long ones beyond it.
    r.freq_factors = load_freq_factors(f, "rope_factors_short.weight", h.rope_dim);
    w.rope_long = r;
    w.rope_long.freq_factors = load_freq_factors(f, "rope_factors_long.weight", h.rope_dim);
    h.rope_long_factors = true;
  }
}

/// Gemma's sliding-window layers as llama_model_gemma2/3::load_arch_hparams read them: a window
/// of attention.sliding_window positions (Gemma 2: 4096 by default), on the layers that
/// attention.sliding_window_pattern names (an array of booleans, or n: every layer but each
/// n-th; Gemma 2 2, Gemma 3 6 by default), rotated with rope.freq_base_swa (Gemma 3: 10000 by
/// default and no frequency scaling; Gemma 2: as the global layers).
void read_sliding_window(const gguf_file& f, llama_hparams& h, llama_model::impl& w) {
  const std::string window = h.arch + ".attention.sliding_window";
  const std::string pattern = h.arch + ".attention.sliding_window_pattern";
  const bool v2 = h.arch == "gemma2";  // Gemma 2: 4096 positions on every other layer
  const bool olmo = h.arch == "olmo2";  // OLMo 3: three layers of four by default
  h.swa_window = f.get_u32(window, v2 ? 4096 : 0);
  if (h.swa_window == 0) return;
  h.sliding_layers.assign(static_cast<size_t>(h.layers), false);
  const gguf_kv* kv = f.find(pattern);
  if (kv != nullptr && kv->type == gguf_value_type::array) {
    const std::vector<int64_t> flags = f.get_int_array(pattern);
    if (static_cast<int64_t>(flags.size()) < h.layers) {
      fail(errc::parse_error, f,
           pattern + " has " + std::to_string(flags.size()) + " entries for " +
               std::to_string(h.layers) + " layers");
    }
    for (int64_t il = 0; il < h.layers; ++il)
      h.sliding_layers[static_cast<size_t>(il)] = flags[static_cast<size_t>(il)] != 0;
  } else {
    const int64_t n = f.get_u32(pattern, v2 ? 2 : olmo ? 4 : 6);
    for (int64_t il = 0; il < h.layers; ++il)
      h.sliding_layers[static_cast<size_t>(il)] = n == 0 || il % n < n - 1;
  }
  // Gemma 2's local layers rotate as its global ones unless the file says otherwise; OLMo 3's
  // with the global base but neither scaling nor YaRN (its olmo2.cpp).
  w.rope_swa = w.rope;
  w.rope_swa.freq_base =
      f.get_f32(h.arch + ".rope.freq_base_swa", v2 || olmo ? h.rope_base : 10000.0f);
  if (!v2) w.rope_swa.freq_scale = 1.0f;
  if (olmo) {
    w.rope_swa.ext_factor = 0.0f;
    w.rope_swa.attn_factor = 1.0f;
  }
}

/// The mixture-of-experts hyperparameters of a llama file (Mixtral's layout: a softmax router
/// over llama.expert_count SwiGLU experts, llama.expert_used_count of them per token).
void read_experts(const gguf_file& f, llama_hparams& h) {
  const std::string count = h.arch + ".expert_count", used = h.arch + ".expert_used_count";
  if (h.arch != "llama" && h.arch != "qwen3moe" && h.arch != "qwen2moe" &&
      h.arch != "granitemoe") {
    fail(errc::unsupported, f,
         "this " + h.arch + " file is a mixture of experts (" + count + " = " +
             std::to_string(f.get_u32(count)) +
             "); troupe runs llama (Mixtral), qwen2moe, qwen3moe, granitemoe and "
             "DeepSeek-V3-style MoE files");
  }
  h.experts = f.get_u32(count);
  if (!f.contains(used)) {
    fail(errc::parse_error, f,
         "a file with " + count + " needs " + used + " (how many experts each token uses)");
  }
  h.experts_used = f.get_u32(used);  // a per-layer array is refused here, by name
  if (h.experts > 512 || h.experts_used < 1 || h.experts_used > h.experts) {
    fail(errc::parse_error, f,
         count + " = " + std::to_string(h.experts) + " and " + used + " = " +
             std::to_string(h.experts_used) +
             ": each token must use between 1 and all of at most 512 experts");
  }
  // Each expert's width: llama files use feed_forward_length; qwen2moe and qwen3moe have their
  // own key (else llama.cpp's fallback, feed_forward_length / expert_used_count). qwen2moe adds a
  // shared expert (feed_forward_length wide unless said) and does not renormalise the weights.
  if (h.arch == "qwen2moe") {
    h.shared_ffn = f.get_u32(h.arch + ".expert_shared_feed_forward_length",
                             static_cast<uint32_t>(h.ffn));
    h.shared_gated = true;
    h.experts_normalized = false;
  }
  if (h.arch == "granitemoe")  // Granite MoE Shared: an ungated shared expert, when given
    h.shared_ffn = f.get_u32(h.arch + ".expert_shared_feed_forward_length", 0);
  if (h.arch == "qwen3moe" || h.arch == "qwen2moe") {
    h.ffn = f.get_u32(h.arch + ".expert_feed_forward_length",
                      static_cast<uint32_t>(h.ffn / h.experts_used));
  }
  if (h.arch == "llama" && f.contains(h.arch + ".expert_shared_feed_forward_length")) {
    fail(errc::unsupported, f,
         "shared experts in a llama file (" + h.arch +
             ".expert_shared_feed_forward_length) are not supported; llama files with routed "
             "experts only (Mixtral) run, and granitemoe and qwen2moe files with shared ones");
  }
}

}  // namespace

llama_model::llama_model(gguf_file file) : file_(std::move(file)), impl_(std::make_unique<impl>()) {}
llama_model::~llama_model() = default;

std::shared_ptr<const llama_model> llama_model::load(const std::filesystem::path& path) {
  std::shared_ptr<llama_model> m(new llama_model(gguf_file::open(path)));
  const gguf_file& f = m->file_;
  llama_hparams& h = m->hparams_;
  h.arch = f.get_string("general.architecture");
  static constexpr std::string_view architectures[] = {
      "llama", "qwen2", "qwen2moe", "qwen3", "qwen3moe", "phi3",     "gemma2",
      "gemma3", "granite", "granitemoe", "smollm3", "olmo2", "ernie4_5", "mistral3"};
  if (std::find(std::begin(architectures), std::end(architectures), h.arch) ==
      std::end(architectures)) {
    fail(errc::unsupported, f,
         "architecture '" + h.arch +
             "' is not supported: troupe's local engine runs GGUF files of the 'llama' "
             "architecture (SmolLM2, Llama 1-3, TinyLlama, Mistral 7B, Mixtral), 'qwen2' and "
             "'qwen2moe' (Qwen2, Qwen2.5, Qwen1.5/2 MoE), 'qwen3' and 'qwen3moe' (Qwen3, Qwen3 "
             "MoE), 'phi3' (Phi-3, Phi-3.5, "
             "Phi-4), 'gemma2' and 'gemma3' (Gemma 2, Gemma 3), 'granite' and 'granitemoe' (IBM "
             "Granite 3), 'smollm3' (SmolLM3), 'olmo2' (OLMo 2, OLMo 3), 'ernie4_5' (ERNIE 4.5 "
             "dense), 'mistral3' (Ministral 3) and 'deepseek2' (DeepSeek-V2/V3, Moonlight, "
             "Kimi K2)");
  }
  // llama.cpp's rope type of the architecture: qwen2, qwen3 and phi3 rotate the two halves of
  // each head; phi3 also scales q before attention (ggml_scale) and attends with scale 1; qwen3
  // RMS-normalises each head of q and k before the rotation.
  // gemma2 and gemma3: embeddings times sqrt(hidden), q scaled before attention, norms after
  // attention and after the feed-forward, GELU, sliding-window layers (read_sliding_window);
  // gemma2 soft-caps the attention scores and the logits, gemma3 normalises q and k as qwen3.
  const bool gemma = h.arch == "gemma2" || h.arch == "gemma3";
  const bool olmo = h.arch == "olmo2";
  h.rope_neox = h.arch == "qwen2" || h.arch == "qwen2moe" || h.arch == "phi3" ||
                h.arch == "qwen3" || h.arch == "qwen3moe" || gemma || olmo;
  h.qk_norm_whole = olmo;
  h.pre_norms = !olmo;
  h.scale_q = h.arch == "phi3" || gemma;
  h.qk_norm = h.arch == "qwen3" || h.arch == "qwen3moe" || h.arch == "gemma3";
  h.gelu = gemma;
  h.post_norms = gemma || olmo;
  const auto key = [&](const char* k) { return h.arch + "." + k; };
  h.hidden = f.get_u32(key("embedding_length"));
  h.layers = f.get_u32(key("block_count"));
  h.ffn = f.get_u32(key("feed_forward_length"));
  h.heads = f.get_u32(key("attention.head_count"));
  h.kv_heads = f.get_u32(key("attention.head_count_kv"), static_cast<uint32_t>(h.heads));
  h.context = f.get_u32(key("context_length"), 2048);
  h.rms_eps = f.get_f32(key("attention.layer_norm_rms_epsilon"), 1e-5f);
  h.rope_base = f.get_f32(key("rope.freq_base"), 10000.0f);
  // The head size is attention.key_length where the file gives it (Qwen3: 128 with a hidden
  // size of 16 heads × 64), else hidden / heads.
  const bool head_size_given = f.contains(key("attention.key_length"));
  if (h.heads <= 0 || h.kv_heads <= 0 || h.heads % h.kv_heads != 0 ||
      (!head_size_given && h.hidden % h.heads != 0)) {
    fail(errc::parse_error, f,
         "inconsistent attention shape: embedding_length " + std::to_string(h.hidden) +
             ", head_count " + std::to_string(h.heads) + ", head_count_kv " +
             std::to_string(h.kv_heads));
  }
  h.head_dim = head_size_given ? f.get_u32(key("attention.key_length")) : h.hidden / h.heads;
  const int64_t value_dim =
      f.get_u32(key("attention.value_length"), static_cast<uint32_t>(h.head_dim));
  if (h.head_dim <= 0 || h.head_dim > 1024 || value_dim != h.head_dim) {
    fail(errc::unsupported, f,
         key("attention.key_length") + " " + std::to_string(h.head_dim) + " and " +
             key("attention.value_length") + " " + std::to_string(value_dim) +
             ": troupe takes heads of one size, at most 1024, for keys and values");
  }
  h.rope_dim = f.get_u32(key("rope.dimension_count"), static_cast<uint32_t>(h.head_dim));
  if (h.rope_dim <= 0 || h.rope_dim > h.head_dim || h.rope_dim % 2 != 0 || h.rope_dim > 1024) {
    fail(errc::parse_error, f,
         key("rope.dimension_count") + " is " + std::to_string(h.rope_dim) +
             "; it must be even and at most the head size " + std::to_string(h.head_dim));
  }
  const bool moe = f.contains(key("expert_count")) && f.get_u32(key("expert_count")) > 0;
  if ((h.arch == "qwen3moe" || h.arch == "qwen2moe") && !moe) {
    fail(errc::parse_error, f, "a " + h.arch + " file needs " + key("expert_count") + " > 0");
  }
  if (moe) read_experts(f, h);
  const gguf_tensor& embd = f.tensor("token_embd.weight");
  if (embd.shape.size() != 2) fail(errc::parse_error, f, "token_embd.weight is not 2-D");
  h.vocab = static_cast<int64_t>(embd.shape[1]);

  impl& w = *m->impl_;
  read_rope(f, h, w);
  // The scale of q before attention (scale_q): 1/sqrt(head size), but llama.cpp takes
  // 1/sqrt(hidden / heads) for the 27B Gemmas (46 layers for Gemma 2, 62 for Gemma 3), as
  // gemma_pytorch does.
  const bool gemma_27b = (h.arch == "gemma2" && h.layers == 46) ||
                         (h.arch == "gemma3" && h.layers == 62);
  h.q_scale = 1.0f / std::sqrt(static_cast<float>(gemma_27b ? h.hidden / h.heads : h.head_dim));
  if (h.arch == "granite" || h.arch == "granitemoe") {  // llama.cpp requires logit_scale
    h.logit_scale = f.get_f32(key("logit_scale"));
    h.residual_scale = f.get_f32(key("residual_scale"), 0.0f);
    h.embed_scale = f.get_f32(key("embedding_scale"), 0.0f);
    h.attention_scale = f.get_f32(key("attention.scale"), 0.0f);
    bool finite = h.logit_scale != 0;
    for (float v : {h.logit_scale, h.residual_scale, h.embed_scale, h.attention_scale})
      finite = finite && std::isfinite(v);
    if (!finite) {
      fail(errc::parse_error, f,
           "Granite's multipliers (" + key("logit_scale") + ", residual_scale, embedding_scale, "
           "attention.scale) must be finite numbers and logit_scale not 0");
    }
  }
  if (h.arch == "smollm3") h.no_rope_step = 4;  // llama.cpp's n_no_rope_layer_step
  if (h.arch == "mistral3") {  // Llama 4's attention temperature, over the original context
    h.attn_temp_scale = f.get_f32(key("attention.temperature_scale"), 0.0f);
    if (!std::isfinite(h.attn_temp_scale) ||
        (h.attn_temp_scale != 0 && h.rope_original_context <= 0)) {
      fail(errc::parse_error, f,
           key("attention.temperature_scale") + " needs a finite value and an original context "
           "length (" + key("rope.scaling.original_context_length") + ")");
    }
  }
  if (olmo) read_sliding_window(f, h, w);  // OLMo 3
  if (gemma) {
    h.embed_scale = std::sqrt(static_cast<float>(h.hidden));
    // llama.cpp's defaults: Gemma 2 caps at 50 (scores) and 30 (logits), Gemma 3 not at all.
    const bool v2 = h.arch == "gemma2";
    h.final_softcap = f.get_f32(key("final_logit_softcapping"), v2 ? 30.0f : 0.0f);
    h.attn_softcap = v2 ? f.get_f32(key("attn_logit_softcapping"), 50.0f) : 0.0f;
    for (const auto& [name, cap] : {std::pair{"final_logit_softcapping", h.final_softcap},
                                    std::pair{"attn_logit_softcapping", h.attn_softcap}}) {
      if (!(cap >= 0) || !std::isfinite(cap))
        fail(errc::parse_error, f, key(name) + " must be a positive number");
    }
    read_sliding_window(f, h, w);
  }
  w.token_embd = load_matrix(f, "token_embd.weight", h.hidden, h.vocab, false);
  w.output = f.find_tensor("output.weight") ? load_matrix(f, "output.weight", h.hidden, h.vocab)
                                            : load_matrix(f, "token_embd.weight", h.hidden, h.vocab);
  w.output_norm = load_vector(f, "output_norm.weight", h.hidden);
  if (f.find_tensor("output.bias")) {
    h.biases = true;
    w.output_bias = load_vector(f, "output.bias", h.vocab);
  }
  const int64_t q_dim = h.heads * h.head_dim;
  const int64_t kv_dim = h.kv_heads * h.head_dim;
  auto bias = [&](const std::string& name, int64_t n) -> const float* {
    if (!f.find_tensor(name)) return nullptr;
    h.biases = true;
    return load_vector(f, name, n);
  };
  w.layers.resize(static_cast<size_t>(h.layers));
  for (int64_t i = 0; i < h.layers; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    layer_weights& l = w.layers[static_cast<size_t>(i)];
    if (h.pre_norms) l.attn_norm = load_vector(f, p + "attn_norm.weight", h.hidden);
    if (f.find_tensor(p + "attn_qkv.weight")) {
      // Fused q/k/v: rows [0, q_dim) are q, then k, then v; quantised rows are independent.
      const matrix qkv = load_matrix(f, p + "attn_qkv.weight", h.hidden, q_dim + 2 * kv_dim);
      l.wq = row_slice(qkv, 0, q_dim);
      l.wk = row_slice(qkv, q_dim, kv_dim);
      l.wv = row_slice(qkv, q_dim + kv_dim, kv_dim);
      if (const float* b = bias(p + "attn_qkv.bias", q_dim + 2 * kv_dim)) {
        l.bq = b;
        l.bk = b + q_dim;
        l.bv = b + q_dim + kv_dim;
      }
    } else {
      l.wq = load_matrix(f, p + "attn_q.weight", h.hidden, q_dim);
      l.wk = load_matrix(f, p + "attn_k.weight", h.hidden, kv_dim);
      l.wv = load_matrix(f, p + "attn_v.weight", h.hidden, kv_dim);
    }
    if (l.bq == nullptr) {
      l.bq = bias(p + "attn_q.bias", q_dim);
      l.bk = bias(p + "attn_k.bias", kv_dim);
      l.bv = bias(p + "attn_v.bias", kv_dim);
    }
    l.wo = load_matrix(f, p + "attn_output.weight", q_dim, h.hidden);
    if (h.qk_norm) {
      l.q_norm = load_vector(f, p + "attn_q_norm.weight", h.head_dim);
      l.k_norm = load_vector(f, p + "attn_k_norm.weight", h.head_dim);
    }
    if (h.qk_norm_whole) {
      l.q_norm = load_vector(f, p + "attn_q_norm.weight", q_dim);
      l.k_norm = load_vector(f, p + "attn_k_norm.weight", kv_dim);
    }
    l.bo = bias(p + "attn_output.bias", h.hidden);
    if (h.pre_norms) l.ffn_norm = load_vector(f, p + "ffn_norm.weight", h.hidden);
    if (h.post_norms) {
      l.attn_post_norm = load_vector(f, p + "post_attention_norm.weight", h.hidden);
      l.ffn_post_norm = load_vector(f, p + "post_ffw_norm.weight", h.hidden);
    }
    if (h.experts > 0) {
      l.router = load_matrix(f, p + "ffn_gate_inp.weight", h.hidden, h.experts);
      l.gate_exps = load_experts(f, p + "ffn_gate_exps.weight", h.hidden, h.ffn, h.experts,
                                 &l.gate_exps_stride);
      l.up_exps = load_experts(f, p + "ffn_up_exps.weight", h.hidden, h.ffn, h.experts,
                               &l.up_exps_stride);
      l.down_exps = load_experts(f, p + "ffn_down_exps.weight", h.ffn, h.hidden, h.experts,
                                 &l.down_exps_stride);
      if (h.shared_ffn > 0) {
        if (h.shared_gated)
          l.shexp_gate_inp = load_gate_vector(f, p + "ffn_gate_inp_shexp.weight", h.hidden);
        l.shexp_gate = load_matrix(f, p + "ffn_gate_shexp.weight", h.hidden, h.shared_ffn);
        l.shexp_up = load_matrix(f, p + "ffn_up_shexp.weight", h.hidden, h.shared_ffn);
        l.shexp_down = load_matrix(f, p + "ffn_down_shexp.weight", h.shared_ffn, h.hidden);
      }
      continue;
    }
    if (f.find_tensor(p + "ffn_gate.weight")) {
      l.gate = load_matrix(f, p + "ffn_gate.weight", h.hidden, h.ffn);
      l.up = load_matrix(f, p + "ffn_up.weight", h.hidden, h.ffn);
    } else {  // phi3: gate and up fused in ffn_up, gate rows first (ggml_swiglu's halves)
      const matrix gate_up = load_matrix(f, p + "ffn_up.weight", h.hidden, 2 * h.ffn);
      l.gate = row_slice(gate_up, 0, h.ffn);
      l.up = row_slice(gate_up, h.ffn, h.ffn);
    }
    l.down = load_matrix(f, p + "ffn_down.weight", h.ffn, h.hidden);
    l.b_gate = bias(p + "ffn_gate.bias", h.ffn);
    l.b_up = bias(p + "ffn_up.bias", h.ffn);
    l.b_down = bias(p + "ffn_down.bias", h.hidden);
  }
  return m;
}

// A session is a batch decoder with one sequence.
struct llama_session::state {
  state(std::shared_ptr<const llama_model> m, int threads, kv_cache_type kv)
      : decoder(std::move(m), threads, kv) {}
  batch_decoder decoder;
  uint32_t seq = 0;
};

llama_session::llama_session(std::shared_ptr<const llama_model> model, int64_t context,
                             int threads, kv_cache_type kv)
    : model_(std::move(model)) {
  if (!model_) throw error(errc::invalid_argument, "llama_session: no model");
  if (context <= 0) throw error(errc::invalid_argument, "llama_session: context must be > 0");
  state_ = std::make_unique<state>(model_, threads, kv);
  state_->seq = state_->decoder.open(context);
}

llama_session::~llama_session() = default;
int64_t llama_session::position() const noexcept { return state_->decoder.position(state_->seq); }
int64_t llama_session::context() const noexcept { return state_->decoder.capacity(state_->seq); }
void llama_session::reset() noexcept { state_->decoder.reset(state_->seq); }

std::span<const float> llama_session::decode(std::span<const int32_t> tokens) {
  if (tokens.empty()) throw error(errc::invalid_argument, "llama_session::decode: empty batch");
  const batch_decoder::chunk c{state_->seq, tokens};
  return state_->decoder.decode(std::span<const batch_decoder::chunk>(&c, 1));
}

}  // namespace troupe::llama
