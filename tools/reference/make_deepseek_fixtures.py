#!/usr/bin/env python3
"""Writes tiny DeepSeek-V3 / Kimi K2 checkpoints in their released formats, with the logits and greedy
continuations that HF transformers' DeepseekV3ForCausalLM computes for fixed prompts.

Run outside CI (needs torch, transformers >= 4.57 and compressed-tensors from PyPI):
    python3 -m venv /tmp/refenv && /tmp/refenv/bin/pip install torch transformers==4.57.1 compressed-tensors accelerate safetensors
    /tmp/refenv/bin/python tools/reference/make_deepseek_fixtures.py tests/fixtures/deepseek

Each configuration becomes a folder with config.json, the weights (*.safetensors; one of them sharded with
model.safetensors.index.json) and expected.safetensors:
    prompt_<i>   int32 [n]       the prompt's token ids
    logits_<i>   float32 [n, V]  HF logits at every prompt position (fp32 path)
    greedy_<i>   int32 [32]      HF greedy continuation (generate, do_sample=False, KV cache on)
    margin_<i>   float32 [1]     smallest top-1 minus top-2 logit gap along that continuation

Configurations:
    k25_int4    Kimi K2.5-like: q_lora, YaRN factor 64 (mscale = mscale_all_dim = 1), one shared expert,
                routed experts in compressed-tensors pack-quantized INT4 (symmetric, group 32); saved the way
                K2.5 is released: a `kimi_k25` wrapper config with `text_config` and `language_model.` tensor
                names, two shards.
    moonlight   Moonlight-like: no q_lora (direct q_proj), two shared experts, no rope scaling, BF16 weights.
    v3_fp8      DeepSeek-V3-like: n_group 4 / topk_group 2, YaRN factor 32 with beta 1/1 (K2-Instruct's),
                every Linear of the layers in FP8 E4M3 with 128x128 block scales (`weight_scale_inv`).
    kimi_chat   the k25_int4 shape with the vocabulary of tests/fixtures/kimi_tokenizer (a tiktoken BPE with
                Kimi's special tokens), saved with that tokenizer: a complete Kimi-format model directory.
                generate_prompt.txt / generate_expected.bin: a user message rendered by Kimi's real chat
                template (jinja2), tokenised by tiktoken, continued greedily by HF for 16 tokens and decoded
                to bytes by tiktoken (special tokens leave no bytes; stops at [EOS] or <|im_end|>).

The weights HF runs are exactly the values stored (bf16 rounding, INT4 and FP8 dequantisation applied to the
model before the reference run), so the only difference left to a reader is arithmetic order.
"""
import json
import math
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

from compressed_tensors.compressors.pack_quantized.helpers import pack_to_int32

GREEDY_TOKENS = 32
VOCAB = 384


def base_config(**kw):
    c = dict(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
        num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4, n_shared_experts=1,
        n_routed_experts=16, num_experts_per_tok=4, routed_scaling_factor=2.827, kv_lora_rank=32,
        q_lora_rank=48, qk_rope_head_dim=16, v_head_dim=24, qk_nope_head_dim=32, n_group=1, topk_group=1,
        first_k_dense_replace=1, norm_topk_prob=True, max_position_embeddings=262144, rms_norm_eps=1e-5,
        rope_theta=50000.0, tie_word_embeddings=False, attention_bias=False, bos_token_id=VOCAB - 2,
        eos_token_id=VOCAB - 1, rope_interleave=True, torch_dtype="float32")
    c.update(kw)
    return c


CONFIGS = {
    "k25_int4": dict(
        hf=base_config(rope_scaling=dict(type="yarn", factor=64.0, beta_fast=32.0, beta_slow=1.0, mscale=1.0,
                                         mscale_all_dim=1.0, original_max_position_embeddings=4096)),
        quant="int4", wrapper=True, shards=2),
    "moonlight": dict(
        hf=base_config(q_lora_rank=None, n_shared_experts=2, num_experts_per_tok=6, routed_scaling_factor=2.446,
                       max_position_embeddings=8192, rope_scaling=None),
        quant=None, wrapper=False, shards=1),
    "v3_fp8": dict(
        hf=base_config(n_group=4, topk_group=2, routed_scaling_factor=2.5, rms_norm_eps=1e-6, rope_theta=10000.0,
                       max_position_embeddings=131072,
                       rope_scaling=dict(type="yarn", factor=32.0, beta_fast=1.0, beta_slow=1.0, mscale=1.0,
                                         mscale_all_dim=1.0, original_max_position_embeddings=4096)),
        quant="fp8", wrapper=False, shards=1),
}

