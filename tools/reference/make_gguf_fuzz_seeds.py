#!/usr/bin/env python3
"""Writes the seed corpus of the GGUF fuzzer (tests/fuzz/seeds/gguf/) with the `gguf` package
from PyPI (llama.cpp's own writer), so that the seeds are files troupe did not write: every
metadata value type the writer offers, arrays, a custom alignment, f32 and f16 tensors.

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


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    write("tiny_align32.gguf", 32)
    write("tiny_align64.gguf", 64)
    print("wrote", sorted(p.name for p in OUT.iterdir()))
