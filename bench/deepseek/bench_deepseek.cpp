// Decode tokens/s of the DeepSeek-V3 forward pass on the CPU for a scaled-down Kimi-shaped model
// (random weights, routed experts in compressed-tensors INT4), with the routed experts computed
// by the decoder's own 2 threads (the baseline) or by 1, 2 and 4 expert-shard actors.
//
// The checkpoint is written once per run into a temporary directory: config.json plus
// model.safetensors, exactly the released layout, so loading goes through the real reader.

#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <unistd.h>
#include <vector>

#include "caf/actor_system.hpp"
#include "caf/actor_system_config.hpp"
#include "cpu/low_bit.hpp"
#include "cpu/quant.hpp"
#include "troupe/deepseek/batch_decoder.hpp"
#include "troupe/deepseek/expert_shards.hpp"
#include "troupe/formats/safetensors.hpp"

namespace fs = std::filesystem;
namespace kc = troupe::kernels::cpu;
using namespace troupe;
using namespace troupe::deepseek;

namespace {

// Kimi K2's proportions scaled down: 64 experts (top 6) of width 512 on hidden 1024.
constexpr int64_t hidden = 1024, layers = 4, heads = 8, q_lora = 256, kv_lora = 128, nope = 64,
                  rope = 32, vdim = 64, inter = 2048, moe_inter = 512, experts = 64, top_k = 6,
                  vocab = 4096;

const char* config_json = R"({
  "architectures": ["DeepseekV3ForCausalLM"], "model_type": "kimi_k2",
  "vocab_size": 4096, "hidden_size": 1024, "intermediate_size": 2048, "moe_intermediate_size": 512,
  "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 8,
  "q_lora_rank": 256, "kv_lora_rank": 128, "qk_nope_head_dim": 64, "qk_rope_head_dim": 32,
  "v_head_dim": 64, "n_routed_experts": 64, "n_shared_experts": 1, "num_experts_per_tok": 6,
  "n_group": 1, "topk_group": 1, "topk_method": "noaux_tc", "scoring_func": "sigmoid",
  "norm_topk_prob": true, "routed_scaling_factor": 2.827, "first_k_dense_replace": 1,
  "moe_layer_freq": 1, "max_position_embeddings": 262144, "rms_norm_eps": 1e-5,
  "rope_theta": 50000.0, "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": 2,
  "rope_scaling": {"type": "yarn", "factor": 64.0, "beta_fast": 32.0, "beta_slow": 1.0,
                   "mscale": 1.0, "mscale_all_dim": 1.0, "original_max_position_embeddings": 4096},
  "quantization_config": {"quant_method": "compressed-tensors", "format": "pack-quantized",
    "config_groups": {"group_0": {"targets": ["Linear"], "weights": {"num_bits": 4, "type": "int",
      "symmetric": true, "strategy": "group", "group_size": 32}}},
    "ignore": ["lm_head", "re:.*self_attn.*", "re:.*shared_experts.*", "re:.*mlp\\.(gate|up|gate_up|down)_proj.*"]}
})";

struct tensor_store {
  std::vector<std::unique_ptr<std::vector<std::byte>>> buffers;
  std::vector<safetensors_entry> entries;
  uint64_t rng = 0x9E3779B97F4A7C15ull;

  float next(float scale) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return scale * (static_cast<float>(rng >> 40) / static_cast<float>(1 << 24) * 2.0f - 1.0f);
  }
  std::vector<std::byte>& add(std::string name, safetensors_dtype t, std::vector<int64_t> shape, size_t bytes) {
    buffers.push_back(std::make_unique<std::vector<std::byte>>(bytes));
    entries.push_back({std::move(name), t, std::move(shape), {}});
    return *buffers.back();
  }
  void bf16(const std::string& name, int64_t rows, int64_t cols, float scale) {
    std::vector<int64_t> shape = cols == 0 ? std::vector<int64_t>{rows} : std::vector<int64_t>{rows, cols};
    const int64_t n = rows * (cols == 0 ? 1 : cols);
    auto& b = add(name, safetensors_dtype::bf16, shape, static_cast<size_t>(n) * 2);
    auto* p = reinterpret_cast<uint16_t*>(b.data());
    for (int64_t i = 0; i < n; ++i) p[i] = kc::fp32_to_bf16(cols == 0 ? 1.0f + next(0.1f) : next(scale));
  }
  void int4(const std::string& module, int64_t rows, int64_t cols) {
    std::vector<float> w(static_cast<size_t>(rows * cols));
    for (auto& x : w) x = next(1.0f / 16);
    auto& packed = add(module + ".weight_packed", safetensors_dtype::i32, {rows, cols / 8},
                       static_cast<size_t>(rows * cols / 2));
    auto& scales = add(module + ".weight_scale", safetensors_dtype::bf16, {rows, cols / 32},
                       static_cast<size_t>(rows * cols / 32 * 2));
    kc::int4_group_quantize(w.data(), rows, cols, 32, reinterpret_cast<uint32_t*>(packed.data()),
                            reinterpret_cast<uint16_t*>(scales.data()));
    auto& shape = add(module + ".weight_shape", safetensors_dtype::i32, {2}, 8);
    const int32_t dims[2] = {static_cast<int32_t>(rows), static_cast<int32_t>(cols)};
    std::memcpy(shape.data(), dims, 8);
  }
  void write(const fs::path& file) {
    for (size_t i = 0; i < entries.size(); ++i) entries[i].data = *buffers[i];
    write_safetensors(file, entries);
  }
};

