#!/usr/bin/env python3
"""ggml's own mul_mat of f32, f16 and bf16 weight matrices: the fixture that pins troupe's float
weight products (kernels/cpu/float_dot.*) to llama.cpp bit for bit, in both of ggml's orders;
and of the K-quants and iq4_xs, whose batches of 8 tokens or more llama.cpp sums in its tiled
matmul (ggml-cpu/tiled), and iq4_nl, whose batches tinyBLAS sums (troupe:
mat_mat_ggml_batched), written to ggml_kquant_mul_mat.json.

ggml sums such a product in one of two ways, and the batch decides which: one activation row goes
through ggml_vec_dot_{f32,f16,bf16}; two or more go through llamafile's tinyBLAS when the weight
has a multiple of 4 rows and a row fills its vectors (16 floats; 32 bf16), else through vec_dot
again. Each case below is one ggml graph (ggml_mul_mat of a weight tensor by an f32 activation
tensor, computed by the CPU backend on 2 threads, as llama.cpp computes a layer), chosen so that
every branch is taken: one token and three; 8 rows and 6; rows of 320 (tinyBLAS), 328 (f32/f16:
not a multiple of 16, and a vec_dot tail of 8) and 336 (bf16: not a multiple of 32, a tail of 16).

The weights (raw tensor bytes, hex), the f32 activations and ggml's results (float bits, hex) go
to tests/fixtures/llama/ggml_float_dots.json; tests/llama/test_ggml_dots.cpp runs troupe's
mat_mul on them (rounding the activations itself, as ggml does) and requires the same bits.

It loads the libggml-base / libggml-cpu that llama-cpp-python builds (LLAMA_CPP_LIB_PATH or the
installed package's lib folder) through ctypes; run outside CI, on a llama.cpp built for
AVX-512 with AVX512-BF16 (GGML_NATIVE on Zen 4 or Sapphire Rapids: the arithmetic troupe
reproduces):
  LLAMA_CPP_LIB_PATH=/path/to/llama.cpp/build/bin python3 tools/reference/make_ggml_float_dot_fixture.py
"""

import ctypes
import json
import os
import random
import struct
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "tests/fixtures/llama/ggml_float_dots.json"
KQUANT_OUT = REPO / "tests/fixtures/llama/ggml_kquant_mul_mat.json"
GGML_F32, GGML_F16, GGML_BF16 = 0, 1, 30
NAMES = {GGML_F32: "f32", GGML_F16: "f16", GGML_BF16: "bf16"}
# (ggml type, rows, n, tokens)
CASES = [(t, rows, n, tokens)
         for t in (GGML_F32, GGML_F16, GGML_BF16)
         for rows, n, tokens in ((8, 320, 1), (8, 320, 3), (6, 320, 3), (8, 328, 1), (8, 328, 3),
                                 (8, 336, 3))]


class InitParams(ctypes.Structure):
    _fields_ = [("mem_size", ctypes.c_size_t), ("mem_buffer", ctypes.c_void_p),
                ("no_alloc", ctypes.c_bool)]


def lib_dir():
    if "LLAMA_CPP_LIB_PATH" in os.environ:
        return Path(os.environ["LLAMA_CPP_LIB_PATH"])
    import llama_cpp  # noqa: F401  (the wheel's own lib folder)
    return Path(llama_cpp.__file__).parent / "lib"


def encode(t, values):
    """values rounded to the tensor type, as bytes (f16: round to nearest-even by struct)."""
    if t == GGML_F32:
        return struct.pack(f"<{len(values)}f", *values)
    if t == GGML_F16:
        return struct.pack(f"<{len(values)}e", *values)
    out = bytearray()
    for v in values:  # bf16: round to nearest-even from the float bits
        u = struct.unpack("<I", struct.pack("<f", v))[0]
        out += struct.pack("<H", ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) & 0xFFFF)
    return bytes(out)


