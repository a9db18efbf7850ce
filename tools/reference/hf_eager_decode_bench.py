#!/usr/bin/env python3
"""HF transformers eager decode-step time for a Moonlight-shaped DeepSeek-V3 model (random weights):
the baseline the CUDA backend's decode benchmark is compared with (issue: CUDA backend).

The model is moonshotai/Moonlight-16B-A3B-Instruct's shape (../shared/reference/models-and-formats.md
§1.4: hidden 2048, 27 layers, MLA without q_lora, 64 routed experts top-6, 2 shared, first layer dense,
vocab 163840) built by DeepseekV3ForCausalLM with random weights in bf16, attn_implementation="eager".
HF has no INT4 kernel of its own, so its experts are bf16: its floor is the bf16 one, printed beside it.

For each batch size B: a prefill of --prompt random tokens per sequence, then --steps greedy decode
steps of B tokens through the KV cache; the step time is the median over steps (CUDA synchronised
around each one). Also measured in the same run: the device's copy bandwidth (a D2D copy of 2 GiB,
counted as bytes read + bytes written per second, as the CUDA bandwidth test does), and for each B
the bytes of weights a step must read (attention, dense and shared MLPs and lm_head for every step;
routed experts: those the step's tokens select, expected count 64·(1 − (1 − 6/64)^B) for uniform
routing) in bf16 (what HF reads) and with INT4 group-32 routed experts (what troupe reads), so both
rooflines come from this one run.

Runs where torch sees a GPU (the device machine's image has torch and transformers); --device cpu
--tiny runs the same code on a shrunken model on any CPU (how it is tested without a GPU).

Usage:
  python3 tools/reference/hf_eager_decode_bench.py [--batches 1,8,64] [--steps 16] [--prompt 32]
      [--device cuda|cpu] [--tiny] [--json OUT.json]
"""

import argparse
import json
import statistics
import sys
import time

MOONLIGHT = dict(
    vocab_size=163840, hidden_size=2048, intermediate_size=11264, moe_intermediate_size=1408,
    num_hidden_layers=27, num_attention_heads=16, num_key_value_heads=16, n_shared_experts=2,
    n_routed_experts=64, num_experts_per_tok=6, routed_scaling_factor=2.446, kv_lora_rank=512,
    q_lora_rank=None, qk_rope_head_dim=64, v_head_dim=128, qk_nope_head_dim=128, n_group=1,
    topk_group=1, first_k_dense_replace=1, norm_topk_prob=True, max_position_embeddings=8192,
    rms_norm_eps=1e-5, rope_theta=50000.0, rope_scaling=None, tie_word_embeddings=False,
    attention_bias=False, bos_token_id=163584, eos_token_id=163586)

# The same structure, small enough for a CPU: every code path of the full shape (dense first layer,
# MoE layers with shared experts, MLA without q_lora).
TINY = dict(MOONLIGHT, vocab_size=512, hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
            num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4, n_routed_experts=16,
            kv_lora_rank=32, qk_rope_head_dim=16, v_head_dim=24, qk_nope_head_dim=32,
            bos_token_id=510, eos_token_id=511)

INT4_GROUP = 32


def weight_bytes(c, batch, int4_experts):
    """Bytes of weights one decode step of `batch` tokens reads (see the module docstring)."""
    h, heads = c["hidden_size"], c["num_attention_heads"]
    qk = c["qk_nope_head_dim"] + c["qk_rope_head_dim"]
    q = h * heads * qk if c["q_lora_rank"] is None else \
        h * c["q_lora_rank"] + c["q_lora_rank"] * heads * qk
    kv_a = h * (c["kv_lora_rank"] + c["qk_rope_head_dim"])
    kv_b = c["kv_lora_rank"] * heads * (c["qk_nope_head_dim"] + c["v_head_dim"])
    o = heads * c["v_head_dim"] * h
    attention = (q + kv_a + kv_b + o) * 2  # bf16
    dense = 3 * h * c["intermediate_size"] * 2
    expert_params = 3 * h * c["moe_intermediate_size"]
    shared = c["n_shared_experts"] * expert_params * 2
    router = h * c["n_routed_experts"] * 2  # bf16 gate
    per_expert = expert_params * (0.5 + 2 / INT4_GROUP) if int4_experts else expert_params * 2
    n, k = c["n_routed_experts"], c["num_experts_per_tok"]
    touched = n * (1 - (1 - k / n) ** batch)
    layers = c["num_hidden_layers"]
    moe_layers = layers - c["first_k_dense_replace"]
    lm_head = c["vocab_size"] * h * 2
    return (layers * attention + c["first_k_dense_replace"] * dense +
            moe_layers * (shared + router + touched * per_expert) + lm_head)


