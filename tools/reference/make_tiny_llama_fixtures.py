#!/usr/bin/env python3
"""Tiny llama-architecture GGUF files for the parts of the llama format SmolLM2 does not use,
and llama.cpp's outputs on them.

Each model is written with PyPI's `gguf` package (llama.cpp's own writer) from seeded random
weights, and run by llama.cpp through llama-cpp-python on random token ids: the logits after
each prompt and 32 greedily decoded tokens. tests/llama/test_llama_variants.cpp checks troupe
against tests/fixtures/llama/tiny/reference.json without llama.cpp.

  llama3_rope_freqs  Llama 3.1-style `rope_freqs.weight` (per-pair frequency divisors computed
                     with Llama 3.1's formula), grouped-query attention 4:1, tied output
  linear_biases      linear RoPE scaling (factor 4), q/k/v/o and feed-forward biases, a
                     separate output matrix, an f16 embedding, Q5_0 feed-forward weights
  yarn_fused_qkv     YaRN RoPE scaling (factor 4, trained on 32 positions), fused attn_qkv
  qwen2_neox         the qwen2 architecture: NEOX RoPE (halves of each head), q/k/v biases,
                     base 1e6, no rope.dimension_count, an output bias
  phi_fused          the phi3 architecture: NEOX RoPE, fused attn_qkv, gate and up fused in
                     ffn_up, q scaled before attention
  float_matrices     every weight matrix f32, f16 or bf16 (q, gate: f16; k, up: bf16; v, down:
                     f32; attn_output bf16; f16 embedding and output): llama.cpp's two orders
                     for such products (vec_dot for one token, tinyBLAS for several), which
                     troupe reproduces (kernels/cpu/float_dot.hpp)
  phi_longrope       phi3 with LongRoPE (Phi-3 128k, Phi-3.5): rope_factors_long/short.weight and
                     the attention factor convert_hf_to_gguf.py writes; original context 64, so
                     llama.cpp's 256-position context takes the long factors
  phi_longrope_short the same with original context 1024 of 4096: the short factors
  qwen3_qk_norm      the qwen3 architecture: NEOX rope, each head of q and k RMS-normalised
                     (attn_q_norm, attn_k_norm), heads of 48 (attention.key_length) with a hidden
                     size of 64 for 2 heads
  qwen3moe_experts   qwen3moe: qwen3's attention and 8 softmax-routed experts of 32 rows
                     (expert_feed_forward_length), 2 per token
  gemma3_sliding     the gemma3 architecture: embeddings times sqrt(hidden), q/k norms, q scaled
                     before attention, norms after attention and after the feed-forward, GELU,
                     final logit soft-capping (15), and sliding-window attention (16 positions)
                     on every other layer (sliding_window_pattern 2), whose RoPE has its own base
                     and no linear scaling (the global layers' factor is 4)
  gemma2_softcap     the gemma2 architecture: gemma3's without q/k norms, attention scores
                     soft-capped (5), the logits at llama.cpp's default (30), a sliding window of
                     16 positions on every other layer by default, rotated as the others
  qwen2moe_shared    qwen2moe: qwen2's attention (q/k/v biases), 4 softmax-routed experts of 32
                     rows, 2 per token, weights not renormalised, and a shared expert of 64 rows
                     gated by sigmoid(ffn_gate_inp_shexp · x)
  granite_scales     IBM Granite 3 (granite): embedding, residual, attention and logit multipliers
  granitemoe_shared  granitemoe: Granite's multipliers, 4 experts of 32 rows (2 per token) and an
                     ungated shared expert of 64 rows
  smollm3_nope       SmolLM3 (smollm3): 4 layers, the fourth without RoPE
  olmo2_post_norms   OLMo 2 (olmo2): no norms before attention and feed-forward, norms after
                     them, q and k RMS-normalised whole
  olmo3_sliding      OLMo 3 (olmo2 with attention.sliding_window): a window of 16 on three
                     layers of four, YaRN scaling on the fourth only
  ernie45_dense      ERNIE 4.5 dense (ernie4_5): llama's layer under its own architecture name
  mistral3_temperature  Ministral 3 (mistral3): YaRN with the file's betas and log multiplier,
                     Llama 4's attention temperature (0.1 over an original context of 32)
  phi4mini_partial   Phi-4-mini's shape: LongRoPE on 24 of each head's 32 dimensions, tied
                     embeddings
  mixtral_experts    Mixtral's layout: 8 SwiGLU experts per layer (3-D ffn_*_exps tensors), an
                     f32 router (ffn_gate_inp), 2 experts per token; experts in Q8_0, Q4_0, Q5_1
                     (layer 0) and Q4_1, Q5_0, F16 (layer 1)
  mixtral_q3_k_m     4 experts of 256 rows, 2 per token, quantised by llama.cpp itself
                     (llama_model_quantize, Q3_K_M) from f32: Q4_K ffn_down_exps (summed in
                     ggml's tiled order by experts with 8 tokens or more, vec_dot's below),
                     Q4_0 gate and up (llama.cpp's fallback for 64-wide rows)

It also writes files troupe must refuse with a clear error (bad_*.gguf: metadata and one
tensor only).

The references come from llama.cpp built for AVX-512 with AVX512-BF16 (GGML_NATIVE on Zen 4 or
Sapphire Rapids), the arithmetic troupe reproduces on every CPU.

Usage (needs llama-cpp-python, gguf, numpy; see tools/reference/llama_cpp_reference.py):
  python3 tools/reference/make_tiny_llama_fixtures.py
"""

