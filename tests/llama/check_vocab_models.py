#!/usr/bin/env python3
"""check_vocab_models.py WRITER TROUPE FIXTURE

`troupe generate` end to end on models with real vocabularies: for each model of FIXTURE
(written by tools/reference/vocab_model_reference.py from llama.cpp's greedy decoding), WRITER
(write_vocab_model) builds the same tiny random llama model around llama.cpp's vocab-only file
(Llama 2's SentencePiece vocabulary, Llama 3's byte-level BPE with Llama 3's RoPE, Qwen2's with
the qwen2 architecture) and the
model's real chat template (from tests/fixtures/llama/chat_templates.json), and troupe's output
must equal llama.cpp's bytes for every prompt, in chat and raw mode. This checks the tokenizer,
the chat template, BOS and end-of-turn handling, the forward pass and the streamed
detokenisation together. Exits 77 (skipped) when the vocabularies are not installed.
"""

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

TEMPLATES = Path(__file__).resolve().parents[1] / "fixtures/llama/chat_templates.json"


def main():
    writer, troupe, fixture = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    models = Path(os.environ.get("TROUPE_MODEL_DIR") or Path.home() / ".cache/troupe/models")
    ref = json.loads(fixture.read_text(encoding="utf-8"))
    templates = {t["name"]: t["template"]
                 for t in json.loads(TEMPLATES.read_text(encoding="utf-8"))["templates"]}
    failed = total = 0
    with tempfile.TemporaryDirectory() as tmp:
        for spec in ref["models"]:
            vocab = models / "llama.cpp-vocab" / spec["vocab"]
            if not vocab.is_file():
                print(f"skipped: {vocab} is not installed (scripts/install-deps installs it)")
                return 77
            template = Path(tmp) / "template.jinja"
            template.write_text(templates[spec["template"]], encoding="utf-8")
            model = Path(tmp) / f"{spec['name']}.gguf"
            subprocess.run([writer, str(vocab), str(template), str(model)]
                           + spec["writer_args"], check=True)
            sha = hashlib.sha256(model.read_bytes()).hexdigest()
            if sha != spec["model_sha256"]:
                print(f"{writer} wrote the {spec['name']} model with sha256 {sha}, the fixture was "
                      f"made from {spec['model_sha256']}: rerun "
                      "tools/reference/vocab_model_reference.py")
                return 1
            for c in spec["cases"]:
                args = [troupe, "generate", "-m", str(model), "-n", str(ref["max_tokens"])]
                args += ["--raw"] if c["raw"] else []
                # The fixture's templates print the date llama.cpp was given (26 Jul 2024).
                got = subprocess.run(args + [c["prompt"]], capture_output=True,
                                     env=dict(os.environ, TROUPE_CHAT_DATE="2024-07-26"))
                out = got.stdout[:-1] if got.stdout.endswith(b"\n") else got.stdout
                what = f"{spec['name']} {'raw ' if c['raw'] else 'chat'} {c['prompt']!r}"
                total += 1
                if got.returncode != 0 or out != bytes.fromhex(c["bytes_hex"]):
                    failed += 1
                    print(f"DIFF {what}: exit {got.returncode}\n  llama.cpp: {c['text']!r}\n"
                          f"  troupe:    {out.decode(errors='replace')!r}\n  "
                          f"{got.stderr.decode(errors='replace')[-400:]}")
                else:
                    print(f"ok   {what}")
    print(f"{total - failed} of {total} generations equal llama.cpp's")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
