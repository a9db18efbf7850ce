// config.json of DeepSeek-V3-architecture models. Field names and defaults: transformers
// DeepseekV3Config / DeepseekV2Config; quantization_config: compressed-tensors (Kimi K2-Thinking,
// K2.5) and fp8 block quantization (DeepSeek-V3, Kimi K2-Instruct); YaRN: deepseek-ai/DeepSeek-V3
// inference/model.py precompute_freqs_cis and MLA.__init__.

#include "troupe/deepseek/config.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iterator>
#include <numbers>
#include <regex>
#include <set>

#include "troupe/error.hpp"
#include "troupe/json.hpp"

namespace troupe::deepseek {

namespace {

constexpr const char* supported_model_types[] = {"deepseek_v3", "kimi_k2", "deepseek_v2"};

/// Typed access to one JSON object of the config; every error names the file and the field's
/// path (e.g. "text_config.hidden_size"). A null member counts as absent, as in transformers.
class fields {
 public:
  fields(const json::value& obj, std::string_view where, std::string path)
      : obj_(&obj), where_(where), path_(std::move(path)) {}

  std::string name(std::string_view key) const { return "\"" + path_ + std::string(key) + "\""; }

  [[noreturn]] void fail(std::string_view key, const std::string& what,
                         errc code = errc::parse_error) const {
    throw error(code, std::string(where_) + ": " + name(key) + " " + what);
  }

  const json::value* get(std::string_view key) const {
    const json::value* v = obj_->find(key);
    return v == nullptr || v->is_null() ? nullptr : v;
  }
  bool has(std::string_view key) const { return get(key) != nullptr; }

  const json::value& require(std::string_view key) const {
    if (const json::value* v = get(key)) return *v;
    fail(key, "is missing; config.json must set it (is this a DeepSeek-V3-architecture model?)");
  }

  int64_t to_int(std::string_view key, const json::value& v) const {
    if (v.is_int()) return v.as_int();
    if (v.is_number()) {
      const double d = v.as_number();
      if (std::nearbyint(d) == d && std::abs(d) < 9.2e18) return static_cast<int64_t>(d);
    }
    fail(key, std::string("is ") + v.type_name() + " " + json::dump(v) + ", expected an integer");
  }
  int64_t req_int(std::string_view key) const { return to_int(key, require(key)); }
  int64_t int_or(std::string_view key, int64_t fallback) const {
    const json::value* v = get(key);
    return v ? to_int(key, *v) : fallback;
  }

  double to_num(std::string_view key, const json::value& v) const {
    if (v.is_number()) return v.as_number();
    fail(key, std::string("is ") + v.type_name() + " " + json::dump(v) + ", expected a number");
  }
  double req_num(std::string_view key) const { return to_num(key, require(key)); }
  double num_or(std::string_view key, double fallback) const {
    const json::value* v = get(key);
    return v ? to_num(key, *v) : fallback;
  }

  bool bool_or(std::string_view key, bool fallback) const {
    const json::value* v = get(key);
    if (v == nullptr) return fallback;
    if (!v->is_bool())
      fail(key,
           std::string("is ") + v->type_name() + " " + json::dump(*v) + ", expected true or false");
    return v->as_bool();
  }

  std::string to_string(std::string_view key, const json::value& v) const {
    if (!v.is_string())
      fail(key, std::string("is ") + v.type_name() + " " + json::dump(v) + ", expected a string");
    return v.as_string();
  }
  std::string req_string(std::string_view key) const { return to_string(key, require(key)); }
  std::string string_or(std::string_view key, std::string fallback) const {
    const json::value* v = get(key);
    return v ? to_string(key, *v) : fallback;
  }

  /// An object member as fields of its own, or nullopt when absent or null.
  std::optional<fields> object(std::string_view key) const {
    const json::value* v = get(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_object()) fail(key, std::string("is ") + v->type_name() + ", expected an object");
    return fields(*v, where_, path_ + std::string(key) + ".");
  }

