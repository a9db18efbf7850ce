// The model families of the local engine: GGUF files of the llama, qwen2, phi3 or deepseek2
// architecture (the file's tokenizer and chat template - ChatML, Llama 2/3, Mistral, Zephyr,
// Phi-3, Gemma, Vicuna - with Hermes tool calls, grammar-constrained decoding), and DeepSeek-V3 /
// Kimi checkpoint directories (Kimi's template and tool-call sections, tiktoken, routed experts on
// expert-shard actors). All decode under the same grammars: response schemas and tool calls in
// the family's syntax.

#include "engine_backend.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <utility>

#include <unistd.h>

#include "caf/actor_system.hpp"
#include "troupe/deepseek/batch_decoder.hpp"
#include "troupe/deepseek/expert_shards.hpp"
#include "troupe/error.hpp"
#include "troupe/formats/tiktoken.hpp"
#include "troupe/llama/batch_decoder.hpp"
#include "troupe/llama/chat_template.hpp"
#include "troupe/llama/grammar.hpp"
#include "troupe/llama/llama_model.hpp"
#include "troupe/llama/token_mask.hpp"
#include "troupe/llama/tokenizer.hpp"

namespace troupe {

namespace {

/// Two pages per array of `arrays` per layer: what page-granular commitment adds to a
/// sequence's cache beyond its positions (engine_backend::kv_bytes_per_sequence).
int64_t page_slack(int64_t layers, int64_t arrays) noexcept {
  return 2 * layers * arrays * static_cast<int64_t>(sysconf(_SC_PAGESIZE));
}

/// The date chat templates print (Llama 3.1's "Today Date", Granite 3.3's and Mistral Small's
/// default system prompts): $TROUPE_CHAT_DATE (YYYY-MM-DD) when set, so that a run can be
/// reproduced, else today (UTC), as transformers' and llama.cpp's strftime_now gives it.
llama::chat_context chat_context_of_today() {
  using namespace std::chrono;
  llama::chat_context ctx;
  ctx.date = year_month_day{floor<days>(system_clock::now())};
  const char* d = std::getenv("TROUPE_CHAT_DATE");
  if (d == nullptr || *d == 0) return ctx;
  int y = 0;
  unsigned m = 0, day = 0;
  char tail = 0;
  const bool parsed = std::sscanf(d, "%d-%u-%u%c", &y, &m, &day, &tail) == 3;
  ctx.date = year_month_day{year{y}, month{m}, std::chrono::day{day}};
  if (!parsed || !ctx.date.ok()) {
    throw error(errc::invalid_argument, std::string("TROUPE_CHAT_DATE is '") + d +
                                            "'; give a date as YYYY-MM-DD, or unset it");
  }
  return ctx;
}

/// Renders a conversation in the Hermes style, as text any chat template carries: the tools
/// declared in the system message, assistant calls as <tool_call> blocks, results as
/// <tool_response> blocks (in role "tool" messages, which each template maps as its header says).
std::vector<llama::chat_message> render_hermes(const chat_request& req) {
  std::vector<llama::chat_message> out;
  out.reserve(req.messages.size() + 1);
  const bool declare = !req.tools.empty() && req.choice.mode != tool_choice_mode::none;
  if (declare && (req.messages.empty() || req.messages.front().role != role::system)) {
    out.push_back({"system", hermes_tool_declarations(req.tools)});
  }
  for (size_t i = 0; i < req.messages.size(); ++i) {
    const auto& m = req.messages[i];
    std::string content = m.role == role::tool ? hermes_tool_response_text(m) : m.text();
    for (const auto& c : m.tool_calls) {
      if (!content.empty()) content += '\n';
      content += hermes_tool_call_text(c);
    }
    if (i == 0 && declare && m.role == role::system) {
      content += "\n\n" + hermes_tool_declarations(req.tools);
    }
    out.push_back({to_string(m.role), std::move(content)});
  }
  return out;
}

/// The forward pass of a GGUF file of llama.cpp's `llama` architecture (SmolLM2, Llama 1-3,
/// TinyLlama, Mistral 7B), `qwen2` (Qwen2, Qwen2.5) or `phi3` (Phi-3).
struct llama_forward {
  llama_forward(const std::filesystem::path& path, caf::actor_system&, int threads, int,
                llama::kv_cache_type kv)
      : model(llama::llama_model::load(path)), decoder(model, threads, kv) {}
  using decoder_type = llama::batch_decoder;
  static constexpr const char* family = "llama";
  decoder_type& dec() noexcept { return decoder; }
  const gguf_file& file() const noexcept { return model->file(); }
  int64_t vocab() const noexcept { return model->hparams().vocab; }
  int64_t context() const noexcept { return model->hparams().context; }
  int64_t kv_bytes_per_position() const noexcept {
    return llama::batch_decoder::kv_bytes_per_position(model->hparams(), decoder.kv_type());
  }
  bool interchangeable(int64_t a, int64_t b) const noexcept {
    return decoder.interchangeable(a, b);
  }
  int64_t kv_bytes_per_sequence() const noexcept {
    return page_slack(model->hparams().layers, 2);  // keys and values
  }
  std::shared_ptr<const llama::llama_model> model;
  llama::batch_decoder decoder;
};

/// The forward pass of a GGUF file of llama.cpp's `deepseek2` architecture (DeepSeek-V2/V3,
/// Moonlight, Kimi K2 as convert_hf_to_gguf.py writes them): routed experts on expert-shard
/// actors (`shards` > 0) or on the decoder's threads.
struct deepseek_forward {
  deepseek_forward(const std::filesystem::path& path, caf::actor_system& sys, int threads,
                   int shards, llama::kv_cache_type)
      : gguf(gguf_file::open(path)), model(deepseek::model::load_gguf(path)) {
    if (shards > 0)
      experts = std::make_unique<deepseek::expert_shard_group>(
          sys, model,
          static_cast<int>(std::min<int64_t>(shards, model->cfg().n_routed_experts)));
    decoder = std::make_unique<deepseek::batch_decoder>(
        model, deepseek::batch_decoder::options{threads, deepseek::attention_form::automatic,
                                                experts.get()});
  }
  ~deepseek_forward() {
    decoder.reset();  // before the expert shards it sends work to
    experts.reset();
  }
  using decoder_type = deepseek::batch_decoder;
  static constexpr const char* family = "deepseek";
  decoder_type& dec() noexcept { return *decoder; }
  const gguf_file& file() const noexcept { return gguf; }
  int64_t vocab() const noexcept { return model->cfg().vocab_size; }
  int64_t context() const noexcept { return model->cfg().max_position_embeddings; }
  int64_t kv_bytes_per_position() const noexcept {
    return deepseek::batch_decoder::kv_bytes_per_position(model->cfg());
  }
  bool interchangeable(int64_t, int64_t) const noexcept { return true; }
  int64_t kv_bytes_per_sequence() const noexcept {
    return page_slack(model->cfg().num_hidden_layers, 1);  // the latent cache
  }
  gguf_file gguf;  // the tokenizer and chat template; model maps the file once more
  std::shared_ptr<const deepseek::model> model;
  std::unique_ptr<deepseek::expert_shard_group> experts;
  std::unique_ptr<deepseek::batch_decoder> decoder;
};

/// A GGUF model: the file's own tokenizer (tokenizer.ggml.*) and chat template with Hermes tool
/// calls and grammar masks over its vocabulary, on the forward pass of its architecture.
template <class Forward>
class gguf_backend final : public engine_backend {
 public:
  gguf_backend(const std::filesystem::path& path, caf::actor_system& sys, int threads, int shards,
               llama::kv_cache_type kv)
      : fwd_(path, sys, threads, shards, kv),
        tok_(llama::tokenizer::from_gguf(fwd_.file())),
        tmpl_(llama::chat_template::from_gguf(fwd_.file(), chat_context_of_today())),
        end_of_turn_(tok_.find(tmpl_.end_of_turn()).value_or(-1)),
        masker_(tok_) {
    if (tok_.vocab_size() > fwd_.vocab())
      throw error(errc::parse_error, path.string() + ": the tokenizer has " +
                                         std::to_string(tok_.vocab_size()) +
                                         " tokens but the model only " +
                                         std::to_string(fwd_.vocab()));
  }

