#!/usr/bin/env python3
"""ggml's own row dot products on random GGUF-format weight rows: the fixture that pins troupe's CPU
kernels to ggml bit for bit for the weight types no committed model file exercises (the SmolLM2
file in CI is Q4_1 + Q8_0; Q4_K_M / Q5_K_M files hold Q4_K, Q5_K, Q6_K, and Q5_0 / Q5_1 on rows
that are not a multiple of 256; Q2_K / Q3_K_* files hold Q2_K, Q3_K; IQ4_XS / IQ4_NL files hold
IQ4_XS, IQ4_NL).

For each weight type, ROWS random rows of N elements (288; 768 for the K-quants) (random quant bytes, sane fp16 scales) are
multiplied by ACT random fp32 activation rows the way llama.cpp's mul_mat does on the CPU: the
activations quantised by ggml's from_float for the type's vec_dot_type (q8_0 or q8_1), then
ggml's vec_dot. The weights (raw block bytes, hex), the fp32 activations and ggml's results (float bits, hex) go
to tests/fixtures/llama/ggml_dots.json; tests/kernels/test_ggml_dots.cpp runs troupe's mat_mul on
them (its own activation quantisation included) and requires the same float bits.

It loads the libggml-base / libggml-cpu that llama-cpp-python builds (LLAMA_CPP_LIB_PATH or the
installed package's lib folder) through ctypes; run outside CI:
  LLAMA_CPP_LIB_PATH=/path/to/llama.cpp/build/bin python3 tools/reference/make_ggml_dot_fixture.py
"""

import ctypes
import json
import os
import random
import struct
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "tests/fixtures/llama/ggml_dots.json"
N_BLOCKS = 9     # per row of the 32-element block types (288 elements): an odd count
N_K = 768        # the K-quants: 3 super-blocks of 256 (an odd count) keep the fixture small
ROWS = 5         # an odd count: every multi-row kernel's remainder path
ACT = 3          # a pair of tokens and a single one
# ggml type id -> (name, block bytes, offsets of fp16 scale fields)
TYPES = {
    6: ("q5_0", 22, [0]),
    7: ("q5_1", 24, [0, 2]),
    3: ("q4_1", 20, [0, 2]),
    8: ("q8_0", 34, [0]),
    2: ("q4_0", 18, [0]),
    12: ("q4_K", 144, [0, 2]),   # d, dmin
    13: ("q5_K", 176, [0, 2]),   # d, dmin
    14: ("q6_K", 210, [208]),    # d at the end
    10: ("q2_K", 84, [80, 82]),  # d, dmin at the end
    11: ("q3_K", 110, [108]),    # d at the end
    20: ("iq4_nl", 18, [0]),     # 9 blocks: ggml's pairs of blocks and its odd last one
    23: ("iq4_xs", 136, [0]),
}
SUPER_BLOCK = (10, 11, 12, 13, 14, 23)  # 256-element blocks, Q8_K activations


def lib_dir():
    if "LLAMA_CPP_LIB_PATH" in os.environ:
        return Path(os.environ["LLAMA_CPP_LIB_PATH"])
    import llama_cpp  # noqa: F401  (the wheel's own lib folder)
    return Path(llama_cpp.__file__).parent / "lib"


class TypeTraitsCpu(ctypes.Structure):
    _fields_ = [("from_float", ctypes.c_void_p), ("vec_dot", ctypes.c_void_p),
                ("vec_dot_type", ctypes.c_int), ("nrows", ctypes.c_int64)]


FROM_FLOAT = ctypes.CFUNCTYPE(None, ctypes.POINTER(ctypes.c_float), ctypes.c_void_p, ctypes.c_int64)
VEC_DOT = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.POINTER(ctypes.c_float), ctypes.c_size_t,
                           ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t,
                           ctypes.c_int)
ACT_BLOCK_BYTES = {8: 34, 9: 36, 15: 292}  # ggml's q8_0, q8_1 (fp16 d and s) and q8_K


def fp16(x):
    return struct.pack("<e", x)


def main():
    d = lib_dir()
    ctypes.CDLL(str(d / "libggml-base.so"), mode=ctypes.RTLD_GLOBAL)
    cpu = ctypes.CDLL(str(d / "libggml-cpu.so"), mode=ctypes.RTLD_GLOBAL)
    cpu.ggml_cpu_init.restype = None
    cpu.ggml_cpu_init()
    cpu.ggml_get_type_traits_cpu.restype = ctypes.POINTER(TypeTraitsCpu)
    rnd = random.Random(20261202)
    cases = []
    for type_id, (name, block, scales) in TYPES.items():
        N = N_K if type_id in SUPER_BLOCK else 32 * N_BLOCKS
        traits = cpu.ggml_get_type_traits_cpu(type_id).contents
        vec_dot = VEC_DOT(traits.vec_dot)
        act_type = traits.vec_dot_type
        from_float = FROM_FLOAT(cpu.ggml_get_type_traits_cpu(act_type).contents.from_float)
        rows = []
        for _ in range(ROWS):
            row = bytearray()
            per_block = 256 if type_id in SUPER_BLOCK else 32
            for _ in range(N // per_block):
                b = bytearray(rnd.getrandbits(8) for _ in range(block))
                for off in scales:
                    if type_id in SUPER_BLOCK:
                        lo, hi = 0.0005, 0.005
                    else:
                        lo, hi = (0.001, 0.05) if off == 0 else (-0.3, 0.1)
                    b[off:off + 2] = fp16(rnd.uniform(lo, hi))
                if type_id == 8:  # q8_0 quants in [-127, 127], as quantisers write them
                    for j in range(2, 34):
                        if b[j] == 0x80:
                            b[j] = 0x81
                row += b
            rows.append(bytes(row))
        acts = [[rnd.uniform(-2.0, 2.0) for _ in range(N)] for _ in range(ACT)]
        results = []
        for a in acts:
            xa = (ctypes.c_float * N)(*a)
            act_block = 256 if act_type == 15 else 32
            qa = ctypes.create_string_buffer(N // act_block * ACT_BLOCK_BYTES[act_type])
            from_float(xa, qa, N)
            out = []
            for row in rows:
                s = ctypes.c_float(0)
                w = ctypes.create_string_buffer(row, len(row))
                vec_dot(N, ctypes.byref(s), 0, w, 0, qa, 0, 1)
                out.append(struct.pack("<f", s.value).hex())
            results.append(out)
        cases.append({"type": name, "ggml_type": type_id, "n": N,
                      "rows": [r.hex() for r in rows],
                      "activations": [struct.pack(f"<{N}f", *a).hex() for a in acts],
                      "dots": results})
        print(f"{name}: {ROWS} rows x {ACT} activations", file=sys.stderr)
    OUT.write_text(json.dumps({"generator": "tools/reference/make_ggml_dot_fixture.py",
                               "ggml_lib": str(d), "cases": cases}) + "\n")
    print(f"wrote {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
