#!/usr/bin/env python3
"""Runs llama.cpp itself (through llama-cpp-python) on the deepseek2 GGUF fixtures and prints how far its
logits are from the HF transformers references the troupe tests use, per prompt position. A check of the
fixtures and of llama.cpp, not a test: nothing is written.

Needs a Python with llama-cpp-python and numpy only, e.g.
    PYTHONPATH=/tmp/h1_llama LLAMA_CPP_LIB_PATH=/tmp/h1_llama/lib /tmp/h1_pyenv/bin/python \
        tools/reference/compare_llama_cpp_deepseek_gguf.py tests/fixtures/deepseek

llama.cpp runs with an fp32 KV cache, no flash attention, one thread, the whole prompt in one batch.
What it showed (llama-cpp-python 0.3.36, 2026-12-02):
  - the Moonlight-like files do not load: llama.cpp's deepseek2 loader decides "no q_lora" from the layer
    count (the "lite" models: 26 or 27 layers) and demands deepseek2.attention.q_lora_rank otherwise;
  - v3-bf16.gguf (q_lora, YaRN factor 32 with beta_fast = beta_slow = 1): 6e-3 (relative to the largest
    logit) at position 0, where llama.cpp rounds the inputs of its BF16 products to BF16, and up to ~0.9
    at later positions. An F32 conversion of the same checkpoint (the converter with --outtype f32; 2 MB,
    not kept) separates the two: llama.cpp 5e-7 at position 0, up to ~1 from position 1 on, so its
    rope/YaRN or attention for this config is not HF's; troupe on that F32 file: <= 9e-6 at every
    position, and <= 6e-6 on v3-bf16.gguf (test_deepseek_gguf).
"""
import json
import os
import struct
import sys

import numpy as np


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    dtypes = {"I32": np.int32, "F32": np.float32}
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        out[name] = np.frombuffer(data[b:e], dtype=dtypes[info["dtype"]]).reshape(info["shape"])
    return out


def main():
    import llama_cpp
    root = sys.argv[1]
    cases = [("moonlight_gguf", "moonlight-bf16.gguf", "moonlight/expected.safetensors"),
             ("moonlight_gguf", "moonlight-q8_0.gguf", "moonlight_gguf/expected_q8_0.safetensors"),
             ("moonlight_gguf", "moonlight-legacy-q8_0.gguf", "moonlight/expected.safetensors"),
             ("v3_gguf", "v3-bf16.gguf", "v3_gguf/expected_bf16.safetensors")]
    for folder, name, ref in cases:
        expected = read_safetensors(os.path.join(root, ref))
        try:
            llm = llama_cpp.Llama(os.path.join(root, folder, name), n_ctx=256, n_batch=256, logits_all=True,
                                  verbose=False, n_threads=1, n_gpu_layers=0, flash_attn=False,
                                  type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32)
        except ValueError as e:
            print(f"{name}: llama.cpp does not load it ({e}); run with verbose=True for its reason")
            continue
        for i in range(len([k for k in expected if k.startswith("prompt_")])):
            prompt = expected[f"prompt_{i}"]
            llm.reset()
            llm.eval([int(t) for t in prompt])
            logits = np.array(llm.scores[:len(prompt)], dtype=np.float32)
            hf = expected[f"logits_{i}"]
            rel = np.abs(logits - hf).max(1) / np.abs(hf).max(1)
            print(f"{name} prompt {i}: relative error against {ref} per position: "
                  + " ".join(f"{v:.1e}" for v in rel))


if __name__ == "__main__":
    main()
