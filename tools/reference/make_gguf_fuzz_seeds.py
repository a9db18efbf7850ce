#!/usr/bin/env python3
"""Writes the seed corpus of the GGUF fuzzer (tests/fuzz/seeds/gguf/) with the `gguf` package
from PyPI (llama.cpp's own writer), so that the seeds are files troupe did not write: every
metadata value type the writer offers, arrays, a custom alignment, f32 and f16 tensors, two
small byte-level BPE tokenizers with a ChatML template and two SentencePiece ones with Llama 2
and Llama 3 templates (for the tokenizer and chat-template half of the harness).

Usage: python3 tools/reference/make_gguf_fuzz_seeds.py   (needs `pip install gguf numpy`)
"""

from pathlib import Path

import gguf
import numpy as np

OUT = Path(__file__).resolve().parents[2] / "tests/fuzz/seeds/gguf"


def write(name, alignment):
    w = gguf.GGUFWriter(str(OUT / name), "llama")
    w.add_uint32("llama.context_length", 2048)
    w.add_float32("llama.rope.freq_base", 10000.0)
    w.add_string("general.name", "tiny")
    w.add_bool("x.flag", True)
    w.add_int64("x.i64", -5)
    w.add_array("tokenizer.ggml.tokens", ["a", "b", "<s>"])
    w.add_array("tokenizer.ggml.scores", [0.0, 1.5, -2.0])
    w.add_array("x.ints", [1, 2, 3])
    if alignment != 32:
        w.add_custom_alignment(alignment)
    w.add_tensor("t0", np.arange(64, dtype=np.float32).reshape(2, 32))
    w.add_tensor("t1", np.ones((3,), dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def bytes_to_unicode():
    """GPT-2's byte-level alphabet: byte b as one printable character."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def write_tokenizer(name, pre):
    """A small byte-level BPE vocabulary in SmolLM2's form (tokenizer.ggml.* keys, ChatML)."""
    alphabet = bytes_to_unicode()
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokens = special + [alphabet[b] for b in range(256)]
    merges = []
    for a, b in [("t", "h"), ("th", "e"), ("Ġ", "t"), ("Ġt", "he"), ("i", "n"), ("Ġ", "a"),
                 ("e", "r"), ("o", "n"), ("Ġ", "1"), ("1", "2")]:
        merges.append(f"{a} {b}")
        tokens.append(a + b)
    types = [3] * len(special) + [1] * (len(tokens) - len(special))
    w = gguf.GGUFWriter(str(OUT / name), "llama")
    w.add_string("tokenizer.ggml.model", "gpt2")
    w.add_string("tokenizer.ggml.pre", pre)
    w.add_array("tokenizer.ggml.tokens", tokens)
    w.add_array("tokenizer.ggml.token_type", types)
    w.add_array("tokenizer.ggml.merges", merges)
    w.add_uint32("tokenizer.ggml.bos_token_id", 1)
    w.add_uint32("tokenizer.ggml.eos_token_id", 2)
    w.add_bool("tokenizer.ggml.add_bos_token", False)
    w.add_string("tokenizer.chat_template",
                 "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
                 "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_spm_tokenizer(name, template):
    """A small SentencePiece vocabulary in Llama 2's form: <unk>, <s>, </s>, the 256 byte-fallback
    tokens, scored pieces with "▁" for spaces, and a chat template of another kind."""
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [2, 3, 3] + [6] * 256
    pieces = ["▁", "t", "h", "e", "▁t", "he", "▁the", "i", "n", "in", "▁in", "s", "▁is", "1",
              "2", "12", "▁1", "▁12", "a", "▁a"]
    tokens += pieces
    types += [1] * len(pieces)
    scores = [0.0] * (3 + 256) + [-float(i) for i in range(len(pieces))]
    w = gguf.GGUFWriter(str(OUT / name), "llama")
    w.add_string("tokenizer.ggml.model", "llama")
    w.add_array("tokenizer.ggml.tokens", tokens)
    w.add_array("tokenizer.ggml.scores", scores)
    w.add_array("tokenizer.ggml.token_type", types)
    w.add_uint32("tokenizer.ggml.unknown_token_id", 0)
    w.add_uint32("tokenizer.ggml.bos_token_id", 1)
    w.add_uint32("tokenizer.ggml.eos_token_id", 2)
    w.add_bool("tokenizer.ggml.add_space_prefix", True)
    w.add_string("tokenizer.chat_template", template)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    write("tiny_align32.gguf", 32)
    write("tiny_align64.gguf", 64)
    write_tokenizer("tokenizer_smollm.gguf", "smollm")
    write_tokenizer("tokenizer_default.gguf", "default")
    write_spm_tokenizer("tokenizer_spm_llama2.gguf",
                        "{% for message in messages %}{% if message['role'] == 'user' %}"
                        "{{ bos_token + '[INST] ' + message['content'].strip() + ' [/INST]' }}"
                        "{% elif message['role'] == 'system' %}{{ '<<SYS>>\\n' + "
                        "message['content'] + '\\n<</SYS>>\\n\\n' }}{% endif %}{% endfor %}")
    write_spm_tokenizer("tokenizer_spm_llama3.gguf",
                        "{{ bos_token }}{% for message in messages %}"
                        "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
                        " + message['content'] + '<|eot_id|>' }}{% endfor %}")
    print("wrote", sorted(p.name for p in OUT.iterdir()))