  const char* family() const noexcept override { return Forward::family; }
  int64_t vocab() const noexcept override { return fwd_.vocab(); }
  int64_t context() const noexcept override { return fwd_.context(); }
  int64_t kv_bytes_per_position() const noexcept override { return fwd_.kv_bytes_per_position(); }
  int64_t kv_bytes_per_sequence() const noexcept override { return fwd_.kv_bytes_per_sequence(); }
  tool_call_syntax syntax() const noexcept override { return tool_call_syntax::hermes; }
  std::vector<int32_t> prompt(const chat_request& req) const override {
    // A template that prints BOS itself gets no second one from the tokenizer.
    return tok_.encode(tmpl_.apply(render_hermes(req), true), !tmpl_.begins_with_bos(), true);
  }
  std::vector<int32_t> encode(std::string_view text) const override {
    return tok_.encode(text, true, false);
  }
  bool is_end_of_generation(int32_t t) const override {
    // Ids past the tokenizer's vocabulary (a model's padding rows) end generation too.
    return tok_.is_end_of_generation(t) || t == end_of_turn_ || t >= tok_.vocab_size();
  }
  std::string piece(int32_t t) const override { return tok_.token_to_piece(t); }
  const llama::token_masker* masker() const noexcept override { return &masker_; }
  uint32_t open(int64_t capacity) override { return fwd_.dec().open(capacity); }
  void close(uint32_t seq) noexcept override { fwd_.dec().close(seq); }
  void truncate(uint32_t seq, int64_t n) override { fwd_.dec().truncate(seq, n); }
  void copy_prefix(uint32_t from, uint32_t to, int64_t n) override {
    fwd_.dec().copy_prefix(from, to, n);
  }
  bool interchangeable(int64_t a, int64_t b) const noexcept override {
    return fwd_.interchangeable(a, b);
  }
  std::span<const float> decode(std::span<const chunk> chunks) override {
    chunks_.clear();
    for (const auto& c : chunks) chunks_.push_back({c.seq, c.tokens});
    return fwd_.dec().decode(chunks_);
  }

