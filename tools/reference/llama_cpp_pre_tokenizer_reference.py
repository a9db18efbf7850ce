#!/usr/bin/env python3
"""llama.cpp's tokenisation under the byte-level BPE pre-tokenizers that its vocabulary test set
has no file for (Mistral Nemo and Small 3's "tekken", Phi-4's "gpt-4o", "dbrx", "smaug-bpe",
"viking", "poro-chat", "bloom", "gpt3-finnish", "seed-coder").

Each pre-tokenizer runs over one real vocabulary: Llama 3's (ggml-vocab-llama-bpe.gguf, which
scripts/install-deps puts into $TROUPE_MODEL_DIR/llama.cpp-vocab) with tokenizer.ggml.pre
rewritten, so the split into words, and how words become tokens (merges, or whole-word tokens
where the pre-tokenizer ignores merges), are llama.cpp's. Inputs: llama.cpp's own test strings
for that vocabulary (.inp), strings where these pre-tokenizers differ (letter case inside
words, slashes, digit runs), and strings drawn with a fixed seed as in
tools/reference/llama_cpp_vocab_reference.py. For each: llama_tokenize(add_special=false,
parse_special=false). Result: tests/fixtures/llama/bpe_pre_reference.json, which
tests/llama/test_tokenizer_vocabs.cpp compares troupe's tokenizer with (CI never runs this).

Usage (llama.cpp built as shared libraries, llama-cpp-python's source on PYTHONPATH):
  LLAMA_CPP_LIB_PATH=/path/to/llama.cpp/build/bin PYTHONPATH=/path/to/llama-cpp-python \\
    python3 tools/reference/llama_cpp_pre_tokenizer_reference.py [--vocab-dir DIR] [--out PATH]
"""

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

import gguf
import llama_cpp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llama_cpp_vocab_reference import DEFAULT_DIR, random_text, text_field, tokenize  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
BASE = "ggml-vocab-llama-bpe.gguf"
PRES = ["tekken", "gpt-4o", "dbrx", "smaug-bpe", "viking", "poro-chat", "bloom", "gpt3-finnish",
        "seed-coder"]
GENERATED = 60
# Where these pre-tokenizers differ from Llama 3's: letter case inside words (tekken, gpt-4o),
# contractions after them, paths and slashes, digit runs, the punctuation that viking/bloom split.
FIXED = ["HelloWorld", "camelCaseString", "XMLHttpRequest", "McDonald's", "I'M", "DON'T stop",
         "iPhone", "ABCdef123", "ÉCOLE école Éa", "ΑΒΓαβγ Δδ", "snake_case_name", "/usr/lib/x86",
         "a/b\n/c", "12345678", "3,14 vs 3.14", "Hello, world! (yes) … 。，", "  ORAL   Care "]
SEED = 20261203


def with_pre(src, dst, pre):
    """A copy of GGUF file src (metadata only) with tokenizer.ggml.pre = pre."""
    r = gguf.GGUFReader(str(src))
    w = gguf.GGUFWriter(str(dst), r.fields["general.architecture"].contents())
    for name, field in r.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        types = field.types
        value = pre if name == "tokenizer.ggml.pre" else field.contents()
        sub = types[1] if types[0] == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(name, value, types[0], sub_type=sub)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vocab-dir", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--out", type=Path,
                    default=REPO / "tests/fixtures/llama/bpe_pre_reference.json")
    args = ap.parse_args()
    rng = random.Random(SEED)
    inputs = (args.vocab_dir / (BASE + ".inp")).read_text(encoding="utf-8")
    texts = [t.encode("utf-8") for t in inputs.split("\n__ggml_vocab_test__\n")]
    texts += [t.encode("utf-8") for t in FIXED]
    texts += [random_text(rng).encode("utf-8") for _ in range(GENERATED)]
    result = {"generator": "tools/reference/llama_cpp_pre_tokenizer_reference.py",
              "llama_cpp_python": llama_cpp.__version__, "seed": SEED, "base": BASE,
              "pre_tokenizers": []}
    with tempfile.TemporaryDirectory() as tmp:
        for pre in PRES:
            path = Path(tmp) / f"{pre}.gguf"
            with_pre(args.vocab_dir / BASE, path, pre)
            model = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
            vocab = llama_cpp.llama_model_get_vocab(model.model)
            cases = [{**text_field("text", t), "ids": tokenize(vocab, t, False, False)}
                     for t in texts]
            result["pre_tokenizers"].append({"pre": pre, "cases": cases})
            print(f"{pre}: {len(cases)} strings", file=sys.stderr)
            del model
    args.out.write_text(json.dumps(result, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
