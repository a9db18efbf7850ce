#!/usr/bin/env python3
"""llama.cpp's outputs with its default f16 KV cache on some of the tiny fixture models.

make_tiny_llama_fixtures.py records llama.cpp with an f32 cache; this script runs a few of the
same files (tests/fixtures/llama/tiny/*.gguf, unchanged) with type_k = type_v = f16, flash
attention off, and writes tests/fixtures/llama/tiny/reference_f16_kv.json in the same form: per
model, random prompts of 1, 7, 33, 100 and 180 tokens, the whole first-step logits and 32
greedy tokens. The models cover what the f16 cache meets: heads of 32 (ggml_vec_dot_f16 all
tail, in double, for one token; tinyBLAS for several) and of 48 (qwen3), sliding windows and
soft-capping (gemma2, gemma3), q scaled before attention (phi3), experts (mixtral). SmolLM2's
heads of 64 are in smollm2_reference_f16_kv.json (llama_cpp_reference.py --kv-type f16).
tests/llama/test_llama_variants.cpp compares troupe's --kv-type f16 against the file.

Usage:
  LLAMA_CPP_LIB_PATH=... python3 tools/reference/tiny_f16_kv_reference.py
"""

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llama_cpp_reference import load_llama  # noqa: E402
from make_tiny_llama_fixtures import CONTEXT, GENERATED, OUT as TINY, llama_cpp_cases  # noqa: E402

MODELS = ["llama3_rope_freqs.gguf", "phi_fused.gguf", "qwen3_qk_norm.gguf",
          "gemma3_sliding.gguf", "gemma2_softcap.gguf", "mixtral_experts.gguf"]


def main():
    llama_cpp = load_llama()
    rng = np.random.default_rng(7)
    out = {"generator": "tools/reference/tiny_f16_kv_reference.py",
           "llama_cpp_python": llama_cpp.__version__,
           "settings": {"n_threads": 2, "n_ctx": CONTEXT, "flash_attn": False, "kv_type": "f16",
                        "greedy_tokens": GENERATED},
           "models": []}
    for name in MODELS:
        path = TINY / name
        cases = llama_cpp_cases(llama_cpp, path, rng, llama_cpp.GGML_TYPE_F16)
        out["models"].append({"file": name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                              "cases": cases})
    (TINY / "reference_f16_kv.json").write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {TINY / 'reference_f16_kv.json'}", file=sys.stderr)


if __name__ == "__main__":
    main()