 private:
  Forward fwd_;
  llama::tokenizer tok_;
  llama::chat_template tmpl_;
  int32_t end_of_turn_;  ///< the token of tmpl_.end_of_turn(), -1 when it is no single token
  llama::token_masker masker_;
  std::vector<typename Forward::decoder_type::chunk> chunks_;
};

class deepseek_backend final : public engine_backend {
 public:
  deepseek_backend(const std::filesystem::path& dir, caf::actor_system& sys, int threads, int shards)
      : model_(deepseek::model::load(dir)), tok_(tiktoken_tokenizer::from_directory(dir)) {
    if (tok_.vocab_size() > model_->cfg().vocab_size)
      throw error(errc::parse_error, "checkpoint " + dir.string() + ": the tokenizer has " +
                                         std::to_string(tok_.vocab_size()) + " tokens but the model only " +
                                         std::to_string(model_->cfg().vocab_size));
    if (shards > 0)
      shards_ = std::make_unique<deepseek::expert_shard_group>(
          sys, model_, static_cast<int>(std::min<int64_t>(shards, model_->cfg().n_routed_experts)));
    decoder_ = std::make_unique<deepseek::batch_decoder>(
        model_, deepseek::batch_decoder::options{threads, deepseek::attention_form::automatic, shards_.get()});
    end_of_turn_ = tok_.special_id("<|im_end|>").value_or(-1);
    masker_ = std::make_unique<llama::token_masker>(mask_vocabulary());
  }
  ~deepseek_backend() override {
    decoder_.reset();
    shards_.reset();
  }

  const char* family() const noexcept override { return "deepseek"; }
  int64_t vocab() const noexcept override { return model_->cfg().vocab_size; }
  int64_t context() const noexcept override { return model_->cfg().max_position_embeddings; }
  int64_t kv_bytes_per_position() const noexcept override {
    return deepseek::batch_decoder::kv_bytes_per_position(model_->cfg());
  }
  int64_t kv_bytes_per_sequence() const noexcept override {
    return page_slack(model_->cfg().num_hidden_layers, 1);
  }
  tool_call_syntax syntax() const noexcept override { return tool_call_syntax::kimi_k2; }
  std::vector<int32_t> prompt(const chat_request& req) const override {
    const bool declare = !req.tools.empty() && req.choice.mode != tool_choice_mode::none;
    return tok_.encode(kimi_k2_prompt(req.messages, declare ? std::span<const tool_spec>(req.tools)
                                                             : std::span<const tool_spec>{},
                                      true),
                       true);
  }
  std::vector<int32_t> encode(std::string_view text) const override { return tok_.encode(text, false); }
  bool is_end_of_generation(int32_t t) const override {
    return t == tok_.eos_id() || t == end_of_turn_ || t >= tok_.vocab_size();
  }
  std::string piece(int32_t t) const override {
    // Kimi's tool-call section tokens are special but carry the calls: the parser reads them.
    if (tok_.is_special(t)) {
      auto text = tok_.token_to_piece(t, true);
      return text.rfind("<|tool_call", 0) == 0 ? text : std::string{};
    }
    return tok_.token_to_piece(t);
  }
  const llama::token_masker* masker() const noexcept override { return masker_.get(); }
  uint32_t open(int64_t capacity) override { return decoder_->open(capacity); }
  void close(uint32_t seq) noexcept override { decoder_->close(seq); }
  void truncate(uint32_t seq, int64_t n) override { decoder_->truncate(seq, n); }
  void copy_prefix(uint32_t from, uint32_t to, int64_t n) override {
    decoder_->copy_prefix(from, to, n);
  }
  bool interchangeable(int64_t, int64_t) const noexcept override { return true; }
  std::span<const float> decode(std::span<const chunk> chunks) override {
    chunks_.clear();
    for (const auto& c : chunks) chunks_.push_back({c.seq, c.tokens});
    return decoder_->decode(chunks_);
  }

