#!/usr/bin/env python3
"""`troupe generate --raw -n 48` against llama.cpp's greedy loop on six raw prompts, as text.

llama.cpp runs as tools/reference/llama_cpp_reference.py configures it (fp32 KV cache, no flash
attention, 2 threads, plain CPU weight buffers). --one-at-a-time feeds llama.cpp the prompt token
by token, so that every mul_mat is its row `vec_dot` (its batched paths, tinyBLAS for Q4_0 / Q5_0 /
Q8_0 / IQ4_NL and the K-quant mul_mat, may sum in another order). Greedy output can only match
where llama.cpp is built as troupe reproduces it: for AVX-512 (see bench/RESULTS.md).

Usage:
  LLAMA_CPP_LIB_PATH=... python3 tools/reference/greedy_vs_llama_cpp.py FILE.gguf
      [--troupe BUILD/runtime/cli/troupe] [--one-at-a-time]
"""

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llama_cpp_reference import PROMPTS, load_llama  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
N = 48
NAMES = ["raw_short", "raw_numbers", "raw_code_c", "raw_code_python", "raw_long", "raw_markdown"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--troupe", type=Path, default=REPO / "build/release/runtime/cli/troupe")
    ap.add_argument("--one-at-a-time", action="store_true")
    ap.add_argument("--kv-type", choices=["f32", "f16"], default="f32",
                    help="KV cache type of both (llama.cpp's type_k and type_v)")
    args = ap.parse_args()
    llama_cpp = load_llama()
    import numpy as np
    kv_type = llama_cpp.GGML_TYPE_F16 if args.kv_type == "f16" else llama_cpp.GGML_TYPE_F32
    llm = llama_cpp.Llama(model_path=str(args.model), n_ctx=2048, n_batch=2048, n_ubatch=2048,
                          n_threads=2, n_threads_batch=2, flash_attn=False,
                          type_k=kv_type, type_v=kv_type,
                          verbose=False, seed=0)
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    n_vocab = llm.n_vocab()
    prompts = [text for name, text, _ in PROMPTS if name in NAMES]
    same_count = 0
    for p in prompts:
        tokens = llm.tokenize(p.encode(), add_bos=True, special=False)
        llm.reset()
        if args.one_at_a_time:
            for t in tokens:
                llm.eval([t])
        else:
            llm.eval(tokens)
        generated = []
        for _ in range(N):
            t = int(np.argmax(np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,))))
            if llama_cpp.llama_vocab_is_eog(vocab, t):
                break
            generated.append(t)
            llm.eval([t])
        ref = llm.detokenize(generated).decode("utf-8", errors="replace")
        # Bytes, decoded as the reference is: a random model may stop inside a UTF-8 sequence.
        got = subprocess.run([str(args.troupe), "generate", "-m", str(args.model), "--kv-type", args.kv_type, "--raw", "-n",
                              str(N), p], capture_output=True, check=True).stdout.decode(
                                  "utf-8", errors="replace")
        same = got.rstrip("\n") == ref.rstrip("\n")
        same_count += same
        print("OK  " if same else "DIFF", repr(p[:40]))
        if not same:
            print("   llama.cpp:", repr(ref), "\n   troupe:   ", repr(got))
    print(f"{args.model.name}: {same_count}/{len(prompts)} identical"
          + (" (llama.cpp one token at a time)" if args.one_at_a_time else ""))


if __name__ == "__main__":
    main()