def copy_bandwidth(torch, device):
    """Bytes read + written per second by a D2D copy of 2 GiB (median of 10); None on the CPU."""
    if device != "cuda":
        return None
    n = 2 << 30
    src = torch.empty(n, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    torch.cuda.synchronize()
    times = []
    for _ in range(10):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dst.copy_(src)
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    del src, dst
    return 2 * n / statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batches", default="1,8,64")
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--prompt", type=int, default=32)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()

    import torch
    from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("hf_eager_decode_bench: torch sees no CUDA device (use --device cpu --tiny off a GPU)")
    shape = TINY if args.tiny else MOONLIGHT
    config = DeepseekV3Config(**shape, torch_dtype="bfloat16")
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device(args.device):
        model = DeepseekV3ForCausalLM(config)
    torch.set_default_dtype(torch.float32)
    model.eval()
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    bandwidth = copy_bandwidth(torch, args.device)

    results = []
    for batch in [int(b) for b in args.batches.split(",")]:
        ids = torch.randint(0, shape["vocab_size"] - 2, (batch, args.prompt), device=args.device)
        with torch.no_grad():
            out = model(input_ids=ids, use_cache=True)
            cache = out.past_key_values
            nxt = out.logits[:, -1, :].argmax(-1, keepdim=True)
            step_times = []
            for _ in range(args.steps):
                sync()
                t0 = time.perf_counter()
                out = model(input_ids=nxt, past_key_values=cache, use_cache=True)
                nxt = out.logits[:, -1, :].argmax(-1, keepdim=True)
                sync()
                step_times.append(time.perf_counter() - t0)
                cache = out.past_key_values
        step = statistics.median(step_times[1:] if len(step_times) > 1 else step_times)
        row = {"batch": batch, "step_ms": step * 1e3, "tokens_per_s": batch / step,
               "weight_bytes_bf16": weight_bytes(shape, batch, False),
               "weight_bytes_int4_experts": weight_bytes(shape, batch, True)}
        if bandwidth:
            row["roofline_ms_bf16"] = row["weight_bytes_bf16"] / (bandwidth / 2) * 1e3
            row["roofline_ms_int4_experts"] = row["weight_bytes_int4_experts"] / (bandwidth / 2) * 1e3
            row["fraction_of_bf16_roofline"] = row["roofline_ms_bf16"] / row["step_ms"]
        results.append(row)

    report = {"generator": "tools/reference/hf_eager_decode_bench.py", "shape": "tiny" if args.tiny
              else "moonlight", "device": args.device,
              "device_name": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
              "torch": torch.__version__, "transformers": __import__("transformers").__version__,
              "copy_bandwidth_bytes_per_s": bandwidth, "prompt": args.prompt, "steps": args.steps,
              "results": results}
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1)
    bw = f"{bandwidth / 1e9:.0f} GB/s (read+write)" if bandwidth else "not measured (CPU)"
    print(f"HF transformers {report['transformers']} eager, {report['shape']} shape, "
          f"{report['device_name']}, copy bandwidth {bw}")
    print("| batch | step ms | tokens/s | weights read (bf16) | bf16 roofline ms | of roofline |")
    print("|---|---|---|---|---|---|")
    for r in results:
        roof = f"{r['roofline_ms_bf16']:.3f}" if bandwidth else "-"
        frac = f"{100 * r['fraction_of_bf16_roofline']:.1f}%" if bandwidth else "-"
        print(f"| {r['batch']} | {r['step_ms']:.2f} | {r['tokens_per_s']:.1f} | "
              f"{r['weight_bytes_bf16'] / 1e9:.3f} GB | {roof} | {frac} |")


if __name__ == "__main__":
    main()