 private:
  std::shared_ptr<const deepseek::model> model_;
  tiktoken_tokenizer tok_;
  std::unique_ptr<deepseek::expert_shard_group> shards_;
  std::unique_ptr<deepseek::batch_decoder> decoder_;
  /// The model's whole vocabulary as the grammars read it (it may be larger than the
  /// tokenizer's: padding ids, which end generation as is_end_of_generation says). The five
  /// tool-call markers are their llama::kimi_marker bytes; other special tokens carry no text;
  /// raw-byte tokens holding a marker byte (never valid UTF-8) are kept out of constrained text.
  llama::mask_vocabulary mask_vocabulary() const {
    using kind = llama::mask_vocabulary::kind;
    using marker = llama::kimi_marker;
    const std::pair<const char*, uint8_t> markers[] = {
        {"<|tool_calls_section_begin|>", marker::section_begin},
        {"<|tool_call_begin|>", marker::call_begin},
        {"<|tool_call_argument_begin|>", marker::argument_begin},
        {"<|tool_call_end|>", marker::call_end},
        {"<|tool_calls_section_end|>", marker::section_end}};
    llama::mask_vocabulary v;
    const auto n = static_cast<size_t>(vocab());
    v.bytes.resize(n);
    v.kinds.resize(n, kind::text);
    for (int32_t t = 0; t < static_cast<int32_t>(n); ++t) {
      auto& k = v.kinds[static_cast<size_t>(t)];
      if (is_end_of_generation(t)) {
        k = kind::end_of_generation;
      } else if (tok_.is_special(t)) {
        k = kind::control;
      } else {
        std::string b = tok_.token_to_piece(t);
        if (std::any_of(b.begin(), b.end(), [](char c) {
              return static_cast<uint8_t>(c) >= marker::section_begin &&
                     static_cast<uint8_t>(c) <= marker::section_end;
            }))
          k = kind::control;
        else
          v.bytes[static_cast<size_t>(t)] = std::move(b);
      }
    }
    for (const auto& [text, byte] : markers) {
      if (auto id = tok_.special_id(text)) {
        v.kinds[static_cast<size_t>(*id)] = kind::text;
        v.bytes[static_cast<size_t>(*id)] = std::string(1, static_cast<char>(byte));
      }
    }
    return v;
  }

  std::vector<deepseek::batch_decoder::chunk> chunks_;
  int32_t end_of_turn_ = -1;
  std::unique_ptr<llama::token_masker> masker_;
};

}  // namespace

std::unique_ptr<engine_backend> engine_backend::load(const std::filesystem::path& path, caf::actor_system& sys,
                                                     int threads, int expert_shards,
                                                     llama::kv_cache_type kv) {
  const bool deepseek =
      std::filesystem::is_directory(path) ||
      gguf_file::open(path).get_string("general.architecture", "") == "deepseek2";
  if (deepseek && kv != llama::kv_cache_type::f32)
    throw error(errc::invalid_argument,
                path.string() + ": KV cache type " + llama::to_string(kv) +
                    " applies to llama-family GGUF models; DeepSeek-V3/Kimi models keep their "
                    "latent cache (use f32, the default)");
  if (std::filesystem::is_directory(path)) {
    if (!std::filesystem::exists(path / "config.json"))
      throw error(errc::not_found, "model directory " + path.string() +
                                       " has no config.json: a DeepSeek-V3/Kimi checkpoint directory holds "
                                       "config.json, *.safetensors, tiktoken.model and tokenizer_config.json");
    return std::make_unique<deepseek_backend>(path, sys, threads, expert_shards);
  }
  // A GGUF file: its architecture picks the forward pass (llama_model::load names what it
  // does not run).
  if (deepseek)
    return std::make_unique<gguf_backend<deepseek_forward>>(path, sys, threads, expert_shards, kv);
  return std::make_unique<gguf_backend<llama_forward>>(path, sys, threads, expert_shards, kv);
}

}  // namespace troupe
