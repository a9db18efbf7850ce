#!/usr/bin/env python3
"""llama.cpp's tokenisation of several hundred generated strings on SentencePiece vocabularies.

llama.cpp's own test inputs (models/ggml-vocab-*.gguf.inp) are 45 strings; this adds, for the
SentencePiece ("llama" tokenizer model) vocabularies that scripts/install-deps puts into
$TROUPE_MODEL_DIR/llama.cpp-vocab, strings drawn with a fixed seed: random Unicode from several
scripts, whitespace runs, emoji sequences, code, digits, invalid UTF-8 bytes, and special-token
text with and without parse_special / add_special. For each case it records:
  ids      llama_tokenize(vocab, text, add_special, parse_special)
  decoded  llama_detokenize(vocab, ids, remove_special=false, unparse_special=parse_special)
Texts and decoded bytes that are valid UTF-8 are stored as strings, others as hex ("*_hex").
The result goes to tests/fixtures/llama/spm_vocab_reference.json, which
tests/llama/test_tokenizer_vocabs.cpp compares troupe's tokenizer with (CI never runs this).

Usage (llama.cpp built as shared libraries, llama-cpp-python's source on PYTHONPATH):
  LLAMA_CPP_LIB_PATH=/path/to/llama.cpp/build/bin PYTHONPATH=/path/to/llama-cpp-python \\
    python3 tools/reference/llama_cpp_vocab_reference.py [--vocab-dir DIR] [--out PATH]
"""

import argparse
import ctypes
import json
import os
import random
from pathlib import Path

import llama_cpp

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DIR = Path(os.environ.get("TROUPE_MODEL_DIR", Path.home() / ".cache/troupe/models")) / \
    "llama.cpp-vocab"
SEED = 20240613

# (vocabulary, generated cases): the Llama 2 vocabulary gets most; Phi-3 (a user-defined "</s>",
# its chat tokens) and Baichuan (no tokenizer.ggml.pre, 64000 tokens) fewer.
VOCABS = [("ggml-vocab-llama-spm.gguf", 220), ("ggml-vocab-phi-3.gguf", 50),
          ("ggml-vocab-baichuan.gguf", 40)]

RANGES = [
    (0x20, 0x7E), (0x20, 0x7E), (0x20, 0x7E),  # ASCII, more often
    (0xA0, 0x17F),  # Latin-1, Latin Extended-A
    (0x300, 0x36F),  # combining marks
    (0x370, 0x3FF), (0x400, 0x4FF),  # Greek, Cyrillic
    (0x590, 0x6FF),  # Hebrew, Arabic
    (0x900, 0x97F), (0xE00, 0xE7F),  # Devanagari, Thai
    (0x1780, 0x17FF),  # Khmer
    (0x2000, 0x206F), (0x2580, 0x259F),  # punctuation, block elements (U+2581 among them)
    (0x3040, 0x30FF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3),  # kana, CJK, Hangul
    (0xE000, 0xE0FF),  # private use
    (0x1F300, 0x1F6FF), (0x1F900, 0x1F9FF),  # emoji
    (0x10000, 0x1007F), (0x1D400, 0x1D4FF),  # Linear B, mathematical letters
]
WORDS = ["Hello", "world", "the", "The", "tokenizer", "don't", "I'm", "y'all", "llama", "Llama",
         "über", "naïve", "café", "日本語", "привет", "Ελληνικά", "مرحبا", "नमस्ते", "🦙", "👍🏽",
         "👨‍👩‍👧", "🏳️‍🌈", "1234567", "3.14159", "0x1F", "e^x", "<", ">", "</", "/>", "<0x41>",
         "▁", "▁▁", "__init__", "self", "return", "null", "\\n", "&amp;", "\u00a0", "\u200b",
         "\ufeff"]
CODE = [
    "def f(x):\n    return x ** 2\n",
    "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}",
    "{\"name\": \"troupe\", \"ids\": [1, 2, 3], \"ok\": true}",
    "#include <vector>\nint main() { return 0; }\n",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name;",
    "  if x:\n      pass\n  else:\n\t\tbreak\n\n\n",
    "<div class=\"a\">text</div>",
    "$ ls -la | grep '\\.gguf$' && echo done",
]
WHITESPACE = [" ", "  ", "   ", "    ", "\t", "\n", "\n\n", "\r\n", " \n ", "\t \t", "\u3000"]
SPECIALS = {
    "ggml-vocab-llama-spm.gguf": ["<s>", "</s>", "<unk>", "<s>Hello</s>", "Hi <s> there",
                                  "</s></s>", " <s> ", "<s>\n</s>"],
    "ggml-vocab-phi-3.gguf": ["<|user|>\nHello<|end|>\n<|assistant|>\n", "</s>", "<s>x</s>",
                              "<|system|>You are brief.<|end|><|user|> hi <|end|>",
                              "<|endoftext|>", " <|end|> ", "<unk>"],
    "ggml-vocab-baichuan.gguf": ["<s>", "</s>", "<s>Hello</s>", " <unk> "],
}
FIXED = ["", " ", "  ", "Hello", " Hello", "  Hello", "Hello ", "Hello  ", "\nHello", "▁Hello",
         "a▁b", "▁", " ▁ ", "\x00", "\x7f", "a\x00b"]