  std::vector<std::string> strings_or_empty(std::string_view key) const {
    std::vector<std::string> out;
    const json::value* v = get(key);
    if (v == nullptr) return out;
    if (!v->is_array())
      fail(key, std::string("is ") + v->type_name() + ", expected an array of strings");
    for (const json::value& e : v->as_array()) {
      if (!e.is_string())
        fail(key,
             std::string("holds ") + e.type_name() + " " + json::dump(e) + ", expected strings");
      out.push_back(e.as_string());
    }
    return out;
  }

  /// A token id given as an integer or as a list of integers (the first counts); -1 when absent.
  int64_t token_id(std::string_view key) const {
    const json::value* v = get(key);
    if (v == nullptr) return -1;
    if (v->is_array()) {
      if (v->as_array().empty()) return -1;
      return to_int(key, v->as_array().front());
    }
    return to_int(key, *v);
  }

  const json::value& raw() const { return *obj_; }

 private:
  const json::value* obj_;
  std::string_view where_;
  std::string path_;
};

quantization read_fp8(const fields& q) {
  quantization out;
  out.kind = weight_quant::fp8_block;
  out.bits = 8;
  out.group_size = 0;
  if (const std::string fmt = q.string_or("fmt", "e4m3"); fmt != "e4m3") {
    q.fail("fmt", "is \"" + fmt + "\"; troupe runs fp8 checkpoints in e4m3 only",
           errc::unsupported);
  }
  if (const std::string s = q.string_or("activation_scheme", "dynamic"); s != "dynamic") {
    q.fail("activation_scheme",
           "is \"" + s + "\"; troupe runs fp8 weights with dynamic activations only",
           errc::unsupported);
  }
  const json::value* block = q.get("weight_block_size");
  if (block == nullptr) {
    q.fail("weight_block_size",
           "is missing: per-tensor fp8 scales are not supported, only block scales",
           errc::unsupported);
  }
  if (!block->is_array() || block->as_array().size() != 2) {
    q.fail("weight_block_size", "is " + json::dump(*block) + ", expected [rows, cols]");
  }
  out.block_rows = q.to_int("weight_block_size", block->as_array()[0]);
  out.block_cols = q.to_int("weight_block_size", block->as_array()[1]);
  if (out.block_rows <= 0 || out.block_cols <= 0) {
    q.fail("weight_block_size", "is " + json::dump(*block) + ", expected two positive sizes");
  }
  for (const char* key : {"ignored_layers", "modules_to_not_convert"}) {
    for (std::string& m : q.strings_or_empty(key)) out.ignore.push_back(std::move(m));
  }
  return out;
}

quantization read_compressed_tensors(const fields& q) {
  quantization out;
  out.kind = weight_quant::int4_group;
  const auto unsupported = [](const fields& at, std::string_view key, const std::string& what) {
    at.fail(key,
            what +
                "; troupe runs compressed-tensors checkpoints that are symmetric int4 "
                "pack-quantized with group scales (W4A16, as Kimi K2-Thinking and K2.5)",
            errc::unsupported);
  };
  if (const std::string f = q.string_or("format", "pack-quantized"); f != "pack-quantized") {
    unsupported(q, "format", "is \"" + f + "\"");
  }
  if (const std::string s = q.string_or("quantization_status", "compressed"); s != "compressed") {
    unsupported(q, "quantization_status", "is \"" + s + "\", so the weights are not packed");
  }
  const std::optional<fields> groups = q.object("config_groups");
  if (!groups)
    q.fail("config_groups", "is missing; a compressed-tensors config must describe its scheme");
  const json::object& members = groups->raw().as_object();
  if (members.size() != 1) {
    unsupported(q, "config_groups", "has " + std::to_string(members.size()) + " groups, not one");
  }
  const std::string& group_name = members.front().first;
  const std::optional<fields> group = groups->object(group_name);
  if (!group) groups->fail(group_name, "is null, expected the group's scheme");
  const fields& g = *group;
  const std::vector<std::string> targets = g.strings_or_empty("targets");
  if (std::find(targets.begin(), targets.end(), "Linear") == targets.end()) {
    unsupported(g, "targets", "does not target \"Linear\"");
  }
  if (const std::string f = g.string_or("format", "pack-quantized"); f != "pack-quantized") {
    unsupported(g, "format", "is \"" + f + "\"");
  }
  if (g.has("input_activations"))
    unsupported(g, "input_activations", "is set (activation quantization)");
  const std::optional<fields> w = g.object("weights");
  if (!w) g.fail("weights", "is missing; the group must describe its weight quantization");
  out.bits = static_cast<int>(w->req_int("num_bits"));
  if (out.bits != 4) unsupported(*w, "num_bits", "is " + std::to_string(out.bits));
  if (const std::string t = w->string_or("type", "int"); t != "int")
    unsupported(*w, "type", "is \"" + t + "\"");
  out.symmetric = w->bool_or("symmetric", true);
  if (!out.symmetric) unsupported(*w, "symmetric", "is false (zero points)");
  if (const std::string s = w->req_string("strategy"); s != "group") {
    unsupported(*w, "strategy", "is \"" + s + "\", not \"group\"");
  }
  out.group_size = w->req_int("group_size");
  if (out.group_size <= 0)
    w->fail("group_size", "is " + std::to_string(out.group_size) + ", expected a positive size");
  if (w->bool_or("dynamic", false)) unsupported(*w, "dynamic", "is true");
  if (w->has("actorder")) unsupported(*w, "actorder", "is set (activation reordering)");
  out.ignore = q.strings_or_empty("ignore");
  for (const std::string& entry : out.ignore) {
    if (!entry.starts_with("re:")) continue;
    try {
      std::regex(entry.substr(3), std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      q.fail("ignore", "holds \"" + entry + "\", whose pattern is not a valid regex: " + e.what());
    }
  }
  return out;
}

quantization read_quantization(const fields& q) {
  const std::string method = q.req_string("quant_method");
  if (method == "fp8") return read_fp8(q);
  if (method == "compressed-tensors") return read_compressed_tensors(q);
  q.fail("quant_method",
         "is \"" + method +
             "\"; troupe reads \"compressed-tensors\" (int4 pack-quantized) and "
             "\"fp8\" (block-scaled) checkpoints, or unquantized ones",
         errc::unsupported);
}

std::optional<yarn_scaling> read_rope_scaling(const fields& text, double* rope_theta) {
  std::optional<fields> rope = text.object("rope_scaling");
  if (!rope) rope = text.object("rope_parameters");  // transformers >= 5
  if (!rope) return std::nullopt;
  if (!text.has("rope_theta") && rope->has("rope_theta")) *rope_theta = rope->req_num("rope_theta");
  const std::string type =
      rope->has("type") ? rope->req_string("type") : rope->string_or("rope_type", "default");
  if (type == "default") return std::nullopt;
  if (type != "yarn" && type != "deepseek_yarn") {
    rope->fail(rope->has("type") ? "type" : "rope_type",
               "is \"" + type + "\"; DeepSeek-V3 models use \"yarn\" (or no rope scaling)",
               errc::unsupported);
  }
  yarn_scaling y;
  y.factor = rope->req_num("factor");
  y.beta_fast = rope->num_or("beta_fast", y.beta_fast);
  y.beta_slow = rope->num_or("beta_slow", y.beta_slow);
  y.mscale = rope->num_or("mscale", y.mscale);
  y.mscale_all_dim = rope->num_or("mscale_all_dim", y.mscale_all_dim);
  y.original_max_position_embeddings =
      rope->int_or("original_max_position_embeddings", y.original_max_position_embeddings);
  if (!(y.factor >= 1))
    rope->fail("factor", "is " + json::dump(y.factor) + ", expected at least 1");
  if (!(y.beta_slow > 0) || !(y.beta_fast >= y.beta_slow)) {
    rope->fail("beta_fast", "and beta_slow are " + json::dump(y.beta_fast) + " and " +
                                json::dump(y.beta_slow) + ", expected beta_fast >= beta_slow > 0");
  }
  if (y.original_max_position_embeddings <= 0) {
    rope->fail("original_max_position_embeddings",
               "is " + std::to_string(y.original_max_position_embeddings) +
                   ", expected a positive length");
  }
  return y;
}

/// d * ln(orig / (r * 2 pi)) / (2 ln theta): the rotation dim whose wavelength makes r turns over
/// the original context (DeepSeek's find_correction_dim).
double correction_dim(double rotations, int64_t dim, double theta, int64_t original) {
  return static_cast<double>(dim) *
         std::log(static_cast<double>(original) / (rotations * 2 * std::numbers::pi)) /
         (2 * std::log(theta));
}

}  // namespace

const char* to_string(weight_quant q) noexcept {
  switch (q) {
    case weight_quant::none:
      return "none";
    case weight_quant::int4_group:
      return "int4_group";
    case weight_quant::fp8_block:
      return "fp8_block";
  }
  return "unknown";
}

namespace {

/// One "re:" ignore entry, compiled once. Patterns that are a literal with ".*" around it (as
/// Kimi's ".*self_attn.*") are matched as substrings: std::regex takes ~30 us per search.
struct ignore_pattern {
  bool literal = false;
  bool anywhere = false;  // literal: the pattern began with ".*" (else it must start the name)
  std::string text;
  std::optional<std::regex> re;
};

ignore_pattern compile_pattern(const std::string& entry) {
  ignore_pattern p;
  std::string_view body = std::string_view(entry).substr(3);
  std::string_view core = body;
  p.anywhere = core.starts_with(".*");
  if (p.anywhere) core.remove_prefix(2);
  if (core.ends_with(".*")) core.remove_suffix(2);
  std::string unescaped;
  bool plain = true;
  for (size_t i = 0; i < core.size() && plain; ++i) {
    const char ch = core[i];
    if (ch == '\\' && i + 1 < core.size() && core[i + 1] == '.') {
      unescaped += '.';
      ++i;
    } else if (std::string_view("\\^$.|?*+()[]{}").find(ch) != std::string_view::npos) {
      plain = false;
    } else {
      unescaped += ch;
    }
  }
  if (plain) {
    p.literal = true;
    p.text = std::move(unescaped);
    return p;
  }
  try {
    p.re.emplace(std::string(body), std::regex::ECMAScript | std::regex::optimize);
  } catch (const std::regex_error& e) {
    throw error(errc::parse_error,
                "quantization ignore entry \"" + entry + "\" is not a valid regex: " + e.what());
  }
  return p;
}

/// The compiled "re:" entries of `ignore` (nullopt for plain names), cached per thread for the
/// last ignore list seen, since a loader asks about every module of a model in turn.
const std::vector<std::optional<ignore_pattern>>& compiled_ignore(const std::vector<std::string>& ignore) {
  thread_local std::vector<std::string> source;
  thread_local std::vector<std::optional<ignore_pattern>> patterns;
  if (source != ignore || patterns.size() != ignore.size()) {
    std::vector<std::optional<ignore_pattern>> fresh;
    for (const std::string& entry : ignore) {
      fresh.push_back(entry.starts_with("re:") ? std::optional(compile_pattern(entry)) : std::nullopt);
    }
    patterns = std::move(fresh);
    source = ignore;
  }
  return patterns;
}

}  // namespace

bool quantization::applies_to(std::string_view module) const {
  if (kind == weight_quant::none) return false;
  const std::string_view leaf =
      module.substr(module.rfind('.') == std::string_view::npos ? 0 : module.rfind('.') + 1);
  const bool linear =
      leaf == "lm_head" || leaf.ends_with("_proj") || leaf.ends_with("_proj_with_mqa");
  if (!linear) return false;
  const std::vector<std::optional<ignore_pattern>>& patterns = compiled_ignore(ignore);
  for (size_t i = 0; i < ignore.size(); ++i) {
    const std::string& entry = ignore[i];
    if (const std::optional<ignore_pattern>& p = patterns[i]) {
      const bool hit =
          p->literal ? (p->anywhere ? module.find(p->text) != std::string_view::npos
                                    : module.starts_with(p->text))
                     : std::regex_search(module.begin(), module.end(), *p->re,
                                         std::regex_constants::match_continuous);
      if (hit) return false;
    } else if (module == entry || (module.size() > entry.size() && module.ends_with(entry) &&
                                   module[module.size() - entry.size() - 1] == '.')) {
      return false;
    }
  }
  return true;
}

config config::from_json(std::string_view json_text, std::string_view where) {
  const json::value root = json::parse(json_text, where);
  if (!root.is_object()) {
    throw error(errc::parse_error, std::string(where) + ": config.json is " + root.type_name() +
                                       ", expected an object");
  }
  const fields top(root, where, "");
  config c;
  const std::string top_type = top.req_string("model_type");
  std::optional<fields> wrapped = top.object("text_config");
  if (wrapped && top_type != "kimi_k25") {
    top.fail("model_type",
             "is \"" + top_type +
                 "\" with a text_config; troupe reads the kimi_k25 wrapper (Kimi K2.5) "
                 "and plain DeepSeek-V3 configs",
             errc::unsupported);
  }
  if (!wrapped && top_type == "kimi_k25")
    top.fail("text_config", "is missing; a kimi_k25 config holds its text model there");
  const fields& text = wrapped ? *wrapped : top;
  if (wrapped) c.tensor_prefix = "language_model.";
  c.model_type = wrapped ? text.string_or("model_type", "deepseek_v3") : top_type;
  if (std::find(std::begin(supported_model_types), std::end(supported_model_types), c.model_type) ==
      std::end(supported_model_types)) {
    text.fail("model_type",
              "is \"" + c.model_type +
                  "\"; this reader is for DeepSeek-V3-architecture models (deepseek_v3, "
                  "kimi_k2, deepseek_v2)",
              errc::unsupported);
  }
  const bool v2 = c.model_type == "deepseek_v2";

  c.vocab_size = text.req_int("vocab_size");
  c.hidden_size = text.req_int("hidden_size");
  c.intermediate_size = text.req_int("intermediate_size");
  c.moe_intermediate_size = text.req_int("moe_intermediate_size");
  c.num_hidden_layers = text.req_int("num_hidden_layers");
  c.num_attention_heads = text.req_int("num_attention_heads");
  c.num_key_value_heads = text.int_or("num_key_value_heads", c.num_attention_heads);
  c.q_lora_rank = text.int_or("q_lora_rank", 0);  // null in Moonlight: q_proj directly
  c.kv_lora_rank = text.req_int("kv_lora_rank");
  c.qk_nope_head_dim = text.req_int("qk_nope_head_dim");
  c.qk_rope_head_dim = text.req_int("qk_rope_head_dim");
  c.v_head_dim = text.req_int("v_head_dim");
  c.n_routed_experts = text.req_int("n_routed_experts");
  c.n_shared_experts = text.int_or("n_shared_experts", 0);
  c.num_experts_per_tok = text.req_int("num_experts_per_tok");
  c.n_group = text.int_or("n_group", 1);
  c.topk_group = text.int_or("topk_group", 1);
  c.first_k_dense_replace = text.int_or("first_k_dense_replace", 0);
  c.moe_layer_freq = text.int_or("moe_layer_freq", 1);
  c.max_position_embeddings = text.req_int("max_position_embeddings");
  c.rms_norm_eps = text.num_or("rms_norm_eps", 1e-6);
  c.rope_theta = text.num_or("rope_theta", 10000.0);
  c.routed_scaling_factor = text.num_or("routed_scaling_factor", 1.0);
  c.norm_topk_prob = text.bool_or("norm_topk_prob", !v2);
  c.tie_word_embeddings = text.has("tie_word_embeddings")
                              ? text.bool_or("tie_word_embeddings", false)
                              : top.bool_or("tie_word_embeddings", false);
  c.scoring_func = text.string_or("scoring_func", v2 ? "softmax" : "sigmoid");
  c.topk_method = text.string_or("topk_method", v2 ? "greedy" : "noaux_tc");
  c.bos_token_id =
      text.has("bos_token_id") ? text.token_id("bos_token_id") : top.token_id("bos_token_id");
  c.eos_token_id =
      text.has("eos_token_id") ? text.token_id("eos_token_id") : top.token_id("eos_token_id");
  c.yarn = read_rope_scaling(text, &c.rope_theta);
  if (const std::optional<fields> q = text.object("quantization_config")) {
    c.quant = read_quantization(*q);
  } else if (const std::optional<fields> tq = top.object("quantization_config")) {
    c.quant = read_quantization(*tq);
  }

  // What the engine cannot run.
  if (const std::string act = text.string_or("hidden_act", "silu"); act != "silu") {
    text.fail("hidden_act", "is \"" + act + "\"; DeepSeek-V3 MLPs use silu", errc::unsupported);
  }
  if (text.bool_or("attention_bias", false)) {
    text.fail("attention_bias", "is true; DeepSeek-V3 attention projections have no biases",
              errc::unsupported);
  }

  // Consistency.
  const auto positive = [&](std::string_view key, int64_t v) {
    if (v <= 0) text.fail(key, "is " + std::to_string(v) + ", expected a positive number");
  };
  positive("vocab_size", c.vocab_size);
  positive("hidden_size", c.hidden_size);
  positive("intermediate_size", c.intermediate_size);
  positive("moe_intermediate_size", c.moe_intermediate_size);
  positive("num_hidden_layers", c.num_hidden_layers);
  positive("num_attention_heads", c.num_attention_heads);
  positive("kv_lora_rank", c.kv_lora_rank);
  positive("qk_nope_head_dim", c.qk_nope_head_dim);
  positive("qk_rope_head_dim", c.qk_rope_head_dim);
  positive("v_head_dim", c.v_head_dim);
  positive("n_routed_experts", c.n_routed_experts);
  positive("num_experts_per_tok", c.num_experts_per_tok);
  positive("n_group", c.n_group);
  positive("topk_group", c.topk_group);
  positive("moe_layer_freq", c.moe_layer_freq);
  positive("max_position_embeddings", c.max_position_embeddings);
  if (c.q_lora_rank < 0)
    text.fail("q_lora_rank", "is " + std::to_string(c.q_lora_rank) + ", expected a rank or null");
  if (c.n_shared_experts < 0) text.fail("n_shared_experts", "is negative");
  if (c.first_k_dense_replace < 0 || c.first_k_dense_replace > c.num_hidden_layers) {
    text.fail("first_k_dense_replace", "is " + std::to_string(c.first_k_dense_replace) +
                                           ", expected 0.." + std::to_string(c.num_hidden_layers) +
                                           " (num_hidden_layers)");
  }
  if (c.qk_rope_head_dim % 2 != 0) {
    text.fail("qk_rope_head_dim", "is " + std::to_string(c.qk_rope_head_dim) +
                                      ", but rope rotates pairs: it must be even");
  }
  if (c.num_key_value_heads != c.num_attention_heads) {
    text.fail("num_key_value_heads",
              "is " + std::to_string(c.num_key_value_heads) + " but num_attention_heads is " +
                  std::to_string(c.num_attention_heads) +
                  "; MLA has one latent per token for all heads, so they must be equal");
  }
  if (c.num_experts_per_tok > c.n_routed_experts) {
    text.fail("num_experts_per_tok", "is " + std::to_string(c.num_experts_per_tok) +
                                         ", more than the " + std::to_string(c.n_routed_experts) +
                                         " n_routed_experts");
  }
  if (c.n_routed_experts % c.n_group != 0) {
    text.fail("n_group", "is " + std::to_string(c.n_group) + ", which does not divide the " +
                             std::to_string(c.n_routed_experts) + " n_routed_experts");
  }
  if (c.topk_group > c.n_group) {
    text.fail("topk_group", "is " + std::to_string(c.topk_group) + ", more than the " +
                                std::to_string(c.n_group) + " expert groups (n_group)");
  }
  if (c.num_experts_per_tok > c.topk_group * (c.n_routed_experts / c.n_group)) {
    text.fail("num_experts_per_tok",
              "is " + std::to_string(c.num_experts_per_tok) + ", more than the " +
                  std::to_string(c.topk_group * (c.n_routed_experts / c.n_group)) +
                  " experts in the topk_group groups that routing keeps");
  }
  if (c.scoring_func != "sigmoid" && c.scoring_func != "softmax") {
    text.fail("scoring_func", "is \"" + c.scoring_func + "\", expected \"sigmoid\" or \"softmax\"");
  }
  if (c.topk_method != "noaux_tc" && c.topk_method != "greedy" &&
      c.topk_method != "group_limited_greedy") {
    text.fail("topk_method",
              "is \"" + c.topk_method +
                  "\", expected \"noaux_tc\", \"greedy\" or \"group_limited_greedy\"");
  }
  if (!(c.rms_norm_eps > 0))
    text.fail("rms_norm_eps", "is " + json::dump(c.rms_norm_eps) + ", expected a positive number");
  if (!(c.rope_theta > 1))
    text.fail("rope_theta", "is " + json::dump(c.rope_theta) + ", expected a base above 1");
  if (!(c.routed_scaling_factor > 0)) {
    text.fail("routed_scaling_factor",
              "is " + json::dump(c.routed_scaling_factor) + ", expected a positive number");
  }
  return c;
}

config config::from_file(const std::filesystem::path& config_json) {
  std::ifstream in(config_json, std::ios::binary);
  if (!in) {
    std::error_code ec;
    if (!std::filesystem::exists(config_json, ec)) {
      throw error(errc::not_found,
                  config_json.string() + ": no such file; a model directory holds its config.json");
    }
    throw error(errc::io_error, config_json.string() + ": cannot read");
  }
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw error(errc::io_error, config_json.string() + ": cannot read");
  return from_json(text, config_json.string());
}

bool config::is_moe_layer(int64_t layer) const noexcept {
  return layer >= first_k_dense_replace && moe_layer_freq > 0 && layer % moe_layer_freq == 0;
}

double config::softmax_scale() const noexcept {
  double scale = 1.0 / std::sqrt(static_cast<double>(qk_head_dim()));
  if (yarn && yarn->factor > 1) {
    const double mscale = 0.1 * yarn->mscale_all_dim * std::log(yarn->factor) + 1.0;
    scale *= mscale * mscale;
  }
  return scale;
}

std::pair<double, double> config::yarn_correction_range() const noexcept {
  if (!yarn || !(yarn->factor > 1)) return {0, 0};
  const int64_t d = qk_rope_head_dim;
  const int64_t orig = yarn->original_max_position_embeddings;
  const double low = std::floor(correction_dim(yarn->beta_fast, d, rope_theta, orig));
  const double high = std::ceil(correction_dim(yarn->beta_slow, d, rope_theta, orig));
  return {std::max(low, 0.0), std::min(high, static_cast<double>(d - 1))};
}

std::vector<float> config::rope_inv_freq() const {
  const int64_t d = qk_rope_head_dim;
  std::vector<float> out(static_cast<size_t>(d / 2));
  const bool scaled = yarn && yarn->factor > 1;
  auto [low, high] = yarn_correction_range();
  if (low == high) high += 0.001;  // avoid a division by zero in the ramp, as DeepSeek does
  for (int64_t i = 0; i < d / 2; ++i) {
    const double extra =
        1.0 / std::pow(rope_theta, static_cast<double>(2 * i) / static_cast<double>(d));
    double f = extra;
    if (scaled) {
      const double ramp = std::clamp((static_cast<double>(i) - low) / (high - low), 0.0, 1.0);
      f = extra / yarn->factor * ramp + extra * (1.0 - ramp);
    }
    out[static_cast<size_t>(i)] = static_cast<float>(f);
  }
  return out;
}

}  // namespace troupe::deepseek
