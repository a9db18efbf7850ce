#!/usr/bin/env python3
"""A Mixtral-shaped GGUF file with random weights, for benchmarking the MoE path against llama.cpp.

No real Mixtral can be downloaded here, so this writes one of Mixtral's layout at a size that
runs on 2 cores: 8 layers, hidden 768 (12 heads, 4 KV heads), 8 SwiGLU experts of 2048 rows
with 2 per token, SmolLM2's 49,152-token vocabulary and tokenizer (copied from the embedded
SmolLM2 file, so the benchmark prompt tokenises as in every other benchmark). It is written in
f32 and then quantised by llama.cpp itself (llama_model_quantize), as a user quantises a model.

Usage (needs llama-cpp-python, gguf, numpy; see tools/reference/llama_cpp_reference.py):
  python3 tools/reference/make_moe_bench_model.py --out /tmp/mixtral_shaped.Q4_K_M.gguf \\
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

LAYERS, HIDDEN, HEADS, KV_HEADS, FFN, EXPERTS, USED = 8, 768, 12, 4, 2048, 8, 2
HEAD_DIM = HIDDEN // HEADS


def copy_tokenizer(w, source):
    """Every tokenizer.* key of `source` (a GGUF file) into writer w."""
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
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--ftype", type=int, default=15)
    args = ap.parse_args()
    llama_cpp = ref.load_llama()
    f32 = args.out.with_suffix(".f32.gguf")
    rng = np.random.default_rng(1234)
    w = gguf.GGUFWriter(str(f32), "llama")
    w.add_string("general.name", "troupe Mixtral-shaped benchmark model (random weights)")
    for key, value in [("context_length", 4096), ("embedding_length", HIDDEN),
                       ("block_count", LAYERS), ("feed_forward_length", FFN),
                       ("attention.head_count", HEADS), ("attention.head_count_kv", KV_HEADS),
                       ("rope.dimension_count", HEAD_DIM), ("expert_count", EXPERTS),
                       ("expert_used_count", USED)]:
        w.add_uint32(f"llama.{key}", value)
    w.add_float32("llama.attention.layer_norm_rms_epsilon", 1e-5)
    w.add_float32("llama.rope.freq_base", 1e6)
    vocab = copy_tokenizer(w, ref.DEFAULT_MODEL)

    def matrix(name, rows, cols, experts=0, scale=1.0):
        shape = (experts, rows, cols) if experts else (rows, cols)
        x = rng.standard_normal(shape, dtype=np.float32)
        x *= np.float32(scale / math.sqrt(cols))
        w.add_tensor(name, x)

    def vector(name, n):
        w.add_tensor(name, (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32))

    matrix("token_embd.weight", vocab, HIDDEN)
    vector("output_norm.weight", HIDDEN)
    for i in range(LAYERS):
        p = f"blk.{i}."
        vector(p + "attn_norm.weight", HIDDEN)
        matrix(p + "attn_q.weight", HEADS * HEAD_DIM, HIDDEN, scale=2.0)
        matrix(p + "attn_k.weight", KV_HEADS * HEAD_DIM, HIDDEN, scale=2.0)
        matrix(p + "attn_v.weight", KV_HEADS * HEAD_DIM, HIDDEN)
        matrix(p + "attn_output.weight", HIDDEN, HEADS * HEAD_DIM)
        vector(p + "ffn_norm.weight", HIDDEN)
        matrix(p + "ffn_gate_inp.weight", EXPERTS, HIDDEN, scale=3.0)
        matrix(p + "ffn_gate_exps.weight", FFN, HIDDEN, experts=EXPERTS)
        matrix(p + "ffn_up_exps.weight", FFN, HIDDEN, experts=EXPERTS)
        matrix(p + "ffn_down_exps.weight", HIDDEN, FFN, experts=EXPERTS)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    quantize_with_llama_cpp(llama_cpp, f32, args.out, args.ftype)
    f32.unlink()
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
