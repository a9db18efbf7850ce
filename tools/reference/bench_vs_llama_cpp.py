#!/usr/bin/env python3
"""troupe vs llama.cpp on SmolLM2-135M-Instruct Q4_1: prefill and decode tokens/s, side by side.

Both run the same GGUF file, the same 128-token prompt (bench/llama/prompt_128.txt, BOS first,
no special-token parsing) and 2 threads. llama.cpp runs through llama-cpp-python in the
configuration troupe reproduces bit for bit (tools/reference/llama_cpp_reference.py: no flash
attention, fp32 KV cache, plain CPU weight buffers), and once more with its default KV cache and
attention settings. troupe runs as bench/llama/bench_llama (Google Benchmark, JSON output; its
kernels take the widest instruction set of the CPU unless TROUPE_KERNELS_ISA=avx2|scalar caps
it). Each side is repeated --reps times, alternating, and the median is reported with the spread
(min..max).

Prefill: one eval of the whole prompt on an empty cache. Decode: 64 greedy single-token evals
after the prompt. --kv-type f16 gives both the exact config and troupe an f16 KV cache (llama.cpp
still without flash attention: troupe reproduces that bit for bit too).

Usage:
  python3 tools/reference/bench_vs_llama_cpp.py --bench BUILD/bench/llama/bench_llama [--reps 5]
      [--model FILE.gguf]   (default: the embedded SmolLM2 Q4_1 file; both sides run FILE)
      [--kv-type f16]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import llama_cpp_reference as ref  # noqa: E402  (same model lookup and llama.cpp loader)

PROMPT_FILE = REPO / "bench/llama/prompt_128.txt"
THREADS = 2
DECODE = 64


def llama_cpp_run(llm, tokens):
    import numpy as np
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(tokens)
    t1 = time.perf_counter()
    n_vocab = llm.n_vocab()
    logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,))
    for _ in range(DECODE):
        llm.eval([int(np.argmax(logits))])
        logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,))
    t2 = time.perf_counter()
    return len(tokens) / (t1 - t0), DECODE / (t2 - t1)


def troupe_run(bench, model, context=None):
    """bench_llama's prefill and decode, or with `context` bm_decode_long_context's: the
    prompt repeated to that many tokens, prefilled in one batch, and the decode after it."""
    # Only the benchmarks compared here (the batched and engine ones take minutes).
    which = "^bm_decode_long_context" if context else "^bm_(prefill|decode)/"
    env = dict(os.environ, TROUPE_BENCH_MODEL=str(model))
    if context:
        env["TROUPE_BENCH_CONTEXT"] = str(context)
    out = subprocess.run([str(bench), "--benchmark_format=json", "--benchmark_min_time=0.001",
                          f"--benchmark_filter={which}"],
                         check=True, capture_output=True, text=True, env=env).stdout
    rates = {}
    for b in json.loads(out)["benchmarks"]:
        if b.get("error_occurred"):
            sys.exit(f"bench_llama: {b['name']}: {b.get('error_message')}")
        rates[b["name"].split("/")[0]] = (b["tok_per_s"], b.get("prompt_tokens"),
                                          b.get("prefill_tok_per_s"))
    if context:
        decode, _, prefill = rates["bm_decode_long_context"]
        return prefill, decode, None
    return rates["bm_prefill"][0], rates["bm_decode"][0], rates["bm_prefill"][1]


def summary(values):
    return statistics.median(values), min(values), max(values)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=ref.DEFAULT_MODEL)
    ap.add_argument("--bench", type=Path, required=True, help="path to bench_llama")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--kv-type", choices=["f32", "f16"], default="f32",
                    help="KV cache of the exact config and of troupe (TROUPE_BENCH_KV)")
    ap.add_argument("--context", type=int,
                    help="prefill the prompt repeated to this many tokens and decode after it "
                         "(troupe: bm_decode_long_context with TROUPE_BENCH_CONTEXT, one batch; "
                         "llama.cpp: batches of 512)")
    args = ap.parse_args()
    os.environ["TROUPE_BENCH_KV"] = args.kv_type

    llama_cpp = ref.load_llama()
    prompt = PROMPT_FILE.read_text(encoding="utf-8").rstrip("\n ")
    # The exact config is the one troupe reproduces bit for bit (plain weight buffers, fp32 KV
    # cache, no flash attention); the defaults rows are llama.cpp as a user runs it (fp16 KV
    # cache, flash attention "auto"), without and with its repacked weight buffers (CPU_REPACK:
    # Q4_0, Q4_K, IQ4_NL and Q8_0 tensors re-laid at load for its gemv/gemm kernels; on by
    # default in llama.cpp). The repacked row is skipped on AMX CPUs, where llama.cpp's AMX
    # buffers crash with this model (ref.load_llama).
    exact_kv = llama_cpp.GGML_TYPE_F16 if args.kv_type == "f16" else llama_cpp.GGML_TYPE_F32
    configs = {"llama.cpp (exact config)": (False, dict(flash_attn=False, type_k=exact_kv,
                                                        type_v=exact_kv)),
               "llama.cpp (defaults)": (False, {})}
    if ref.cpu_has_amx():
        print("llama.cpp (defaults, repacked): skipped (AMX CPU)", file=sys.stderr)
    else:
        configs["llama.cpp (defaults, repacked)"] = (True, {})
    llms = {}
    for name, (extra, kw) in configs.items():
        ref.EXTRA_BUFFERS["on"] = extra
        llms[name] = llama_cpp.Llama(model_path=str(args.model), n_ctx=2048, n_batch=512,
                                     n_threads=THREADS, n_threads_batch=THREADS, verbose=False,
                                     **kw)
    ref.EXTRA_BUFFERS["on"] = False
    tokens = next(iter(llms.values())).tokenize(prompt.encode("utf-8"), add_bos=True,
                                                 special=False)
    if args.context:  # as bm_decode_long_context builds it: the prompt, BOS included, repeated
        tokens = (tokens * (args.context // len(tokens) + 1))[:args.context]
    results = {name: ([], []) for name in list(llms) + ["troupe"]}
    for name, llm in llms.items():  # warm-up
        llama_cpp_run(llm, tokens)
    troupe_prompt_tokens = None
    for _ in range(args.reps):
        for name, llm in llms.items():
            p, d = llama_cpp_run(llm, tokens)
            results[name][0].append(p)
            results[name][1].append(d)
        p, d, troupe_prompt_tokens = troupe_run(args.bench, args.model, args.context)
        results["troupe"][0].append(p)
        results["troupe"][1].append(d)
    if troupe_prompt_tokens is not None and int(troupe_prompt_tokens) != len(tokens):
        sys.exit(f"prompt token counts differ: llama.cpp {len(tokens)}, troupe "
                 f"{int(troupe_prompt_tokens)}")

    print(f"model {args.model.name}, prompt {len(tokens)} tokens, decode {DECODE} tokens, "
          f"{THREADS} threads, {args.reps} repetitions (median, min..max tokens/s)")
    base = results["llama.cpp (exact config)"]
    for name, (pre, dec) in results.items():
        pm, plo, phi = summary(pre)
        dm, dlo, dhi = summary(dec)
        print(f"  {name:32s} prefill {pm:7.1f} ({plo:.1f}..{phi:.1f})   "
              f"decode {dm:6.1f} ({dlo:.1f}..{dhi:.1f})")
    tp, td = statistics.median(results["troupe"][0]), statistics.median(results["troupe"][1])
    for name in llms:
        lp, ld = statistics.median(results[name][0]), statistics.median(results[name][1])
        print(f"  troupe / {name}: prefill x{tp / lp:.2f}, decode x{td / ld:.2f}")


if __name__ == "__main__":
    main()
