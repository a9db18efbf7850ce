#!/usr/bin/env python3
"""llama.cpp's greedy tokens under the repetition, frequency and presence penalties.

For each chat prompt of llama_cpp_reference.py and each penalty setting below, it decodes 64
tokens greedily through llama.cpp's own sampler chain (llama_sampler_init_penalties, then
llama_sampler_init_greedy) and writes them to tests/fixtures/llama/smollm2_penalties.json; CI
checks the engine's penalised sampling against that file.

troupe's penalties, as OpenAI and vLLM define them: the repetition penalty covers the last 64
tokens of the prompt and the output, the frequency and presence penalties the output only. In
llama.cpp one penalties sampler covers one window for all three, so the chain has two: the
repetition one is fed the prompt and every generated token, the frequency/presence one only the
generated tokens (its window, 256, holds all 64). The order matches troupe's (and the single
llama.cpp sampler's): the repetition penalty scales a logit, then the counts are subtracted.

Usage: python3 tools/reference/llama_cpp_penalties_reference.py [--model PATH] [--out PATH]
"""

import argparse
import hashlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llama_cpp_reference import DEFAULT_MODEL, GENERATED, PROMPTS, REPO, load_llama  # noqa: E402

DEFAULT_OUT = REPO / "tests/fixtures/llama/smollm2_penalties.json"
REPEAT_LAST_N = 64
# (name, repetition, frequency, presence)
SETTINGS = [
    ("frequency", 1.0, 0.6, 0.0),
    ("presence", 1.0, 0.0, 1.2),
    ("all_three", 1.3, 0.3, 0.4),
    ("negative_presence", 1.0, 0.0, -0.8),
]


def penalised_run(llama_cpp, llm, tokens, repeat, frequency, presence):
    """The GENERATED greedy tokens after `tokens` with llama.cpp's penalty samplers."""
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    n_vocab = llm.n_vocab()
    llama_cpp.llama_sampler_chain_add(
        chain, llama_cpp.llama_sampler_init_penalties(n_vocab, REPEAT_LAST_N, repeat, 0.0, 0.0))
    llama_cpp.llama_sampler_chain_add(
        chain, llama_cpp.llama_sampler_init_penalties(n_vocab, 256, 1.0, frequency, presence))
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
    repeat_sampler = llama_cpp.llama_sampler_chain_get(chain, 0)
    for t in tokens:
        llama_cpp.llama_sampler_accept(repeat_sampler, t)
    llm.reset()
    llm.eval(tokens)
    generated = []
    for _ in range(GENERATED):
        # Applies the chain to the last logits and accepts the token into every sampler of it.
        tok = llama_cpp.llama_sampler_sample(chain, llm._ctx.ctx, -1)
        generated.append(int(tok))
        llm.eval([tok])
    llama_cpp.llama_sampler_free(chain)
    return generated


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    llama_cpp = load_llama()
    f32 = llama_cpp.GGML_TYPE_F32
    llm = llama_cpp.Llama(model_path=str(args.model), n_ctx=2048, n_batch=2048, n_ubatch=2048,
                          n_threads=2, n_threads_batch=2, flash_attn=False, type_k=f32,
                          type_v=f32, logits_all=False, verbose=False, seed=0)
    runs = []
    for name, text, chat in PROMPTS:
        if not chat:
            continue
        tokens = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        for setting, repeat, frequency, presence in SETTINGS:
            generated = penalised_run(llama_cpp, llm, tokens, repeat, frequency, presence)
            text_out = llm.detokenize(generated, special=True).decode("utf-8", errors="replace")
            print(f"{name}/{setting}: {text_out[:60]!r}", file=sys.stderr)
            runs.append({"case": name, "setting": setting, "repetition_penalty": repeat,
                         "frequency_penalty": frequency, "presence_penalty": presence,
                         "greedy_tokens": generated, "greedy_text": text_out})
    out = {
        "generator": "tools/reference/llama_cpp_penalties_reference.py",
        "llama_cpp_python": llama_cpp.__version__,
        "model": args.model.name,
        "model_sha256": hashlib.sha256(args.model.read_bytes()).hexdigest(),
        "settings": {"n_threads": 2, "n_ctx": 2048, "flash_attn": False, "kv_type": "f32",
                     "repeat_last_n": REPEAT_LAST_N, "greedy_tokens": GENERATED,
                     "prompts": "the chat cases of smollm2_reference.json, by name"},
        "runs": runs,
    }
    args.out.write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out} ({len(runs)} runs)", file=sys.stderr)


if __name__ == "__main__":
    main()
