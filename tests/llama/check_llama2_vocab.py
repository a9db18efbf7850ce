#!/usr/bin/env python3
"""check_llama2_vocab.py WRITER TROUPE FIXTURE

`troupe generate` end to end on a model with a real Llama 2 vocabulary: WRITER
(write_llama2_vocab_model) builds a tiny random llama model around llama.cpp's
ggml-vocab-llama-spm.gguf (SentencePiece tokenizer, Llama 2 chat template), and for each prompt of
FIXTURE (written by tools/reference/llama2_vocab_model_reference.py from llama.cpp's greedy
decoding of the same file) troupe's output must equal llama.cpp's, in chat and raw mode. This
checks the SentencePiece tokenizer, the Llama 2 template, BOS handling, the forward pass and the
streamed detokenisation together. Exits 77 (skipped) when the vocabulary is not installed.
"""

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def main():
    writer, troupe, fixture = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    models = Path(os.environ.get("TROUPE_MODEL_DIR") or Path.home() / ".cache/troupe/models")
    vocab = models / "llama.cpp-vocab/ggml-vocab-llama-spm.gguf"
    if not vocab.is_file():
        print(f"skipped: {vocab} is not installed (scripts/install-deps installs it)")
        return 77
    ref = json.loads(fixture.read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "llama2_vocab.gguf"
        subprocess.run([writer, str(vocab), str(model)], check=True)
        sha = hashlib.sha256(model.read_bytes()).hexdigest()
        if sha != ref["model_sha256"]:
            print(f"{writer} wrote a model with sha256 {sha}, the fixture was made from "
                  f"{ref['model_sha256']}: rerun tools/reference/llama2_vocab_model_reference.py")
            return 1
        failed = 0
        for c in ref["cases"]:
            args = [troupe, "generate", "-m", str(model), "-n", str(ref["max_tokens"])]
            args += ["--raw"] if c["raw"] else []
            got = subprocess.run(args + [c["prompt"]], capture_output=True)
            out = got.stdout[:-1] if got.stdout.endswith(b"\n") else got.stdout
            mode = "raw" if c["raw"] else "chat"
            if got.returncode != 0 or out != bytes.fromhex(c["bytes_hex"]):
                failed += 1
                print(f"DIFF {mode} {c['prompt']!r}: exit {got.returncode}\n  llama.cpp: "
                      f"{c['text']!r}\n  troupe:    {out.decode(errors='replace')!r}\n  "
                      f"{got.stderr.decode(errors='replace')[-400:]}")
            else:
                print(f"ok   {mode} {c['prompt']!r}")
        print(f"{len(ref['cases']) - failed} of {len(ref['cases'])} generations equal llama.cpp's")
        return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