import hashlib
import json
import math
import sys
from pathlib import Path

import gguf
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llama_cpp_reference import greedy_run, load_llama  # noqa: E402

OUT = Path(__file__).resolve().parents[2] / "tests/fixtures/llama/tiny"
HIDDEN, HEADS, KV_HEADS, FFN, LAYERS = 64, 2, 1, 128, 2
HEAD_DIM = HIDDEN // HEADS
CONTEXT = 256
GENERATED = 32


def bytes_to_unicode():
    """GPT-2's byte-level alphabet: byte b as one printable character."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def add_tokenizer(w):
    """A byte-level BPE vocabulary: 3 control tokens, 256 bytes, a few merges."""
    alphabet = bytes_to_unicode()
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokens = special + [alphabet[b] for b in range(256)]
    merges = []
    for a, b in [("t", "h"), ("th", "e"), ("Ġ", "t"), ("Ġt", "he"), ("i", "n"), ("Ġ", "a")]:
        merges.append(f"{a} {b}")
        tokens.append(a + b)
    w.add_string("tokenizer.ggml.model", "gpt2")
    w.add_string("tokenizer.ggml.pre", "smollm")
    w.add_array("tokenizer.ggml.tokens", tokens)
    w.add_array("tokenizer.ggml.token_type", [3] * len(special) + [1] * (len(tokens) - 3))
    w.add_array("tokenizer.ggml.merges", merges)
    w.add_uint32("tokenizer.ggml.bos_token_id", 1)
    w.add_uint32("tokenizer.ggml.eos_token_id", 2)
    w.add_bool("tokenizer.ggml.add_bos_token", False)
    return len(tokens)


def llama3_freq_factors(dims, base, factor=8.0, low=1.0, high=4.0, original=8192):
    """Llama 3.1's rope scaling as per-pair divisors of the angle (what convert_hf_to_gguf.py
    stores in rope_freqs.weight), with a small original context so that every regime shows."""
    out = []
    low_wavelen, high_wavelen = original / low, original / high
    for i in range(0, dims, 2):
        freq = 1.0 / (base ** (i / dims))
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            out.append(1.0)
        elif wavelen > low_wavelen:
            out.append(factor)
        else:
            smooth = (original / wavelen - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


class Model:
    def __init__(self, name, seed, arch="llama", rope_base=10000.0, ffn=FFN, experts=0,
                 experts_used=0, context=CONTEXT, n_layers=LAYERS, rope_dims=HEAD_DIM):
        self.name = name
        self.path = OUT / f"{name}.gguf"
        self.rng = np.random.default_rng(seed)
        self.w = gguf.GGUFWriter(str(self.path), arch)
        self.w.add_string("general.name", f"troupe tiny {name}")
        self.w.add_uint32(f"{arch}.context_length", context)
        self.w.add_uint32(f"{arch}.embedding_length", HIDDEN)
        self.n_layers = n_layers
        self.w.add_uint32(f"{arch}.block_count", n_layers)
        self.w.add_uint32(f"{arch}.feed_forward_length", ffn)
        if experts:
            self.w.add_uint32(f"{arch}.expert_count", experts)
            self.w.add_uint32(f"{arch}.expert_used_count", experts_used)
        self.w.add_uint32(f"{arch}.attention.head_count", HEADS)
        self.w.add_uint32(f"{arch}.attention.head_count_kv", KV_HEADS)
        if arch not in ("qwen2", "qwen2moe", "qwen3", "qwen3moe", "gemma2", "gemma3", "olmo2"):
            self.w.add_uint32(f"{arch}.rope.dimension_count", rope_dims)
        self.w.add_float32(f"{arch}.attention.layer_norm_rms_epsilon", 1e-5)
        self.w.add_float32(f"{arch}.rope.freq_base", rope_base)
        self.vocab = add_tokenizer(self.w)

    def matrix(self, name, rows, cols, qtype, scale=1.0, experts=0):
        """rows × cols weights (GGUF shape [cols, rows]), std scale/sqrt(cols); with experts,
        that many such matrices (GGUF shape [cols, rows, experts])."""
        shape = (experts, rows, cols) if experts else (rows, cols)
        x = (self.rng.standard_normal(shape) * scale / math.sqrt(cols)).astype(np.float32)
        if qtype == gguf.GGMLQuantizationType.F32:
            self.w.add_tensor(name, x)
        elif qtype == gguf.GGMLQuantizationType.F16:
            self.w.add_tensor(name, x.astype(np.float16))
        elif qtype == gguf.GGMLQuantizationType.BF16:  # round to nearest-even, as ggml does
            u = x.view(np.uint32).astype(np.uint64)
            h = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
            self.w.add_tensor(name, h, raw_shape=h.shape, raw_dtype=qtype)
        else:
            q = gguf.quants.quantize(x, qtype)
            self.w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=qtype)

    def vector(self, name, n, mean=0.0, std=0.1):
        self.w.add_tensor(name, (mean + std * self.rng.standard_normal(n)).astype(np.float32))

    def write(self):
        self.w.write_header_to_file()
        self.w.write_kv_data_to_file()
        self.w.write_tensors_to_file()
        self.w.close()


Q8_0 = gguf.GGMLQuantizationType.Q8_0
Q4_1 = gguf.GGMLQuantizationType.Q4_1
Q4_0 = gguf.GGMLQuantizationType.Q4_0
Q5_1 = gguf.GGMLQuantizationType.Q5_1
Q5_0 = gguf.GGMLQuantizationType.Q5_0
F16 = gguf.GGMLQuantizationType.F16
BF16 = gguf.GGMLQuantizationType.BF16
F32 = gguf.GGMLQuantizationType.F32


def layers(m, fused_qkv=False, biases=False, qkv_biases=False, ffn_type=Q4_1,
           fused_gate_up=False, types=None, head_dim=HEAD_DIM, qk_norm=False, post_norms=False,
           pre_norms=True, qk_norm_whole=False):
    """types: matrix name (attn_q, ...) -> type, overriding the defaults below."""
    q_dim, kv_dim = HEADS * head_dim, KV_HEADS * head_dim
    types = types or {}
    for i in range(m.n_layers):
        p = f"blk.{i}."
        if pre_norms:
            m.vector(p + "attn_norm.weight", HIDDEN, mean=1.0)
        if qk_norm_whole:
            m.vector(p + "attn_q_norm.weight", q_dim, mean=1.0, std=0.3)
            m.vector(p + "attn_k_norm.weight", kv_dim, mean=1.0, std=0.3)
        if qk_norm:
            m.vector(p + "attn_q_norm.weight", head_dim, mean=1.0, std=0.3)
            m.vector(p + "attn_k_norm.weight", head_dim, mean=1.0, std=0.3)
        if post_norms:
            m.vector(p + "post_attention_norm.weight", HIDDEN, mean=1.0, std=0.3)
            m.vector(p + "post_ffw_norm.weight", HIDDEN, mean=1.0, std=0.3)
        if fused_qkv:
            m.matrix(p + "attn_qkv.weight", q_dim + 2 * kv_dim, HIDDEN, Q8_0, scale=3.0)
        else:
            m.matrix(p + "attn_q.weight", q_dim, HIDDEN, types.get("attn_q", Q8_0), scale=2.0)
            m.matrix(p + "attn_k.weight", kv_dim, HIDDEN, types.get("attn_k", Q8_0), scale=2.0)
            m.matrix(p + "attn_v.weight", kv_dim, HIDDEN, types.get("attn_v", Q8_0), scale=3.0)
        m.matrix(p + "attn_output.weight", HIDDEN, q_dim, types.get("attn_output", Q8_0),
                 scale=3.0)
        if pre_norms:
            m.vector(p + "ffn_norm.weight", HIDDEN, mean=1.0)
        if fused_gate_up:  # phi3: gate rows, then up rows, in ffn_up
            m.matrix(p + "ffn_up.weight", 2 * FFN, HIDDEN, ffn_type, scale=2.0)
        else:
            m.matrix(p + "ffn_gate.weight", FFN, HIDDEN, types.get("ffn_gate", ffn_type), scale=2.0)
            m.matrix(p + "ffn_up.weight", FFN, HIDDEN, types.get("ffn_up", ffn_type), scale=2.0)
        m.matrix(p + "ffn_down.weight", HIDDEN, FFN, types.get("ffn_down", ffn_type), scale=3.0)
        if biases or qkv_biases:
            m.vector(p + "attn_q.bias", q_dim, std=0.5)
            m.vector(p + "attn_k.bias", kv_dim, std=0.5)
            m.vector(p + "attn_v.bias", kv_dim)
        if biases:
            m.vector(p + "attn_output.bias", HIDDEN)
            m.vector(p + "ffn_gate.bias", FFN)
            m.vector(p + "ffn_up.bias", FFN)
            m.vector(p + "ffn_down.bias", HIDDEN)


def moe_layers(m, ffn, experts, types, head_dim=HEAD_DIM, qk_norm=False, qkv_biases=False,
               shared_ffn=0, gated_shared=True):
    """Attention as in layers(), then Mixtral's feed-forward: an f32 router and `experts`
    experts of ffn rows, and a shared expert of shared_ffn rows (gated by ffn_gate_inp_shexp as
    qwen2moe's, or not as granitemoe's). types: one {gate, up, down: type} per layer."""
    q_dim, kv_dim = HEADS * head_dim, KV_HEADS * head_dim
    for i in range(m.n_layers):
        p = f"blk.{i}."
        m.vector(p + "attn_norm.weight", HIDDEN, mean=1.0)
        if qk_norm:
            m.vector(p + "attn_q_norm.weight", head_dim, mean=1.0, std=0.3)
            m.vector(p + "attn_k_norm.weight", head_dim, mean=1.0, std=0.3)
        m.matrix(p + "attn_q.weight", q_dim, HIDDEN, types[i].get("attn", Q8_0), scale=2.0)
        m.matrix(p + "attn_k.weight", kv_dim, HIDDEN, types[i].get("attn", Q8_0), scale=2.0)
        m.matrix(p + "attn_v.weight", kv_dim, HIDDEN, types[i].get("attn", Q8_0), scale=3.0)
        m.matrix(p + "attn_output.weight", HIDDEN, q_dim, types[i].get("attn", Q8_0), scale=3.0)
        m.vector(p + "ffn_norm.weight", HIDDEN, mean=1.0)
        m.matrix(p + "ffn_gate_inp.weight", experts, HIDDEN, F32, scale=3.0)
        m.matrix(p + "ffn_gate_exps.weight", ffn, HIDDEN, types[i]["gate"], scale=2.0,
                 experts=experts)
        m.matrix(p + "ffn_up_exps.weight", ffn, HIDDEN, types[i]["up"], scale=2.0,
                 experts=experts)
        m.matrix(p + "ffn_down_exps.weight", HIDDEN, ffn, types[i]["down"], scale=3.0,
                 experts=experts)
        if qkv_biases:
            m.vector(p + "attn_q.bias", q_dim, std=0.5)
            m.vector(p + "attn_k.bias", kv_dim, std=0.5)
            m.vector(p + "attn_v.bias", kv_dim)
        if shared_ffn and gated_shared:
            m.vector(p + "ffn_gate_inp_shexp.weight", HIDDEN, std=0.3)
        if shared_ffn:
            m.matrix(p + "ffn_gate_shexp.weight", shared_ffn, HIDDEN, Q8_0, scale=2.0)
            m.matrix(p + "ffn_up_shexp.weight", shared_ffn, HIDDEN, Q8_0, scale=2.0)
            m.matrix(p + "ffn_down_shexp.weight", HIDDEN, shared_ffn, Q8_0, scale=3.0)


def quantize_with_llama_cpp(llama_cpp, src, dst, ftype):
    """llama.cpp's own quantiser (llama_model_quantize), as a user makes a Q3_K_M file."""
    import ctypes
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = 2
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(),
                                        ctypes.byref(params))
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize({src}) returned {rc}")


