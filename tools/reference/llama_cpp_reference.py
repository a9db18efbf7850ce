#!/usr/bin/env python3
"""Reference outputs of llama.cpp (through llama-cpp-python) for troupe's llama tests.

For each prompt in PROMPTS it records llama.cpp's prompt tokenisation, the logits of the first
step (the top 50 (id, logit) pairs and a few statistics) and 64 greedily decoded tokens, and
writes them to tests/fixtures/llama/smollm2_reference.json. CI compares troupe against that
file; it never runs this script (building llama.cpp takes a while on 2 cores).

llama.cpp settings: n_threads = n_threads_batch = 2, n_ctx 2048, one batch per prompt,
flash attention off and an fp32 KV cache (type_k = type_v = GGML_TYPE_F32), i.e. llama.cpp's
most exact CPU path, so that the differences measure troupe and not the rounding of an fp16
cache, and without llama.cpp's AMX/repacked weight buffers (see load_llama). Generation does
not stop at <|im_end|>: all 64 tokens are recorded and compared. With --kv-type f16 the cache
is llama.cpp's default f16 one instead, written to smollm2_reference_f16_kv.json (troupe's
--kv-type f16 computes it bit for bit too).

Usage:
  python3 tools/reference/llama_cpp_reference.py [--model PATH] [--out PATH] [--kv-type f16]
It installs llama-cpp-python with pip when it cannot import it.
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = Path(os.environ.get("TROUPE_MODEL_DIR", Path.home() / ".cache/troupe/models")) / \
    "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_OUT = REPO / "tests/fixtures/llama/smollm2_reference.json"
SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
GENERATED = 64
TOP = 50


def chatml(user, system=SYSTEM):
    return (f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
            f"<|im_start|>assistant\n")


# (name, text, chat): chat prompts are already ChatML-formatted and tokenised with special
# tokens parsed; raw prompts are plain text.
PROMPTS = [
    ("chat_capital", chatml("What is the capital of France?"), True),
    ("chat_haiku", chatml("Write a haiku about the sea."), True),
    ("chat_math", chatml("What is 17 * 23? Answer with the number only."), True),
    ("chat_code_python", chatml("Write a Python function that reverses a string."), True),
    ("chat_explain", chatml("Explain photosynthesis to a ten-year-old in three sentences."), True),
    ("chat_list", chatml("List five fruits that are red."), True),
    ("chat_custom_system", chatml("Who are you?", system="You are a pirate. Answer like one."), True),
    ("chat_unicode", chatml("Traduis en français : « Good morning, how are you? »"), True),
    ("chat_multi_turn",
     chatml("Hi!") + "Hello! How can I help you today?<|im_end|>\n<|im_start|>user\n"
     "Tell me a fun fact about octopuses.<|im_end|>\n<|im_start|>assistant\n", True),
    ("chat_json", chatml('Return a JSON object with keys "name" and "age" for Alice, 30.'), True),
    ("raw_short", "The capital of France is", False),
    ("raw_one_word", "Hello", False),
    ("raw_numbers", "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,", False),
    ("raw_big_numbers", "In 2023 the population was 8,045,311,447 and in 1950 it was 2.5 billion;", False),
    ("raw_code_c", "#include <stdio.h>\n\nint main(void) {\n    printf(\"", False),
    ("raw_code_python", "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n    if n < 2:\n", False),
    ("raw_unicode", "Ünïcödé façade naïve café — 東京は日本の首都です。 Emoji: 🎉🚀 and Ελληνικά", False),
    ("raw_whitespace", "  Indented   text\twith\ttabs\n\n\nand    many   spaces  \n", False),
    ("raw_contractions", "I'm sure they've said it's what we'd do, isn't it? You'll see.", False),
    ("raw_long",
     "Once upon a time, in a small village nestled between rolling hills and a dense forest, "
     "there lived an old clockmaker named Elias. Every morning he opened the wooden shutters of "
     "his tiny shop, greeted the baker across the street, and set to work on the clocks that "
     "lined the walls from floor to ceiling. Some were tall and solemn, others small and "
     "cheerful, and one, hidden behind a velvet curtain, had never been heard to tick. The "
     "children of the village whispered that", False),
    ("raw_markdown", "# Shopping list\n\n- eggs\n- milk\n- ", False),
    ("raw_html", "<html><head><title>Test</title></head><body><p>", False),
    ("raw_special_text", "The token <|im_end|> should be plain text here and", False),
]


# Whether models loaded next use llama.cpp's repacked ("extra") CPU weight buffers; off unless a
# caller (bench_vs_llama_cpp.py's defaults row, on CPUs without AMX) turns it on.
EXTRA_BUFFERS = {"on": False}


def cpu_has_amx():
    try:
        return " amx_tile" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def load_llama():
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        print("installing llama-cpp-python (builds llama.cpp; takes a while)...", file=sys.stderr)
        subprocess.check_call([sys.executable, "-m", "pip", "install", "llama-cpp-python", "numpy"])
    import llama_cpp
    # Plain ggml CPU weights: no AMX / repacked "extra" buffers. On AMX CPUs (Sapphire Rapids)
    # llama.cpp's AMX Q4_1 mat-mul crashed in llama-cpp-python 0.3.36 with this model, and the
    # plain path is the reference the ggml CPU kernels are written against anyway.
    default_params = llama_cpp.llama_model_default_params

    def model_params_without_extra_buffers():
        params = default_params()
        if hasattr(params, "use_extra_bufts"):
            params.use_extra_bufts = EXTRA_BUFFERS["on"]
        return params

    llama_cpp.llama_model_default_params = model_params_without_extra_buffers
    llama_cpp.llama.llama_cpp.llama_model_default_params = model_params_without_extra_buffers
    return llama_cpp


def greedy_run(llm, tokens, steps):
    """llama.cpp's logits after `tokens` (one batch, from an empty cache) and the `steps` greedy
    tokens that follow, each fed alone: (first logits as a numpy array, generated token ids)."""
    import numpy as np
    n_vocab = llm.n_vocab()

    def logits():
        return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,)).copy()

    llm.reset()
    llm.eval(tokens)
    first = step = logits()
    generated = []
    for _ in range(steps):
        tok = int(np.argmax(step))
        generated.append(tok)
        llm.eval([tok])
        step = logits()
    return first, generated


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--kv-type", choices=["f32", "f16"], default="f32")
    args = ap.parse_args()
    if args.out is None:
        args.out = DEFAULT_OUT if args.kv_type == "f32" else \
            DEFAULT_OUT.with_name("smollm2_reference_f16_kv.json")

    llama_cpp = load_llama()
    import numpy as np

    kv_type = llama_cpp.GGML_TYPE_F16 if args.kv_type == "f16" else llama_cpp.GGML_TYPE_F32
    llm = llama_cpp.Llama(model_path=str(args.model), n_ctx=2048, n_batch=2048, n_ubatch=2048,
                          n_threads=2, n_threads_batch=2, flash_attn=False,
                          type_k=kv_type, type_v=kv_type,
                          logits_all=False, verbose=False, seed=0)
    sha = hashlib.sha256(args.model.read_bytes()).hexdigest()

    cases = []
    for name, text, chat in PROMPTS:
        tokens = llm.tokenize(text.encode("utf-8"), add_bos=True, special=chat)
        logits, generated = greedy_run(llm, tokens, GENERATED)
        order = np.argsort(-logits, kind="stable")[:TOP]
        first = {
            "top": [[int(i), float(logits[i])] for i in order],
            "mean": float(logits.mean()),
            "std": float(logits.std()),
            "min": float(logits.min()),
            "max": float(logits.max()),
            # log Σ exp(logit): a token's log-probability is its logit minus this.
            "logsumexp": float(logits.max() + np.log(np.exp(logits.astype(np.float64) -
                                                            logits.max()).sum())),
        }
        text_out = llm.detokenize(generated, special=True).decode("utf-8", errors="replace")
        print(f"{name}: {len(tokens)} prompt tokens -> {text_out[:60]!r}", file=sys.stderr)
        cases.append({"name": name, "prompt": text, "parse_special": chat, "prompt_tokens": tokens,
                      "first_logits": first, "greedy_tokens": generated,
                      "greedy_text": text_out})

    out = {
        "generator": "tools/reference/llama_cpp_reference.py",
        "llama_cpp_python": llama_cpp.__version__,
        "model": args.model.name,
        "model_sha256": sha,
        "settings": {"n_threads": 2, "n_ctx": 2048, "flash_attn": False, "kv_type": args.kv_type,
                     "add_bos": True, "greedy_tokens": GENERATED, "top_logits": TOP},
        "cases": cases,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out} ({len(cases)} prompts)", file=sys.stderr)


if __name__ == "__main__":
    main()