PROMPTS = [
    [VOCAB - 2, 5, 17, 42, 99, 7],
    [VOCAB - 2, 300, 301, 302, 1, 2, 3, 250, 128, 64, 32],
    [VOCAB - 2, 11],
    [VOCAB - 2] + [(i * 37 + 13) % (VOCAB - 3) for i in range(24)],
]


def bf16_round(t):
    return t.to(torch.bfloat16).to(torch.float32)


def quantize_int4(w, group=32):
    """Symmetric INT4 with one bf16 scale per `group` columns, as compressed-tensors' pack-quantized
    format stores it: scale = absmax / 7.5 (q range [-8, 7]); returns (q int8, scale bf16, dequantised)."""
    rows, cols = w.shape
    assert cols % group == 0
    g = w.view(rows, cols // group, group)
    scale = (g.abs().amax(dim=-1) / 7.5).clamp(min=1e-8).to(torch.bfloat16)
    s = scale.to(torch.float32).unsqueeze(-1)
    q = torch.clamp(torch.round(g / s), -8, 7)
    deq = (q * s).view(rows, cols)
    return q.view(rows, cols).to(torch.int8), scale, deq


def quantize_fp8_block(w, block=128):
    """FP8 E4M3 weights with one fp32 inverse scale per block x block tile (DeepSeek-V3's released format):
    w ≈ fp8 * scale_inv, scale_inv = absmax(tile) / 448."""
    rows, cols = w.shape
    br, bc = math.ceil(rows / block), math.ceil(cols / block)
    scale_inv = torch.empty(br, bc, dtype=torch.float32)
    q = torch.empty(rows, cols, dtype=torch.float8_e4m3fn)
    deq = torch.empty(rows, cols, dtype=torch.float32)
    for i in range(br):
        for j in range(bc):
            tile = w[i * block:(i + 1) * block, j * block:(j + 1) * block]
            s = max(tile.abs().max().item() / 448.0, 1e-12)
            scale_inv[i, j] = s
            qt = (tile / s).to(torch.float8_e4m3fn)
            q[i * block:(i + 1) * block, j * block:(j + 1) * block] = qt
            deq[i * block:(i + 1) * block, j * block:(j + 1) * block] = qt.to(torch.float32) * s
    return q, scale_inv, deq


def randomise(model, seed):
    """Weights with enough spread that logits are decisive (HF's default init gives near-ties)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or "layernorm" in name:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif "embed_tokens" in name:
                p.copy_(torch.randn(p.shape, generator=g))
            else:
                fan_in = p.shape[-1]
                p.copy_(torch.randn(p.shape, generator=g) * (1.5 / math.sqrt(fan_in)))
        for name, b in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                b.copy_(0.05 * torch.randn(b.shape, generator=g))


def build(name, spec, out_dir):
    torch.manual_seed(0)
    cfg = DeepseekV3Config(**spec["hf"])
    cfg._attn_implementation = "eager"
    model = DeepseekV3ForCausalLM(cfg).eval()
    randomise(model, seed=1234 + len(name))

    tensors = {}
    with torch.no_grad():
        for pname, p in model.named_parameters():
            p.copy_(bf16_round(p))
        state = dict(model.state_dict())
        for key, t in state.items():
            if "rotary_emb" in key:
                continue
            is_linear = ".layers." in key and key.endswith(".weight") and "proj" in key.split(".")[-2]
            is_expert = ".mlp.experts." in key
            mod = key[:-len(".weight")]
            if spec["quant"] == "int4" and is_linear and is_expert:
                q, scale, deq = quantize_int4(t)
                model.get_parameter(key).copy_(deq)
                tensors[mod + ".weight_packed"] = pack_to_int32(q, 4)
                tensors[mod + ".weight_scale"] = scale
                tensors[mod + ".weight_shape"] = torch.tensor(list(t.shape), dtype=torch.int32)
            elif spec["quant"] == "fp8" and is_linear:
                q, scale_inv, deq = quantize_fp8_block(t)
                model.get_parameter(key).copy_(deq)
                tensors[key] = q
                tensors[mod + ".weight_scale_inv"] = scale_inv
            elif key.endswith("e_score_correction_bias"):
                tensors[key] = t.to(torch.float32).contiguous()
            else:
                tensors[key] = t.to(torch.bfloat16).contiguous()

    config = json.loads(cfg.to_json_string())
    for k in ("_attn_implementation_autoset", "torch_dtype", "dtype", "transformers_version"):
        config.pop(k, None)
    config["architectures"] = ["DeepseekV3ForCausalLM"]
    config["torch_dtype"] = "bfloat16"
    if spec["quant"] == "int4":
        config["quantization_config"] = {
            "quant_method": "compressed-tensors", "format": "pack-quantized", "quantization_status": "compressed",
            "config_groups": {"group_0": {"targets": ["Linear"], "input_activations": None,
                                          "output_activations": None,
                                          "weights": {"num_bits": 4, "type": "int", "symmetric": True,
                                                      "strategy": "group", "group_size": 32, "dynamic": False,
                                                      "observer": "minmax", "actorder": None,
                                                      "block_structure": None}}},
            "kv_cache_scheme": None,
            "ignore": ["lm_head", "re:.*self_attn.*", "re:.*shared_experts.*",
                       "re:.*mlp\\.(gate|up|gate_up|down)_proj.*"]}
    elif spec["quant"] == "fp8":
        config["quantization_config"] = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                         "weight_block_size": [128, 128]}

    os.makedirs(out_dir, exist_ok=True)
    if spec["wrapper"]:
        text = dict(config)
        config = {"architectures": ["KimiK25ForConditionalGeneration"], "model_type": "kimi_k25",
                  "bos_token_id": text["bos_token_id"], "eos_token_id": text["eos_token_id"],
                  "tie_word_embeddings": False, "text_config": text,
                  "vision_config": {"vt_hidden_size": 32, "note": "unused by the text model"}}
        if "quantization_config" in text:
            config["quantization_config"] = text["quantization_config"]
        tensors = {"language_model." + k: v for k, v in tensors.items()}
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")

    names = sorted(tensors)
    if spec["shards"] == 1:
        save_file({k: tensors[k] for k in names}, os.path.join(out_dir, "model.safetensors"),
                  metadata={"format": "pt"})
    else:
        per = math.ceil(len(names) / spec["shards"])
        weight_map = {}
        for s in range(spec["shards"]):
            fname = f"model-{s + 1:05d}-of-{spec['shards']:05d}.safetensors"
            part = names[s * per:(s + 1) * per]
            save_file({k: tensors[k] for k in part}, os.path.join(out_dir, fname), metadata={"format": "pt"})
            weight_map.update({k: fname for k in part})
        total = sum(t.numel() * t.element_size() for t in tensors.values())
        with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2, sort_keys=True)
            f.write("\n")

    expected = {}
    with torch.no_grad():
        for i, prompt in enumerate(PROMPTS):
            ids = torch.tensor([prompt])
            logits = model(ids).logits[0].to(torch.float32)
            out = model.generate(ids, max_new_tokens=GREEDY_TOKENS, min_new_tokens=GREEDY_TOKENS, do_sample=False,
                                 use_cache=True, output_scores=True, return_dict_in_generate=True,
                                 pad_token_id=VOCAB - 1, eos_token_id=None)
            greedy = out.sequences[0, len(prompt):].to(torch.int32)
            margin = min((s[0].topk(2).values[0] - s[0].topk(2).values[1]).item() for s in out.scores)
            expected[f"prompt_{i}"] = torch.tensor(prompt, dtype=torch.int32)
            expected[f"logits_{i}"] = logits.contiguous()
            expected[f"greedy_{i}"] = greedy.contiguous()
            expected[f"margin_{i}"] = torch.tensor([margin], dtype=torch.float32)
            print(f"{name} prompt {i}: {len(prompt)} tokens, greedy {greedy.tolist()[:8]}..., "
                  f"min top-2 gap {margin:.4f}, |logits| max {logits.abs().max().item():.2f}")
    save_file(expected, os.path.join(out_dir, "expected.safetensors"),
              metadata={"transformers": __import__("transformers").__version__, "torch": torch.__version__})
    return model


def check_int4_through_compressed_tensors(out_dir, tmp_dir):
    """Independent check of the INT4 packing: HF transformers loads the checkpoint through the
    compressed-tensors package (its own unpacking and dequantisation) and must give the same logits."""
    import shutil
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM
    shutil.rmtree(tmp_dir, ignore_errors=True)
    os.makedirs(tmp_dir)
    cfg = json.load(open(os.path.join(out_dir, "config.json")))
    text = dict(cfg.get("text_config", cfg), model_type="deepseek_v3")
    with open(os.path.join(tmp_dir, "config.json"), "w") as f:
        json.dump(text, f)
    tensors = {}
    for fname in os.listdir(out_dir):
        if fname.startswith("model") and fname.endswith(".safetensors"):
            for k, v in load_file(os.path.join(out_dir, fname)).items():
                tensors[k.removeprefix("language_model.")] = v
    save_file(tensors, os.path.join(tmp_dir, "model.safetensors"), metadata={"format": "pt"})
    model = AutoModelForCausalLM.from_pretrained(tmp_dir, torch_dtype=torch.float32).eval()
    expected = load_file(os.path.join(out_dir, "expected.safetensors"))
    worst = 0.0
    with torch.no_grad():
        for i in range(len(PROMPTS)):
            logits = model(expected[f"prompt_{i}"].long()[None]).logits[0].float()
            worst = max(worst, (logits - expected[f"logits_{i}"]).abs().max().item())
    print(f"{out_dir}: logits through compressed-tensors' own loader differ by at most {worst:.2e}")
    assert worst < 1e-3, "the INT4 packing disagrees with compressed-tensors"
    shutil.rmtree(tmp_dir)


TOKENIZER_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "kimi_tokenizer")
CHAT_PROMPT = "Name three colours of the rainbow, and say why the sky is blue."
CHAT_TOKENS = 16


def kimi_tokenizer():
    """The fixture tokenizer as tiktoken builds it (make_tiktoken_fixture.py wrote the files)."""
    import base64
    import importlib.util
    import tiktoken
    spec = importlib.util.spec_from_file_location(
        "make_tiktoken_fixture", os.path.join(os.path.dirname(__file__), "make_tiktoken_fixture.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ranks = {}
    with open(os.path.join(TOKENIZER_DIR, "tiktoken.model")) as f:
        for line in f:
            tok, rank = line.split()
            ranks[base64.b64decode(tok)] = int(rank)
    cfg = json.load(open(os.path.join(TOKENIZER_DIR, "tokenizer_config.json")))
    specials = {v["content"]: int(k) for k, v in cfg["added_tokens_decoder"].items()}
    enc = tiktoken.Encoding(name="kimi-fixture", pat_str=mod.KIMI_PAT_STR, mergeable_ranks=ranks,
                            special_tokens=specials)
    return enc, len(ranks), specials


def build_chat_fixture(out_dir):
    """kimi_chat: a model whose vocabulary is the fixture tokenizer's, and troupe generate's expected bytes."""
    import shutil
    import jinja2
    enc, n_ranks, specials = kimi_tokenizer()
    vocab = n_ranks + 256  # Kimi: num_reserved_special_tokens = 256 after the ranks
    spec = dict(CONFIGS["k25_int4"], wrapper=False, shards=1)
    spec["hf"] = dict(spec["hf"], vocab_size=vocab, bos_token_id=specials["[BOS]"], eos_token_id=specials["[EOS]"])
    global PROMPTS
    saved = PROMPTS
    PROMPTS = [[specials["[BOS]"], 5, 17, 42, 99, 7]]
    try:
        model = build("kimi_chat", spec, out_dir)
    finally:
        PROMPTS = saved
    for name in ("tiktoken.model", "tokenizer_config.json"):
        shutil.copy(os.path.join(TOKENIZER_DIR, name), os.path.join(out_dir, name))
    template = open(os.path.join(TOKENIZER_DIR, "chat_template.jinja")).read()
    text = jinja2.Environment().from_string(template).render(
        messages=[{"role": "user", "content": CHAT_PROMPT}], add_generation_prompt=True, tools=None)
    ids = enc.encode(text, allowed_special="all")
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=CHAT_TOKENS, min_new_tokens=CHAT_TOKENS,
                             do_sample=False, use_cache=True, output_scores=True, return_dict_in_generate=True,
                             pad_token_id=specials["[EOS]"], eos_token_id=None)
    margin = min((s[0].topk(2).values[0] - s[0].topk(2).values[1]).item() for s in out.scores)
    stop = {specials["[EOS]"], specials["<|im_end|>"]}
    data = b""
    for t in out.sequences[0, len(ids):].tolist():
        if t in stop:
            break
        if t < n_ranks:
            data += enc.decode_single_token_bytes(t)
    with open(os.path.join(out_dir, "generate_prompt.txt"), "w") as f:
        f.write(CHAT_PROMPT + "\n")
    with open(os.path.join(out_dir, "generate_expected.bin"), "wb") as f:
        f.write(data + b"\n")
    print(f"kimi_chat: prompt {len(ids)} tokens, continuation {out.sequences[0, len(ids):].tolist()}, "
          f"min top-2 gap {margin:.4f}, {len(data)} bytes")


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/deepseek"
    only = sys.argv[2:]
    if not only or "kimi_chat" in only:
        build_chat_fixture(os.path.join(out, "kimi_chat"))
    for name, spec in CONFIGS.items():
        if only and name not in only:
            continue
        build(name, spec, os.path.join(out, name))
        if spec["quant"] == "int4":
            check_int4_through_compressed_tensors(os.path.join(out, name), os.path.join(out, name + ".ct_check"))


if __name__ == "__main__":
    main()
