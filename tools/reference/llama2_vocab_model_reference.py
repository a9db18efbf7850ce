#!/usr/bin/env python3
"""llama.cpp's greedy output on the model of tests/llama/write_llama2_vocab_model.cpp (a tiny
random llama model with Llama 2's SentencePiece vocabulary and chat template), for
tests/llama/check_llama2_vocab.py: writes tests/fixtures/llama/llama2_vocab_generate.json.

Chat prompts are rendered by hand exactly as Llama 2's template renders one user message
("<s>[INST] {prompt} [/INST]", special tokens parsed, no second BOS); raw prompts are tokenised
with BOS and without special tokens, as `troupe generate --raw` does. Generation stops at EOS or after MAX_TOKENS tokens.

Usage (see tools/reference/llama_cpp_reference.py for llama-cpp-python):
  python3 tools/reference/llama2_vocab_model_reference.py build/release/tests/llama/write_llama2_vocab_model
"""

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llama_cpp_reference import load_llama  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "tests/fixtures/llama/llama2_vocab_generate.json"
MAX_TOKENS = 24
PROMPTS = ["Hello, how are you?", "Écris un poème sur la mer.",
           "  leading spaces and\ttabs\nnewline", "数字 12345 和 emoji 🦙", "What's 2+2?",
           "A literal <s> in the prompt"]


def main():
    writer = sys.argv[1]
    models = Path(os.environ.get("TROUPE_MODEL_DIR") or Path.home() / ".cache/troupe/models")
    vocab = models / "llama.cpp-vocab/ggml-vocab-llama-spm.gguf"
    llama_cpp = load_llama()
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "llama2_vocab.gguf"
        subprocess.run([writer, str(vocab), str(model)], check=True)
        sha = hashlib.sha256(model.read_bytes()).hexdigest()
        llm = llama_cpp.Llama(model_path=str(model), n_ctx=512, n_threads=2, flash_attn=False,
                              type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32,
                              verbose=False, seed=0)
        n_vocab, eos = llm.n_vocab(), llm.token_eos()
        cases = []
        for prompt in PROMPTS:
            for raw in (False, True):
                if raw:
                    tokens = llm.tokenize(prompt.encode(), add_bos=True, special=False)
                else:
                    # The template's text, special tokens parsed (as llama.cpp's server and
                    # troupe do: "<s>" in a prompt is BOS there too).
                    tokens = llm.tokenize(f"<s>[INST] {prompt.strip()} [/INST]".encode(),
                                          add_bos=False, special=True)
                llm.reset()
                llm.eval(tokens)
                generated = []
                for _ in range(MAX_TOKENS):
                    logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,))
                    t = int(np.argmax(logits))
                    if t == eos:
                        break
                    generated.append(t)
                    llm.eval([t])
                data = llm.detokenize(generated)  # bytes: may end inside a character
                text = data.decode("utf-8", errors="replace")
                print(f"{'raw ' if raw else 'chat'} {prompt!r} -> {text!r}", file=sys.stderr)
                cases.append({"prompt": prompt, "raw": raw, "prompt_tokens": tokens,
                              "tokens": generated, "text": text, "bytes_hex": data.hex()})
    OUT.write_text(json.dumps({"generator": "tools/reference/llama2_vocab_model_reference.py",
                               "llama_cpp_python": llama_cpp.__version__,
                               "model_sha256": sha, "max_tokens": MAX_TOKENS,
                               "cases": cases}, ensure_ascii=False, indent=1) + "\n",
                   encoding="utf-8")
    print(f"wrote {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