def make_models():
    models = []

    m = Model("llama3_rope_freqs", 1)
    m.w.add_tensor("rope_freqs.weight", llama3_freq_factors(HEAD_DIM, 10000.0, original=64))
    m.matrix("token_embd.weight", m.vocab, HIDDEN, Q8_0)
    m.vector("output_norm.weight", HIDDEN, mean=1.0)
    layers(m)
    m.write()
    models.append(m)

    m = Model("linear_biases", 2)
    m.w.add_string("llama.rope.scaling.type", "linear")
    m.w.add_float32("llama.rope.scaling.factor", 4.0)
    m.matrix("token_embd.weight", m.vocab, HIDDEN, F16)
    m.matrix("output.weight", m.vocab, HIDDEN, Q8_0, scale=4.0)
    m.vector("output_norm.weight", HIDDEN, mean=1.0)
    layers(m, biases=True, ffn_type=Q5_0)
    m.write()
    models.append(m)

    m = Model("yarn_fused_qkv", 3)
    m.w.add_string("llama.rope.scaling.type", "yarn")
    m.w.add_float32("llama.rope.scaling.factor", 4.0)
    m.w.add_uint32("llama.rope.scaling.original_context_length", 32)
    m.matrix("token_embd.weight", m.vocab, HIDDEN, Q8_0)
    m.vector("output_norm.weight", HIDDEN, mean=1.0)
    layers(m, fused_qkv=True)
    m.write()
    models.append(m)

    m = Model("qwen2_neox", 4, arch="qwen2", rope_base=1000000.0)
    m.matrix("token_embd.weight", m.vocab, HIDDEN, Q8_0)
    m.vector("output_norm.weight", HIDDEN, mean=1.0)
    m.vector("output.bias", m.vocab)
    layers(m, qkv_biases=True)
    m.write()
    models.append(m)

    # Named without "phi3": llama.cpp keys its Phi-3 vocabulary rules on the model's name.
    m = Model("phi_fused", 5, arch="phi3")
    m.matrix("token_embd.weight", m.vocab, HIDDEN, Q8_0)
    m.matrix("output.weight", m.vocab, HIDDEN, Q8_0, scale=4.0)
    m.vector("output_norm.weight", HIDDEN, mean=1.0)
    layers(m, fused_qkv=True, fused_gate_up=True, ffn_type=Q8_0)
    m.write()
    models.append(m)

    m = Model("float_matrices", 6)
    m.matrix("token_embd.weight", m.vocab, HIDDEN, F16)
    m.matrix("output.weight", m.vocab, HIDDEN, F16, scale=4.0)
    m.vector("output_norm.weight", HIDDEN, mean=1.0)
    layers(m, types={"attn_q": F16, "attn_k": BF16, "attn_v": F32, "attn_output": BF16,
                     "ffn_gate": F16, "ffn_up": BF16, "ffn_down": F32})
    m.write()
    models.append(m)

    for name, seed, original, context in [("phi_longrope", 9, 64, 4096),
                                          ("phi_longrope_short", 10, 1024, 4096)]:
        m = Model(name, seed, arch="phi3", context=context)
        m.w.add_string("phi3.rope.scaling.type", "longrope")
        m.w.add_uint32("phi3.rope.scaling.original_context_length", original)
        scale = context / original
        m.w.add_float32("phi3.rope.scaling.attn_factor",
                        math.sqrt(1 + math.log(scale) / math.log(original)))
        pairs = HEAD_DIM // 2
        m.w.add_tensor("rope_factors_long.weight",
                       (1.0 + 7.0 * np.arange(pairs) / pairs).astype(np.float32))
        m.w.add_tensor("rope_factors_short.weight",
                       (1.0 + 0.3 * np.arange(pairs) / pairs).astype(np.float32))
        m.matrix("token_embd.weight", m.vocab, HIDDEN, Q8_0)
        m.matrix("output.weight", m.vocab, HIDDEN, Q8_0, scale=4.0)
        m.vector("output_norm.weight", HIDDEN, mean=1.0)
        layers(m, fused_qkv=True, fused_gate_up=True, ffn_type=Q8_0)
        m.write()
        models.append(m)

    qwen3_head = 48
    m = Model("qwen3_qk_norm", 11, arch="qwen3", rope_base=1000000.0)
    m.w.add_uint32("qwen3.attention.key_length", qwen3_head)
    m.w.add_uint32("qwen3.attention.value_length", qwen3_head)
    m.matrix("token_embd.weight", m.vocab, HIDDEN, Q8_0)
    m.vector("output_norm.weight", HIDDEN, mean=1.0)
    layers(m, ffn_type=Q8_0, head_dim=qwen3_head, qk_norm=True)
    m.write()
    models.append(m)

    m = Model("qwen3moe_experts", 12, arch="qwen3moe", rope_base=1000000.0, experts=8,
              experts_used=2)
    m.w.add_uint32("qwen3moe.attention.key_length", qwen3_head)
    m.w.add_uint32("qwen3moe.attention.value_length", qwen3_head)
    m.w.add_uint32("qwen3moe.expert_feed_forward_length", 32)
    m.matrix("token_embd.weight", m.vocab, HIDDEN, Q8_0)
    m.vector("output_norm.weight", HIDDEN, mean=1.0)
    moe_layers(m, 32, 8, [{"gate": Q8_0, "up": Q8_0, "down": Q8_0},
                          {"gate": Q4_0, "up": Q4_1, "down": Q8_0}],
               head_dim=qwen3_head, qk_norm=True)
    m.write()
    models.append(m)

    m = Model("gemma3_sliding", 13, arch="gemma3", rope_base=1000000.0)
    m.w.add_uint32("gemma3.attention.key_length", qwen3_head)
    m.w.add_uint32("gemma3.attention.value_length", qwen3_head)
    m.w.add_uint32("gemma3.attention.sliding_window", 16)
    m.w.add_uint32("gemma3.attention.sliding_window_pattern", 2)
    m.w.add_float32("gemma3.rope.freq_base_swa", 10000.0)
    m.w.add_string("gemma3.rope.scaling.type", "linear")
    m.w.add_float32("gemma3.rope.scaling.factor", 4.0)
    m.w.add_float32("gemma3.final_logit_softcapping", 15.0)
    m.matrix("token_embd.weight", m.vocab, HIDDEN, Q8_0, scale=0.2)
    m.vector("output_norm.weight", HIDDEN, mean=1.0)
    layers(m, ffn_type=Q8_0, head_dim=qwen3_head, qk_norm=True, post_norms=True)
    m.write()
    models.append(m)

    m = Model("gemma2_softcap", 14, arch="gemma2")
    m.w.add_uint32("gemma2.attention.key_length", qwen3_head)
    m.w.add_uint32("gemma2.attention.value_length", qwen3_head)
    m.w.add_uint32("gemma2.attention.sliding_window", 16)
    m.w.add_float32("gemma2.attn_logit_softcapping", 5.0)
    m.matrix("token_embd.weight", m.vocab, HIDDEN, Q8_0, scale=0.2)
    m.vector("output_norm.weight", HIDDEN, mean=1.0)
    layers(m, ffn_type=Q8_0, head_dim=qwen3_head, post_norms=True, types={"attn_q": Q8_0})
    m.write()
    models.append(m)

    m = Model("qwen2moe_shared", 15, arch="qwen2moe", rope_base=1000000.0, experts=4,
              experts_used=2)
    m.w.add_uint32("qwen2moe.expert_feed_forward_length", 32)
    m.w.add_uint32("qwen2moe.expert_shared_feed_forward_length", 64)
    m.matrix("token_embd.weight", m.vocab, HIDDEN, Q8_0)
    m.matrix("output.weight", m.vocab, HIDDEN, Q8_0, scale=4.0)  # llama.cpp requires it here
    m.vector("output_norm.weight", HIDDEN, mean=1.0)
    moe_layers(m, 32, 4, [{"gate": Q8_0, "up": Q8_0, "down": Q8_0}] * LAYERS, qkv_biases=True,
               shared_ffn=64)
    m.write()
    models.append(m)

    def granite_scales(m, arch):
        m.w.add_float32(f"{arch}.logit_scale", 3.0)
        m.w.add_float32(f"{arch}.residual_scale", 0.22)
        m.w.add_float32(f"{arch}.embedding_scale", 12.0)
        m.w.add_float32(f"{arch}.attention.scale", 0.0078125)

    m = Model("granite_scales", 16, arch="granite")
    granite_scales(m, "granite")
    m.matrix("token_embd.weight", m.vocab, HIDDEN, Q8_0, scale=0.1)
    m.vector("output_norm.weight", HIDDEN, mean=1.0)
    layers(m, ffn_type=Q8_0)
    m.write()
    models.append(m)

    m = Model("granitemoe_shared", 17, arch="granitemoe", ffn=32, experts=4, experts_used=2)
    granite_scales(m, "granitemoe")
    m.w.add_uint32("granitemoe.expert_shared_feed_forward_length", 64)
    m.matrix("token_embd.weight", m.vocab, HIDDEN, Q8_0, scale=0.1)
    m.vector("output_norm.weight", HIDDEN, mean=1.0)
    moe_layers(m, 32, 4, [{"gate": Q8_0, "up": Q8_0, "down": Q8_0}] * LAYERS, shared_ffn=64,
               gated_shared=False)
    m.write()
    models.append(m)

    m = Model("smollm3_nope", 18, arch="smollm3", n_layers=4)
    m.matrix("token_embd.weight", m.vocab, HIDDEN, Q8_0)
    m.vector("output_norm.weight", HIDDEN, mean=1.0)
    layers(m, ffn_type=Q8_0)
    m.write()
    models.append(m)

    m = Model("mixtral_experts", 7, ffn=64, experts=8, experts_used=2)
    m.matrix("token_embd.weight", m.vocab, HIDDEN, Q8_0)
    m.vector("output_norm.weight", HIDDEN, mean=1.0)
    moe_layers(m, 64, 8, [{"gate": Q8_0, "up": Q4_0, "down": Q5_1},
                          {"gate": Q4_1, "up": Q5_0, "down": F16}])
    m.write()
    models.append(m)

    # Written in f32, then quantised by llama.cpp in main() (quantize_to).
    m = Model("mixtral_q3_k_m.f32", 8, ffn=256, experts=4, experts_used=2)
    m.matrix("token_embd.weight", m.vocab, HIDDEN, F32)
    m.vector("output_norm.weight", HIDDEN, mean=1.0)
    moe_layers(m, 256, 4, [{"gate": F32, "up": F32, "down": F32, "attn": F32}] * LAYERS)
    m.write()
    m.quantize_to = ("mixtral_q3_k_m", 12)  # LLAMA_FTYPE_MOSTLY_Q3_K_M
    models.append(m)

    # OLMo 2: no pre-norms, post-norms, q and k normalised whole; OLMo 3: the same with a window of
    # 16 on three layers of four, YaRN on the others only.
    m = Model("olmo2_post_norms", 20, arch="olmo2", rope_base=500000.0)
    m.matrix("token_embd.weight", m.vocab, HIDDEN, Q8_0)
    m.matrix("output.weight", m.vocab, HIDDEN, Q8_0, scale=4.0)
    m.vector("output_norm.weight", HIDDEN, mean=1.0)
    layers(m, ffn_type=Q8_0, post_norms=True, pre_norms=False, qk_norm_whole=True)
    m.write()
    models.append(m)

    m = Model("olmo3_sliding", 21, arch="olmo2", rope_base=500000.0, n_layers=4)
    m.w.add_uint32("olmo2.attention.sliding_window", 16)
    m.w.add_string("olmo2.rope.scaling.type", "yarn")
    m.w.add_float32("olmo2.rope.scaling.factor", 4.0)
    m.w.add_uint32("olmo2.rope.scaling.original_context_length", 32)
    m.matrix("token_embd.weight", m.vocab, HIDDEN, Q8_0)
    m.matrix("output.weight", m.vocab, HIDDEN, Q8_0, scale=4.0)
    m.vector("output_norm.weight", HIDDEN, mean=1.0)
    layers(m, ffn_type=Q8_0, post_norms=True, pre_norms=False, qk_norm_whole=True)
    m.write()
    models.append(m)

    m = Model("ernie45_dense", 22, arch="ernie4_5", rope_base=500000.0)
    m.matrix("token_embd.weight", m.vocab, HIDDEN, Q8_0)
    m.vector("output_norm.weight", HIDDEN, mean=1.0)
    layers(m, ffn_type=Q8_0)
    m.write()
    models.append(m)

    m = Model("mistral3_temperature", 23, arch="mistral3", rope_base=1000000.0)
    m.w.add_string("mistral3.rope.scaling.type", "yarn")
    m.w.add_float32("mistral3.rope.scaling.factor", 4.0)
    m.w.add_uint32("mistral3.rope.scaling.original_context_length", 32)
    m.w.add_float32("mistral3.rope.scaling.yarn_beta_fast", 16.0)
    m.w.add_float32("mistral3.rope.scaling.yarn_beta_slow", 2.0)
    m.w.add_float32("mistral3.rope.scaling.yarn_log_multiplier", 0.5)
    m.w.add_float32("mistral3.attention.temperature_scale", 0.1)
    m.matrix("token_embd.weight", m.vocab, HIDDEN, Q8_0)
    m.matrix("output.weight", m.vocab, HIDDEN, Q8_0, scale=4.0)
    m.vector("output_norm.weight", HIDDEN, mean=1.0)
    layers(m, ffn_type=Q8_0)
    m.write()
    models.append(m)

    # Phi-4-mini's shape: LongRoPE on 24 of 32 dimensions per head (partial_rotary_factor 0.75),
    # tied embeddings.
    m = Model("phi4mini_partial", 19, arch="phi3", context=4096, rope_dims=24)
    m.w.add_string("phi3.rope.scaling.type", "longrope")
    m.w.add_uint32("phi3.rope.scaling.original_context_length", 64)
    m.w.add_float32("phi3.rope.scaling.attn_factor", math.sqrt(1 + math.log(64) / math.log(64)))
    m.w.add_tensor("rope_factors_long.weight", (1.0 + 5.0 * np.arange(12) / 12).astype(np.float32))
    m.w.add_tensor("rope_factors_short.weight", (1.0 + 0.2 * np.arange(12) / 12).astype(np.float32))
    m.matrix("token_embd.weight", m.vocab, HIDDEN, Q8_0)
    m.vector("output_norm.weight", HIDDEN, mean=1.0)
    layers(m, fused_qkv=True, fused_gate_up=True, ffn_type=Q8_0)
    m.write()
    models.append(m)
    return models


