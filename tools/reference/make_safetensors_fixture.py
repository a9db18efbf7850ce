#!/usr/bin/env python3
"""safetensors files written by the reference implementations, for tests/formats/test_safetensors.cpp.

Writes into tests/fixtures/safetensors/:
  tiny.safetensors   with the Python `safetensors` package (safetensors.torch.save_file): BF16, F32,
                     I32, F8_E4M3 and F16 tensors with known values, a scalar, an empty tensor and
                     "__metadata__";
  sharded/           with huggingface_hub.save_torch_state_dict (the writer transformers uses):
                     model-0000N-of-0000M.safetensors shards and model.safetensors.index.json.
The test hard-codes the values below; change both together. CI only reads the committed files.

Usage (needs torch, safetensors and huggingface_hub, e.g. pip install torch safetensors huggingface_hub):
  python3 tools/reference/make_safetensors_fixture.py [--out DIR]
"""

import argparse
import json
import shutil
from pathlib import Path

import torch
from huggingface_hub import save_torch_state_dict
from safetensors.torch import save_file

REPO = Path(__file__).resolve().parents[2]


def tiny_tensors():
    return {
        # Every value is exact in its dtype, so the C++ test compares bit patterns.
        "model.embed_tokens.weight": torch.tensor([[1.0, -2.0, 0.5], [3.25, -0.125, 100.0]],
                                                  dtype=torch.bfloat16),
        "model.norm.weight": torch.tensor([0.1, -1.5, 3.0e5, 1e-7], dtype=torch.float32),
        "model.layers.0.mlp.experts.0.up_proj.weight_packed":
            torch.tensor([[0x12345678, -1], [7, -2147483648]], dtype=torch.int32),
        "model.layers.0.self_attn.o_proj.weight":
            torch.tensor([0.0, 1.0, -2.0, 448.0, 0.015625], dtype=torch.float32).to(torch.float8_e4m3fn),
        "model.layers.0.self_attn.o_proj.weight_scale_inv": torch.tensor([[0.5]], dtype=torch.float32),
        "half": torch.tensor([1.0, -0.5, 65504.0], dtype=torch.float16),
        "scalar": torch.tensor(42.0, dtype=torch.float32),
        "empty": torch.zeros((0, 4), dtype=torch.float16),
    }


def sharded_tensors():
    # 6 tensors of 64..256 bytes; a 400-byte shard limit splits them into several shards.
    out = {}
    for i in range(3):
        out[f"model.layers.{i}.mlp.down_proj.weight"] = \
            torch.arange(i * 64, i * 64 + 64, dtype=torch.float32).reshape(8, 8)
        out[f"model.layers.{i}.input_layernorm.weight"] = torch.full((16,), float(i + 1), dtype=torch.bfloat16)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "tests/fixtures/safetensors")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    save_file(tiny_tensors(), str(args.out / "tiny.safetensors"),
              metadata={"format": "pt", "producer": "make_safetensors_fixture.py"})

    sharded = args.out / "sharded"
    shutil.rmtree(sharded, ignore_errors=True)
    sharded.mkdir()
    save_torch_state_dict(sharded_tensors(), sharded, max_shard_size=400)
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    print(f"wrote {args.out / 'tiny.safetensors'} and {len(set(index['weight_map'].values()))} shards in {sharded}")


if __name__ == "__main__":
    main()
