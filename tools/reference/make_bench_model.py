#!/usr/bin/env python3
"""GGUF files with random weights in the shapes of models that cannot be downloaded here, for
benchmarking troupe's forward pass of their architecture against llama.cpp's.

Shapes (--shape), sized to run on 2 cores, each with SmolLM2's 49,152-token vocabulary and
tokenizer (copied from the embedded SmolLM2 file, so the benchmark prompt tokenises as in every
other benchmark):
  mixtral  the llama architecture with Mixtral's mixture of experts: 8 layers, hidden 768 (12
           heads, 4 KV heads), 8 SwiGLU experts of 2048 rows, 2 per token, an f32 router
  qwen3    Qwen3-0.6B's layer (hidden 1024, 16 heads of 128, 8 KV heads, feed-forward 3072,
           q/k norms) with 8 layers
  gemma3   Gemma 3 270M's (hidden 640, 4 heads of 256, 1 KV head, feed-forward 2048, a window
           of 512 on five layers of six, GELU, post-norms) with all its 18 layers
Each is written in f32 and then quantised by llama.cpp itself (llama_model_quantize), as a user
quantises a model.

Usage (needs llama-cpp-python, gguf, numpy; see tools/reference/llama_cpp_reference.py):
  python3 tools/reference/make_bench_model.py --shape mixtral --out /tmp/mixtral_shaped.Q4_K_M.gguf \\
      [--ftype 15]   (llama_ftype: 15 = Q4_K_M, 7 = Q8_0, 2 = Q4_0, 12 = Q3_K_M)
then
  python3 tools/reference/bench_vs_llama_cpp.py --bench build/release/bench/llama/bench_llama \\
      --model /tmp/mixtral_shaped.Q4_K_M.gguf
"""

import argparse
import math
import sys
from pathlib import Path

import gguf
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import llama_cpp_reference as ref  # noqa: E402
from make_tiny_llama_fixtures import quantize_with_llama_cpp  # noqa: E402

SHAPES = {
    "mixtral": dict(arch="llama", layers=8, hidden=768, heads=12, kv_heads=4, head_dim=64,
                    ffn=2048, experts=8, used=2, rope_base=1e6),
    "qwen3": dict(arch="qwen3", layers=8, hidden=1024, heads=16, kv_heads=8, head_dim=128,
                  ffn=3072, qk_norm=True, rope_base=1e6),
    "gemma3": dict(arch="gemma3", layers=18, hidden=640, heads=4, kv_heads=1, head_dim=256,
                   ffn=2048, qk_norm=True, post_norms=True, window=512, rope_base=1e6),
}


def copy_tokenizer(w, source):
    """Every tokenizer.* key of `source` (a GGUF file) into writer w; returns the vocabulary size."""
    r = gguf.GGUFReader(str(source))
    vocab = 0
    for name, field in r.fields.items():
        if not name.startswith("tokenizer."):
            continue
        types = field.types
        sub = types[1] if types[0] == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(name, field.contents(), types[0], sub_type=sub)
        if name == "tokenizer.ggml.tokens":
            vocab = len(field.contents())
    return vocab


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="mixtral")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--ftype", type=int, default=15)
    args = ap.parse_args()
    s = SHAPES[args.shape]
    arch, hidden, head_dim = s["arch"], s["hidden"], s["head_dim"]
    llama_cpp = ref.load_llama()
    f32 = args.out.with_suffix(".f32.gguf")
    rng = np.random.default_rng(1234)
    w = gguf.GGUFWriter(str(f32), arch)
    w.add_string("general.name", f"troupe {args.shape}-shaped benchmark model (random weights)")
    keys = [("context_length", 4096), ("embedding_length", hidden), ("block_count", s["layers"]),
            ("feed_forward_length", s["ffn"]), ("attention.head_count", s["heads"]),
            ("attention.head_count_kv", s["kv_heads"]), ("attention.key_length", head_dim),
            ("attention.value_length", head_dim)]
    if "experts" in s:
        keys += [("expert_count", s["experts"]), ("expert_used_count", s["used"])]
    if "window" in s:
        keys += [("attention.sliding_window", s["window"])]
    for key, value in keys:
        w.add_uint32(f"{arch}.{key}", value)
    w.add_float32(f"{arch}.attention.layer_norm_rms_epsilon", 1e-6)
    w.add_float32(f"{arch}.rope.freq_base", s["rope_base"])
    vocab = copy_tokenizer(w, ref.DEFAULT_MODEL)

    def matrix(name, rows, cols, experts=0, scale=1.0):
        shape = (experts, rows, cols) if experts else (rows, cols)
        x = rng.standard_normal(shape, dtype=np.float32)
        x *= np.float32(scale / math.sqrt(cols))
        w.add_tensor(name, x)

    def vector(name, n):
        w.add_tensor(name, (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32))

    q_dim, kv_dim = s["heads"] * head_dim, s["kv_heads"] * head_dim
    matrix("token_embd.weight", vocab, hidden, scale=0.2 if arch == "gemma3" else 1.0)
    vector("output_norm.weight", hidden)
    for i in range(s["layers"]):
        p = f"blk.{i}."
        vector(p + "attn_norm.weight", hidden)
        matrix(p + "attn_q.weight", q_dim, hidden, scale=2.0)
        matrix(p + "attn_k.weight", kv_dim, hidden, scale=2.0)
        matrix(p + "attn_v.weight", kv_dim, hidden)
        matrix(p + "attn_output.weight", hidden, q_dim)
        if s.get("qk_norm"):
            vector(p + "attn_q_norm.weight", head_dim)
            vector(p + "attn_k_norm.weight", head_dim)
        if s.get("post_norms"):
            vector(p + "post_attention_norm.weight", hidden)
            vector(p + "post_ffw_norm.weight", hidden)
        vector(p + "ffn_norm.weight", hidden)
        if "experts" in s:
            matrix(p + "ffn_gate_inp.weight", s["experts"], hidden, scale=3.0)
            matrix(p + "ffn_gate_exps.weight", s["ffn"], hidden, experts=s["experts"])
            matrix(p + "ffn_up_exps.weight", s["ffn"], hidden, experts=s["experts"])
            matrix(p + "ffn_down_exps.weight", hidden, s["ffn"], experts=s["experts"])
        else:
            matrix(p + "ffn_gate.weight", s["ffn"], hidden)
            matrix(p + "ffn_up.weight", s["ffn"], hidden)
            matrix(p + "ffn_down.weight", hidden, s["ffn"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    quantize_with_llama_cpp(llama_cpp, f32, args.out, args.ftype)
    f32.unlink()
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