def random_text(rng):
    kind = rng.randrange(6)
    if kind == 0:  # random code points
        out = []
        for _ in range(rng.randint(1, 24)):
            lo, hi = rng.choice(RANGES)
            out.append(chr(rng.randint(lo, hi)))
        return "".join(out)
    if kind == 1:  # words and whitespace
        parts = []
        for _ in range(rng.randint(1, 10)):
            parts.append(rng.choice(WORDS))
            parts.append(rng.choice(WHITESPACE) if rng.random() < 0.4 else " ")
        return "".join(parts)[: rng.randint(1, 80)] if rng.random() < 0.3 else "".join(parts)
    if kind == 2:  # code
        return rng.choice(CODE)
    if kind == 3:  # whitespace runs around text
        return rng.choice(WHITESPACE) * rng.randint(1, 5) + rng.choice(WORDS) + \
            rng.choice(WHITESPACE) * rng.randint(0, 5)
    if kind == 4:  # digits and punctuation
        alphabet = "0123456789.,;:!?'\"()[]{}-_+=*/\\|@#$%^&~` "
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30)))
    # emoji sequences
    emoji = ["😀", "👍", "🏽", "\u200d", "👩", "💻", "🚀", "\ufe0f", "❤", "🇩🇪", "🦙", " "]
    return "".join(rng.choice(emoji) for _ in range(rng.randint(1, 12)))


def invalid_utf8(rng):
    base = rng.choice(["abc", "Hello world", "日本", ""]).encode()
    junk = bytes(rng.choice([0x80, 0xBF, 0xC0, 0xC3, 0xE2, 0xF0, 0xF8, 0xFE, 0xFF])
                 for _ in range(rng.randint(1, 4)))
    cut = rng.randint(0, len(base))
    return base[:cut] + junk + base[cut:]


def text_field(name, data):
    try:
        return {name: data.decode("utf-8")}
    except UnicodeDecodeError:
        return {name + "_hex": data.hex()}


def tokenize(vocab, data, add_special, parse_special):
    cap = max(16, 4 * len(data) + 8)
    buf = (llama_cpp.llama_token * cap)()
    n = llama_cpp.llama_tokenize(vocab, data, len(data), buf, cap, add_special, parse_special)
    assert n >= 0, n
    return list(buf[:n])


def detokenize(vocab, ids, unparse_special):
    arr = (llama_cpp.llama_token * max(1, len(ids)))(*ids)
    cap = 16 * len(ids) + 16
    buf = ctypes.create_string_buffer(cap)
    n = llama_cpp.llama_detokenize(vocab, arr, len(ids), buf, cap, False, unparse_special)
    assert n >= 0, n
    return buf.raw[:n]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vocab-dir", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--out", type=Path,
                    default=REPO / "tests/fixtures/llama/spm_vocab_reference.json")
    args = ap.parse_args()
    rng = random.Random(SEED)
    result = {"generator": "tools/reference/llama_cpp_vocab_reference.py",
              "llama_cpp_python": llama_cpp.__version__, "seed": SEED, "vocabularies": []}
    for name, n_random in VOCABS:
        model = llama_cpp.Llama(model_path=str(args.vocab_dir / name), vocab_only=True,
                                verbose=False)
        vocab = model._model.vocab
        inputs = [(t.encode(), False, False) for t in FIXED]
        inputs += [(random_text(rng).encode(), False, False) for _ in range(n_random)]
        inputs += [(invalid_utf8(rng), False, False) for _ in range(6)]
        inputs += [(t.encode(), add, special) for t in SPECIALS[name]
                   for add in (False, True) for special in (False, True)]
        inputs += [(random_text(rng).encode(), True, False) for _ in range(6)]
        cases = []
        for data, add, special in inputs:
            ids = tokenize(vocab, data, add, special)
            case = text_field("text", data)
            case.update({"add_special": add, "parse_special": special, "ids": ids})
            case.update(text_field("decoded", detokenize(vocab, ids, special)))
            cases.append(case)
        result["vocabularies"].append({"file": name, "cases": cases})
        print(f"{name}: {len(cases)} cases")
    args.out.write_text(json.dumps(result, ensure_ascii=False, separators=(",", ":")) + "\n")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
