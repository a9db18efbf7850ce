#!/usr/bin/env python3
"""Reference YaRN values of transformers for tests/deepseek/test_config.cpp.

For the rope settings of Kimi K2.5 (factor 64, beta 32/1, theta 5e4), Kimi K2-Instruct (factor 32,
beta 1/1) and DeepSeek-V3 (factor 40, beta 32/1, theta 1e4), prints the inverse frequencies of
transformers' ROPE_INIT_FUNCTIONS["yarn"] and the softmax scale of DeepseekV3Attention, as C++
initialisers to paste into the test. Checked with transformers 4.57.1, torch 2.x.

Usage: python3 tools/reference/deepseek_config_reference.py   (needs torch and transformers)
"""

import warnings

import torch
from transformers import DeepseekV3Config
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3Attention

warnings.filterwarnings("ignore")

CASES = {
    "k25": dict(factor=64.0, beta_fast=32.0, theta=50000.0, max_pos=262144),
    "k2_instruct": dict(factor=32.0, beta_fast=1.0, theta=50000.0, max_pos=131072),
    "deepseek_v3": dict(factor=40.0, beta_fast=32.0, theta=10000.0, max_pos=163840),
}


def cpp_float(x):
    s = f"{x:.9g}"
    return (s if any(c in s for c in ".e") else s + ".0") + "f"


def main():
    print(f"// transformers {__import__('transformers').__version__}")
    for name, c in CASES.items():
        cfg = DeepseekV3Config(
            vocab_size=32, hidden_size=64, intermediate_size=64, moe_intermediate_size=32, num_hidden_layers=1,
            num_attention_heads=2, num_key_value_heads=2, q_lora_rank=16, kv_lora_rank=16, qk_nope_head_dim=128,
            qk_rope_head_dim=64, v_head_dim=128, max_position_embeddings=c["max_pos"], rope_theta=c["theta"],
            rope_scaling={"type": "yarn", "factor": c["factor"], "beta_fast": c["beta_fast"], "beta_slow": 1.0,
                          "mscale": 1.0, "mscale_all_dim": 1.0, "original_max_position_embeddings": 4096})
        inv_freq, attention_factor = ROPE_INIT_FUNCTIONS["yarn"](cfg, "cpu")
        with torch.device("meta"):
            scaling = DeepseekV3Attention(cfg, layer_idx=0).scaling
        values = ", ".join(cpp_float(float(x)) for x in inv_freq)
        print(f"// {name}: attention_factor (cos/sin amplitude) {attention_factor}")
        print(f"constexpr double {name}_softmax_scale = {scaling!r};")
        print(f"constexpr float {name}_inv_freq[] = {{{values}}};")


if __name__ == "__main__":
    main()