fs::path make_checkpoint() {
  const fs::path dir = fs::temp_directory_path() / ("troupe_bench_deepseek_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "config.json") << config_json;
  tensor_store s;
  s.bf16("model.embed_tokens.weight", vocab, hidden, 1.0f);
  s.bf16("model.norm.weight", hidden, 0, 0);
  s.bf16("lm_head.weight", vocab, hidden, 0.05f);
  for (int64_t l = 0; l < layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    s.bf16(p + "input_layernorm.weight", hidden, 0, 0);
    s.bf16(p + "post_attention_layernorm.weight", hidden, 0, 0);
    s.bf16(p + "self_attn.q_a_proj.weight", q_lora, hidden, 0.05f);
    s.bf16(p + "self_attn.q_a_layernorm.weight", q_lora, 0, 0);
    s.bf16(p + "self_attn.q_b_proj.weight", heads * (nope + rope), q_lora, 0.1f);
    s.bf16(p + "self_attn.kv_a_proj_with_mqa.weight", kv_lora + rope, hidden, 0.05f);
    s.bf16(p + "self_attn.kv_a_layernorm.weight", kv_lora, 0, 0);
    s.bf16(p + "self_attn.kv_b_proj.weight", heads * (nope + vdim), kv_lora, 0.1f);
    s.bf16(p + "self_attn.o_proj.weight", hidden, heads * vdim, 0.05f);
    if (l == 0) {
      s.bf16(p + "mlp.gate_proj.weight", inter, hidden, 0.05f);
      s.bf16(p + "mlp.up_proj.weight", inter, hidden, 0.05f);
      s.bf16(p + "mlp.down_proj.weight", hidden, inter, 0.03f);
      continue;
    }
    s.bf16(p + "mlp.gate.weight", experts, hidden, 0.05f);
    for (int64_t e = 0; e < experts; ++e) {
      const std::string ep = p + "mlp.experts." + std::to_string(e) + ".";
      s.int4(ep + "gate_proj", moe_inter, hidden);
      s.int4(ep + "up_proj", moe_inter, hidden);
      s.int4(ep + "down_proj", hidden, moe_inter);
    }
    s.bf16(p + "mlp.shared_experts.gate_proj.weight", moe_inter, hidden, 0.05f);
    s.bf16(p + "mlp.shared_experts.up_proj.weight", moe_inter, hidden, 0.05f);
    s.bf16(p + "mlp.shared_experts.down_proj.weight", hidden, moe_inter, 0.05f);
  }
  s.write(dir / "model.safetensors");
  return dir;
}

struct fixture {
  fs::path dir = make_checkpoint();
  std::shared_ptr<const model> m = model::load(dir);
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys = std::make_unique<caf::actor_system>(cfg);
  ~fixture() {
    m.reset();
    fs::remove_all(dir);
  }
};

// Lives in main(), not in a static: CAF's actor_system must be gone before exit handlers run.
fixture* the_fixture = nullptr;
fixture& shared() { return *the_fixture; }

// Arg 0: expert shards (0 = the decoder's own threads); arg 1: sequences decoding together.
void bm_decode(benchmark::State& state) {
  auto& f = shared();
  const int shards = static_cast<int>(state.range(0));
  const int seqs = static_cast<int>(state.range(1));
  std::unique_ptr<expert_shard_group> group;
  if (shards > 0) group = std::make_unique<expert_shard_group>(*f.sys, f.m, shards);
  batch_decoder d(f.m, {.threads = 2, .attention = attention_form::automatic, .experts = group.get()});
  constexpr int64_t context = 64;
  std::vector<uint32_t> ids;
  std::vector<int32_t> tokens(static_cast<size_t>(seqs));
  std::vector<batch_decoder::chunk> chunks;
  for (int i = 0; i < seqs; ++i) {
    ids.push_back(d.open(context + 8));
    tokens[i] = 3 + 17 * i;
  }
  for (int i = 0; i < seqs; ++i) chunks.push_back({ids[i], {&tokens[i], 1}});
  // Warm up to a 16-token context so attention is not trivially short.
  for (int i = 0; i < 16; ++i) d.decode(chunks);
  for (auto _ : state) {
    if (d.position(ids[0]) >= context) {
      for (auto id : ids) d.reset(id);
    }
    auto logits = d.decode(chunks);
    benchmark::DoNotOptimize(logits.data());
  }
  state.counters["tok/s"] = benchmark::Counter(static_cast<double>(state.iterations()) * seqs,
                                               benchmark::Counter::kIsRate);
  state.counters["expert_MB/layer"] = static_cast<double>(f.m->expert_bytes(1)) / 1e6;
}

}  // namespace

BENCHMARK(bm_decode)
    ->ArgsProduct({{0, 1, 2, 4}, {1, 8}})
    ->ArgNames({"shards", "seqs"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  fixture f;
  the_fixture = &f;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  the_fixture = nullptr;
  return 0;
}
