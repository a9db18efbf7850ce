#!/usr/bin/env python3
"""Converts the Moonlight-like fixture (tests/fixtures/deepseek/moonlight) to GGUF with llama.cpp's own
converter, so that troupe's deepseek2 GGUF reader is checked against files written by the tool that
writes the real ones (tensor names, dimension order, kv_b split into k_b/v_b, metadata keys).

Run outside CI, with a Python that has torch, transformers, numpy (e.g. the /tmp/refenv of
make_deepseek_fixtures.py) and llama.cpp's converter from the llama-cpp-python sdist:
    pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36 -d /tmp/dl
    tar xzf /tmp/dl/llama_cpp_python-0.3.36.tar.gz -C /tmp
    /tmp/refenv/bin/python tools/reference/make_deepseek_gguf_fixture.py \
        /tmp/llama_cpp_python-0.3.36/vendor/llama.cpp tests/fixtures/deepseek

Writes <out>/moonlight_gguf/moonlight-{bf16,q8_0,legacy-q8_0}.gguf and expected_q8_0.safetensors
(legacy-q8_0: the layout of conversions before llama.cpp's MLA-as-MQA change, see below), and
<out>/v3_gguf/v3-bf16.gguf, the DeepSeek-V3-like <out>/v3_fp8 (q_lora, YaRN, grouped routing) with its FP8
weights dequantized and rounded to BF16 by the converter, with expected_bf16.safetensors: HF transformers on
those BF16 values. The BF16 file holds
the checkpoint's values unchanged, so its reference is the HF output in <out>/moonlight/expected.safetensors.
Q8_0 rounds every 32 weights to int8 with one f16 scale, which moves this tiny random model's logits by ~25%
of the largest one (MoE routing flips), so expected_q8_0.safetensors holds HF transformers' logits and greedy
tokens computed with the Q8_0 file's own weights (dequantized by gguf-py and mapped back to HF names: the
inverse of the converter's renames, expert stacking and k_b/v_b split; the BF16 file through the same mapping
must reproduce expected.safetensors, which checks it). Same layout as expected.safetensors: prompt_<i>,
logits_<i>, greedy_<i>.

What the script changes before converting, in a temporary copy of the checkpoint (the weights are not
touched):
  - config.json gains "scoring_func": "sigmoid" and "topk_method": "noaux_tc", which transformers'
    DeepseekV3 uses without reading them; without scoring_func the converter writes no
    deepseek2.expert_gating_func, and llama.cpp then routes with softmax (its DeepSeek-V2 default).
  - The vocabulary: the converter's deepseek2 set_vocab needs a known pre-tokenizer (a hash of a real
    tokenizer's output); the fixture has none. set_vocab is replaced by one that writes a minimal
    GPT-2-style vocabulary of vocab_size byte-level tokens with one merge (llama.cpp refuses a gpt2 vocabulary
    without merges), BOS/EOS from config.json. The
    tensors are what the fixture is for; prompts are token ids.
"""
import json
import os
import shutil
import sys
import tempfile

