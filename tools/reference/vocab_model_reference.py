#!/usr/bin/env python3
"""llama.cpp's greedy output on the models of tests/llama/write_vocab_model.cpp (tiny random
llama models around real vocabularies and chat templates), for tests/llama/check_vocab_models.py:
writes tests/fixtures/llama/vocab_models_generate.json.

MODELS names each model: llama.cpp's vocab-only file (installed by scripts/install-deps), the
chat template (by name, from tests/fixtures/llama/chat_templates.json: the real template text)
and the writer's options (Llama 3's RoPE, the qwen2 or phi3 architecture). Chat prompts are
rendered by the real template with jinja2 the way transformers does (one user message,
generation prompt, troupe's default date "26 Jul 2024") and tokenised with special tokens
parsed, with the vocabulary's BOS unless the template printed one (as llama.cpp's server and
troupe's engine do); raw prompts are tokenised with add_special and without special tokens, as
`troupe generate --raw` does. Generation stops at an end-of-generation token (llama.cpp's
llama_vocab_is_eog) or after MAX_TOKENS tokens.

Usage (needs llama-cpp-python and jinja2; see tools/reference/llama_cpp_reference.py):
  python3 tools/reference/vocab_model_reference.py build/release/tests/llama/write_vocab_model
"""

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import jinja2
import jinja2.sandbox
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llama_cpp_reference import load_llama  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "tests/fixtures/llama/vocab_models_generate.json"
TEMPLATES = REPO / "tests/fixtures/llama/chat_templates.json"
MAX_TOKENS = 24
DATE = "26 Jul 2024"
MODELS = [
    {"name": "llama2", "vocab": "ggml-vocab-llama-spm.gguf",
     "template": "meta-llama/Llama-2-13b-chat-hf", "writer_args": []},
    {"name": "llama3", "vocab": "ggml-vocab-llama-bpe.gguf",
     "template": "meta-llama/Llama-3.2-3B-Instruct", "writer_args": ["--llama3-rope"]},
    {"name": "qwen2.5", "vocab": "ggml-vocab-qwen2.gguf",
     "template": "Qwen/Qwen2.5-7B-Instruct", "writer_args": ["--qwen2"]},
    {"name": "phi-3.5", "vocab": "ggml-vocab-phi-3.gguf",
     "template": "microsoft/Phi-3.5-mini-instruct", "writer_args": ["--phi3"]},
]
PROMPTS = ["Hello, how are you?", "Écris un poème sur la mer.",
           "  leading spaces and\ttabs\nnewline", "数字 12345 和 emoji 🦙", "What's 2+2?",
           "A literal <s> in the prompt"]


def template_of(name):
    for t in json.loads(TEMPLATES.read_text(encoding="utf-8"))["templates"]:
        if t["name"] == name:
            return t
    raise SystemExit(f"{TEMPLATES} has no template named {name}")


def render(t, prompt):
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(t["template"]).render(
        messages=[{"role": "user", "content": prompt}], add_generation_prompt=True,
        bos_token=t["bos_token"], eos_token=t["eos_token"], date_string=DATE)


def main():
    writer = sys.argv[1]
    models = Path(os.environ.get("TROUPE_MODEL_DIR") or Path.home() / ".cache/troupe/models")
    llama_cpp = load_llama()
    out = {"generator": "tools/reference/vocab_model_reference.py",
           "llama_cpp_python": llama_cpp.__version__, "max_tokens": MAX_TOKENS, "models": []}
    with tempfile.TemporaryDirectory() as tmp:
        for spec in MODELS:
            t = template_of(spec["template"])
            template_file = Path(tmp) / "template.jinja"
            template_file.write_text(t["template"], encoding="utf-8")
            model = Path(tmp) / f"{spec['name']}.gguf"
            subprocess.run([writer, str(models / "llama.cpp-vocab" / spec["vocab"]),
                            str(template_file), str(model)]
                           + spec["writer_args"], check=True)
            sha = hashlib.sha256(model.read_bytes()).hexdigest()
            llm = llama_cpp.Llama(model_path=str(model), n_ctx=512, n_threads=2,
                                  flash_attn=False, type_k=llama_cpp.GGML_TYPE_F32,
                                  type_v=llama_cpp.GGML_TYPE_F32, verbose=False, seed=0)
            n_vocab = llm.n_vocab()
            vocab = llama_cpp.llama_model_get_vocab(llm.model)
            cases = []
            for prompt in PROMPTS:
                for raw in (False, True):
                    if raw:
                        tokens = llm.tokenize(prompt.encode(), add_bos=True, special=False)
                    else:
                        # As llama.cpp's server and troupe's engine: the vocabulary's BOS
                        # unless the template printed one.
                        text = render(t, prompt)
                        tokens = llm.tokenize(text.encode(),
                                              add_bos=not text.startswith(t["bos_token"]),
                                              special=True)
                    llm.reset()
                    llm.eval(tokens)
                    generated = []
                    for _ in range(MAX_TOKENS):
                        logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,))
                        tok = int(np.argmax(logits))
                        if llama_cpp.llama_vocab_is_eog(vocab, tok):
                            break
                        generated.append(tok)
                        llm.eval([tok])
                    data = llm.detokenize(generated)  # bytes: may end inside a character
                    text = data.decode("utf-8", errors="replace")
                    print(f"{spec['name']} {'raw ' if raw else 'chat'} {prompt!r} -> {text!r}",
                          file=sys.stderr)
                    cases.append({"prompt": prompt, "raw": raw, "prompt_tokens": tokens,
                                  "tokens": generated, "text": text, "bytes_hex": data.hex()})
            del llm
            out["models"].append(dict(spec, model_sha256=sha, cases=cases))
    OUT.write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