def main():
    d = lib_dir()
    base = ctypes.CDLL(str(d / "libggml-base.so"), mode=ctypes.RTLD_GLOBAL)
    cpu = ctypes.CDLL(str(d / "libggml-cpu.so"), mode=ctypes.RTLD_GLOBAL)
    cpu.ggml_cpu_init.restype = None
    cpu.ggml_cpu_init()
    vp = ctypes.c_void_p
    base.ggml_init.argtypes = [InitParams]
    base.ggml_init.restype = vp
    base.ggml_new_tensor_2d.argtypes = [vp, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    base.ggml_new_tensor_2d.restype = vp
    base.ggml_mul_mat.argtypes = [vp, vp, vp]
    base.ggml_mul_mat.restype = vp
    base.ggml_new_graph.argtypes = [vp]
    base.ggml_new_graph.restype = vp
    base.ggml_build_forward_expand.argtypes = [vp, vp]
    base.ggml_get_data.argtypes = [vp]
    base.ggml_get_data.restype = vp
    base.ggml_free.argtypes = [vp]
    cpu.ggml_graph_compute_with_ctx.argtypes = [vp, vp, ctypes.c_int]
    rnd = random.Random(20261203)
    cases = []
    for t, rows, n, tokens in CASES:
        w = [rnd.gauss(0.0, 0.05) for _ in range(rows * n)]
        x = [rnd.gauss(0.0, 1.0) for _ in range(tokens * n)]
        wb = encode(t, w)
        xb = struct.pack(f"<{len(x)}f", *x)
        y = mul_mat(base, cpu, t, wb, rows, n, xb, tokens)
        row_bytes = len(wb) // rows
        cases.append({"type": NAMES[t], "ggml_type": t, "rows": rows, "n": n, "tokens": tokens,
                      "weights": [wb[r * row_bytes:(r + 1) * row_bytes].hex() for r in range(rows)],
                      "activations": [xb[i * 4 * n:(i + 1) * 4 * n].hex() for i in range(tokens)],
                      "results": [y[i * 4 * rows:(i + 1) * 4 * rows].hex() for i in range(tokens)]})
        print(f"{NAMES[t]}: {rows} rows of {n} x {tokens} tokens", file=sys.stderr)
    OUT.write_text(json.dumps({"generator": "tools/reference/make_ggml_float_dot_fixture.py",
                               "ggml_lib": str(d), "cases": cases}) + "\n")
    print(f"wrote {OUT}", file=sys.stderr)
    kquants(base, cpu, d)


def mul_mat(base, cpu, t, weights, rows, n, activations, tokens):
    """ggml_mul_mat of `rows` rows of n elements of type t (raw bytes) by `tokens` f32
    activation rows (raw bytes), computed by the CPU backend on 2 threads: the result's bytes,
    token by token."""
    ctx = base.ggml_init(InitParams(64 << 20, None, False))
    wt = base.ggml_new_tensor_2d(ctx, t, n, rows)
    xt = base.ggml_new_tensor_2d(ctx, GGML_F32, n, tokens)
    ctypes.memmove(base.ggml_get_data(wt), weights, len(weights))
    ctypes.memmove(base.ggml_get_data(xt), activations, len(activations))
    yt = base.ggml_mul_mat(ctx, wt, xt)
    gf = base.ggml_new_graph(ctx)
    base.ggml_build_forward_expand(gf, yt)
    cpu.ggml_graph_compute_with_ctx(ctx, gf, 2)
    y = ctypes.string_at(base.ggml_get_data(yt), 4 * rows * tokens)
    base.ggml_free(ctx)
    return y


def kquants(base, cpu, lib):
    """The K-quants and iq4_xs: ggml_mul_mat by 3 tokens (vec_dot) and by 13 (ggml's tiled
    matmul, taken from 8 tokens on); iq4_nl by both (llamafile's tinyBLAS from 2 on); 20 rows (a full 16-row microtile and a ragged one) of 512
    (two 256-element blocks), the weights quantised by ggml from random floats; one set of 13
    activation rows for all. Written to KQUANT_OUT."""
    vp = ctypes.c_void_p
    base.ggml_quantize_chunk.argtypes = [ctypes.c_int, vp, vp, ctypes.c_int64, ctypes.c_int64,
                                         ctypes.c_int64, vp]
    base.ggml_quantize_chunk.restype = ctypes.c_size_t
    base.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
    base.ggml_row_size.restype = ctypes.c_size_t
    rnd = random.Random(20261204)
    rows, n, tokens_max = 20, 512, 13
    x = [rnd.gauss(0.0, 1.0) for _ in range(tokens_max * n)]
    xb = struct.pack(f"<{len(x)}f", *x)
    cases = []
    for t, name in ((10, "q2_K"), (11, "q3_K"), (12, "q4_K"), (13, "q5_K"), (14, "q6_K"),
                    (23, "iq4_xs"), (20, "iq4_nl")):
        w = [rnd.gauss(0.0, 0.05) for _ in range(rows * n)]
        wf = struct.pack(f"<{len(w)}f", *w)
        row_bytes = base.ggml_row_size(t, n)
        wq = ctypes.create_string_buffer(row_bytes * rows)
        base.ggml_quantize_chunk(t, wf, wq, 0, rows, n, None)
        results = {}
        for tokens in (3, tokens_max):
            y = mul_mat(base, cpu, t, wq.raw, rows, n, xb[:4 * n * tokens], tokens)
            results[str(tokens)] = [y[i * 4 * rows:(i + 1) * 4 * rows].hex() for i in range(tokens)]
        raw = wq.raw
        cases.append({"type": name, "ggml_type": t, "rows": rows, "n": n,
                      "weights": [raw[r * row_bytes:(r + 1) * row_bytes].hex() for r in range(rows)],
                      "results": results})
        print(f"{name}: {rows} rows of {n} x 3 and {tokens_max} tokens", file=sys.stderr)
    KQUANT_OUT.write_text(json.dumps({
        "generator": "tools/reference/make_ggml_float_dot_fixture.py", "ggml_lib": str(lib),
        "activations": [xb[i * 4 * n:(i + 1) * 4 * n].hex() for i in range(tokens_max)],
        "cases": cases}) + "\n")
    print(f"wrote {KQUANT_OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