OUTTYPES = ["bf16", "q8_0"]  # F32 holds the same values as BF16 at twice the size


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    llama_dir, out_root = sys.argv[1], sys.argv[2]
    sys.path.insert(0, llama_dir)
    sys.path.insert(1, os.path.join(llama_dir, "gguf-py"))
    import gguf  # noqa: E402  (llama.cpp's own gguf-py)
    import conversion.deepseek as ds  # noqa: E402
    import convert_hf_to_gguf  # noqa: E402

    src = os.path.join(out_root, "moonlight")
    dst = os.path.join(out_root, "moonlight_gguf")
    os.makedirs(dst, exist_ok=True)

    def minimal_vocab(self):
        n = self.hparams["vocab_size"]
        # Byte-level GPT-2 alphabet first (so every byte encodes), then filler tokens.
        byte_chars = [chr(c) for c in range(ord("!"), ord("~") + 1)]
        byte_chars += [chr(c) for c in range(ord("¡"), ord("¬") + 1)] + [chr(c) for c in range(ord("®"), ord("ÿ") + 1)]
        extra = 0
        for b in range(256):
            if chr(b) not in byte_chars:
                byte_chars.append(chr(256 + extra))
                extra += 1
        tokens = byte_chars[:n] + [f"<tok{i}>" for i in range(len(byte_chars), n)]
        types = [gguf.TokenType.NORMAL] * n
        bos, eos = self.hparams.get("bos_token_id"), self.hparams.get("eos_token_id")
        for t in (bos, eos):
            if t is not None:
                types[t] = gguf.TokenType.CONTROL
        self.gguf_writer.add_tokenizer_model("gpt2")
        self.gguf_writer.add_tokenizer_pre("default")
        self.gguf_writer.add_token_list(tokens)
        self.gguf_writer.add_token_types(types)
        self.gguf_writer.add_token_merges([f"{tokens[0]} {tokens[1]}"])  # llama.cpp wants at least one
        if bos is not None:
            self.gguf_writer.add_bos_token_id(bos)
        if eos is not None:
            self.gguf_writer.add_eos_token_id(eos)

    ds.DeepseekV2Model.set_vocab = minimal_vocab

    # The layout of conversions before llama.cpp PR #12801 (MLA as MQA), which many published
    # DeepSeek-V3 GGUFs still have: attn_kv_b whole, head_count_kv = head_count, key_length /
    # value_length per head, no *_mla keys. Made by undoing the split and the key changes.
    split_modify, split_params = ds.DeepseekV2Model.modify_tensors, ds.DeepseekV2Model.set_gguf_parameters
    legacy = {"on": False}

    def modify_tensors(self, data_torch, name, bid):
        if legacy["on"] and name.endswith("kv_b_proj.weight"):
            yield from super(ds.DeepseekV2Model, self).modify_tensors(data_torch, name, bid)
            return
        yield from split_modify(self, data_torch, name, bid)

    def set_gguf_parameters(self):
        heads = self.hparams["num_attention_heads"]
        split_params(self)
        if legacy["on"]:
            h = self.hparams
            self.gguf_writer.add_head_count_kv(heads)
            self.gguf_writer.add_key_length(h["qk_nope_head_dim"] + h["qk_rope_head_dim"])
            self.gguf_writer.add_value_length(h["v_head_dim"])
            self.gguf_writer.remove_key(gguf.Keys.Attention.KEY_LENGTH_MLA.format(arch="deepseek2"))
            self.gguf_writer.remove_key(gguf.Keys.Attention.VALUE_LENGTH_MLA.format(arch="deepseek2"))

    ds.DeepseekV2Model.modify_tensors = modify_tensors
    ds.DeepseekV2Model.set_gguf_parameters = set_gguf_parameters

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = os.path.join(tmp, "moonlight")
        os.makedirs(model_dir)
        shutil.copy(os.path.join(src, "model.safetensors"), model_dir)
        with open(os.path.join(src, "config.json")) as f:
            cfg = json.load(f)
        cfg.setdefault("scoring_func", "sigmoid")
        cfg.setdefault("topk_method", "noaux_tc")
        with open(os.path.join(model_dir, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
        for outtype in OUTTYPES + ["legacy-q8_0"]:
            legacy["on"] = outtype.startswith("legacy")
            out = os.path.join(dst, f"moonlight-{outtype}.gguf")
            sys.argv = ["convert_hf_to_gguf.py", model_dir, "--outtype", outtype.removeprefix("legacy-"),
                        "--outfile", out]
            convert_hf_to_gguf.main()
            print(f"wrote {out}: {os.path.getsize(out)} bytes")
        # The DeepSeek-V3-like config (q_lora, YaRN factor 32 with beta 1/1 and mscale_all_dim 1,
        # 4 expert groups of which 2 are used), its FP8 weights dequantized by the converter and
        # stored as BF16.
        v3_src = os.path.join(out_root, "v3_fp8")
        v3_dir = os.path.join(tmp, "v3_fp8")
        os.makedirs(v3_dir)
        shutil.copy(os.path.join(v3_src, "model.safetensors"), v3_dir)
        with open(os.path.join(v3_src, "config.json")) as f:
            cfg = json.load(f)
        cfg.setdefault("scoring_func", "sigmoid")
        cfg.setdefault("topk_method", "noaux_tc")
        with open(os.path.join(v3_dir, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
        v3_out = os.path.join(out_root, "v3_gguf")
        os.makedirs(v3_out, exist_ok=True)
        out = os.path.join(v3_out, "v3-bf16.gguf")
        legacy["on"] = False
        sys.argv = ["convert_hf_to_gguf.py", v3_dir, "--outtype", "bf16", "--outfile", out]
        convert_hf_to_gguf.main()
        print(f"wrote {out}: {os.path.getsize(out)} bytes")

    # FP8 x block scale rounded to BF16 is not the checkpoint's value: HF on the file's own weights.
    hf_reference(gguf, os.path.join(out_root, "v3_gguf", "v3-bf16.gguf"), os.path.join(out_root, "v3_fp8"),
                 os.path.join(out_root, "v3_gguf", "expected_bf16.safetensors"))
    # BF16 holds the checkpoint's values: its HF logits are <src>/expected.safetensors (checked here,
    # which checks the name mapping back); quantised files get their own reference.
    for outtype in OUTTYPES:
        hf_reference(gguf, os.path.join(dst, f"moonlight-{outtype}.gguf"), src,
                     None if outtype == "bf16" else os.path.join(dst, f"expected_{outtype}.safetensors"))


def hf_state_dict(gguf, path, cfg):
    """The HF tensors of a deepseek2 GGUF: every tensor dequantized by gguf-py and mapped back through
    the converter's renames, expert stacking and kv_b split (k_b was transposed per head)."""
    import numpy as np
    import torch
    from gguf.quants import dequantize
    H, nope, v, R = cfg["num_attention_heads"], cfg["qk_nope_head_dim"], cfg["v_head_dim"], cfg["kv_lora_rank"]
    plain = {"token_embd": "model.embed_tokens", "output": "lm_head", "output_norm": "model.norm"}
    layer = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm", "attn_q": "self_attn.q_proj",
             "attn_q_a": "self_attn.q_a_proj", "attn_q_a_norm": "self_attn.q_a_layernorm",
             "attn_q_b": "self_attn.q_b_proj", "attn_kv_a_mqa": "self_attn.kv_a_proj_with_mqa",
             "attn_kv_a_norm": "self_attn.kv_a_layernorm", "attn_kv_b": "self_attn.kv_b_proj",
             "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
             "ffn_down": "mlp.down_proj", "ffn_gate_inp": "mlp.gate", "ffn_gate_shexp": "mlp.shared_experts.gate_proj",
             "ffn_up_shexp": "mlp.shared_experts.up_proj", "ffn_down_shexp": "mlp.shared_experts.down_proj"}
    out, split = {}, {}
    for t in gguf.GGUFReader(path).tensors:
        shape = tuple(int(d) for d in reversed(t.shape))  # numpy order: ne reversed
        a = torch.from_numpy(np.ascontiguousarray(dequantize(t.data, t.tensor_type)).reshape(shape).astype(np.float32))
        parts = t.name.split(".")
        if parts[0] != "blk":
            out[plain[parts[0]] + ".weight"] = a
            continue
        b, kind, suffix = parts[1], parts[2], parts[3]
        pre = f"model.layers.{b}."
        if kind == "exp_probs_b":
            out[pre + "mlp.gate.e_score_correction_bias"] = a
        elif kind.endswith("_exps"):
            proj = kind.removeprefix("ffn_").removesuffix("_exps")
            for e in range(a.shape[0]):
                out[pre + f"mlp.experts.{e}.{proj}_proj.weight"] = a[e].clone()
        elif kind in ("attn_k_b", "attn_v_b"):
            split.setdefault(b, {})[kind] = a
        else:
            out[pre + layer[kind] + "." + suffix] = a
    for b, kv in split.items():
        k_b = kv["attn_k_b"].transpose(1, 2)  # [H, nope, R]
        out[f"model.layers.{b}.self_attn.kv_b_proj.weight"] = torch.cat([k_b, kv["attn_v_b"]], 1).reshape(H * (nope + v), R)
    return out


def hf_reference(gguf, gguf_path, src, out_path):
    """HF transformers' logits and greedy tokens with the weights the GGUF holds (for Q8_0: the
    rounded values), for the prompts of <src>/expected.safetensors."""
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import DeepseekV3Config, DeepseekV3ForCausalLM
    cfg = json.load(open(os.path.join(src, "config.json")))
    config = DeepseekV3Config(**{k: v for k, v in cfg.items()
                                 if k not in ("architectures", "torch_dtype", "quantization_config")})
    model = DeepseekV3ForCausalLM(config).to(torch.float32).eval()
    state = hf_state_dict(gguf, gguf_path, cfg)
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all("rotary" in m for m in missing), (missing, unexpected)
    hf = load_file(os.path.join(src, "expected.safetensors"))
    expected = {}
    worst = 0.0
    with torch.no_grad():
        for i in range(len([k for k in hf if k.startswith("prompt_")])):
            ids = hf[f"prompt_{i}"].long()[None]
            logits = model(ids).logits[0].float()
            out = model.generate(ids, max_new_tokens=32, min_new_tokens=32, do_sample=False, use_cache=True,
                                 pad_token_id=cfg["eos_token_id"], eos_token_id=None)
            expected[f"prompt_{i}"] = hf[f"prompt_{i}"]
            expected[f"logits_{i}"] = logits.contiguous()
            expected[f"greedy_{i}"] = out[0, ids.shape[1]:].to(torch.int32).contiguous()
            worst = max(worst, ((logits - hf[f"logits_{i}"]).abs().max() / hf[f"logits_{i}"].abs().max()).item())
    print(f"{gguf_path}: HF logits with the GGUF's weights differ from those with the checkpoint's by "
          f"{worst:.3e} (relative to the largest logit)")
    if out_path is None:
        assert worst < 1e-5, "the GGUF does not hold the checkpoint's weights: the name mapping is wrong"
        return
    save_file(expected, out_path, metadata={"transformers": __import__("transformers").__version__,
                                            "torch": torch.__version__, "weights": os.path.basename(gguf_path)})


if __name__ == "__main__":
    main()