def make_bad_files():
    """Files troupe must refuse: (file, what the error names)."""
    bad = []

    def small(name, extra):
        m = Model(name, 9)
        extra(m)
        m.w.add_tensor("token_embd.weight", np.zeros((4, HIDDEN), dtype=np.float32))
        m.write()

    small("bad_experts_used", lambda m: (m.w.add_uint32("llama.expert_count", 4),
                                         m.w.add_uint32("llama.expert_used_count", 5)))
    bad.append(("bad_experts_used.gguf", "llama.expert_used_count"))
    small("bad_shared_experts", lambda m: (m.w.add_uint32("llama.expert_count", 4),
                                           m.w.add_uint32("llama.expert_used_count", 2),
                                           m.w.add_uint32("llama.expert_shared_feed_forward_length",
                                                          64)))
    bad.append(("bad_shared_experts.gguf", "shared experts"))
    small("bad_rope_type", lambda m: m.w.add_string("llama.rope.scaling.type", "dynamic"))
    bad.append(("bad_rope_type.gguf", "'dynamic' is not supported"))
    small("bad_rope_freqs", lambda m: m.w.add_tensor(
        "rope_freqs.weight", np.array([1.0] * (HEAD_DIM // 2 - 1) + [-2.0], dtype=np.float32)))
    bad.append(("bad_rope_freqs.gguf", "rope_freqs.weight"))
    small("bad_rope_dims", lambda m: m.w.add_uint32("llama.rope.dimension_count", 31))
    bad.append(("bad_rope_dims.gguf", "llama.rope.dimension_count"))
    small("bad_longrope_factors", lambda m: m.w.add_tensor(
        "rope_factors_long.weight", np.ones(HEAD_DIM // 2, dtype=np.float32)))
    bad.append(("bad_longrope_factors.gguf", "LongRoPE"))
    return bad


def llama_cpp_cases(llama_cpp, path, rng, kv_type):
    """llama.cpp on the model at `path` (CONTEXT positions, flash attention off, a KV cache of
    ggml type `kv_type`, 2 threads) for random prompts of 1, 7, 33, 100 and 180 token ids drawn
    from `rng`: each case's whole first-step logits and GENERATED greedy tokens."""
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=CONTEXT, n_batch=CONTEXT, n_ubatch=CONTEXT,
                          n_threads=2, n_threads_batch=2, flash_attn=False, type_k=kv_type,
                          type_v=kv_type, verbose=False, seed=0)
    n_vocab = llm.n_vocab()
    cases = []
    for length in (1, 7, 33, 100, 180):
        prompt = [int(t) for t in rng.integers(3, n_vocab, length)]
        logits, generated = greedy_run(llm, prompt, GENERATED)
        first = [float(f"{v:.9g}") for v in logits]  # 9 digits: the float's exact bits
        cases.append({"prompt_tokens": prompt, "first_logits": first, "greedy_tokens": generated})
        print(f"{path.name}: {length} tokens -> {generated[:12]}", file=sys.stderr)
    del llm
    return cases


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.gguf"):
        old.unlink()
    models = make_models()
    bad = make_bad_files()
    llama_cpp = load_llama()
    for m in models:
        if hasattr(m, "quantize_to"):
            name, ftype = m.quantize_to
            quantized = OUT / f"{name}.gguf"
            quantize_with_llama_cpp(llama_cpp, m.path, quantized, ftype)
            m.path.unlink()
            m.name, m.path = name, quantized
    rng = np.random.default_rng(42)
    out = {"generator": "tools/reference/make_tiny_llama_fixtures.py",
           "llama_cpp_python": llama_cpp.__version__,
           "settings": {"n_threads": 2, "n_ctx": CONTEXT, "flash_attn": False, "kv_type": "f32",
                        "greedy_tokens": GENERATED},
           "models": [], "refused": [{"file": f, "error_mentions": e} for f, e in bad]}
    for m in models:
        cases = llama_cpp_cases(llama_cpp, m.path, rng, llama_cpp.GGML_TYPE_F32)
        out["models"].append({"file": m.path.name,
                              "sha256": hashlib.sha256(m.path.read_bytes()).hexdigest(),
                              "cases": cases})
    (OUT / "reference.json").write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
