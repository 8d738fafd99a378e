#!/usr/bin/env python3
"""Optional peer for elastic_cuda_attention_benchmark: torch SDPA, same shapes.

Times torch.nn.functional.scaled_dot_product_attention on the shapes the C++
attention benchmark walks (bfloat16, head_dim 128, query heads 8/16/24/32 in
groups of 4 KV heads, Llama-3-8B at 32/8):

    decode   one query token per sequence against `context` K/V positions,
             batch 1 and 32, context 1k/4k/16k/32k (enable_gqa, no causal
             mask: the token sees everything); reports the K/V bytes read per
             second and the fraction of the copy bandwidth.
    prefill  one sequence of `context` tokens, is_causal=True; reports the
             causal attention FLOP/s (2 * 2 * heads * head_dim * n(n+1)/2) and
             the fraction of the bf16 8192^3 matmul rate.

SDPA does attention only; the C++ numbers also include the RoPE and the
append of the new keys and values, and the batch-description upload. Rows are
named like the C++ benchmark's, with impl torch_sdpa, e.g.
torch_sdpa/bfloat16/decode/heads:32/kv_heads:8/head_dim:128/batch:1/context:4096.
Measured the way peer_torch_mlp.py measures (its timing and ceiling helpers):
random data, decode K/V in enough copies that copies x bytes per call exceed
twice the L2 size, CUDA events around batches of calls, medians over
repetitions. Needs torch >= 2.5 with CUDA; never run at build or test time.

    python3 benchmarks/peer_torch_attention.py [--heads 8,16,24,32]
        [--batches 1,32] [--contexts 1024,4096,16384,32768]
        [--prefill 512,1024,2048,4096,8192] [--repetitions 5] [--min-time 0.2]
        [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import List, Tuple

import torch
import torch.nn.functional as F

sys.dont_write_bytecode = True  # leave no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_torch_mlp import int_list, measure_ceilings, random_tensor, seconds_per_call  # noqa: E402

HEAD_DIM = 128
GROUP_SIZE = 4  # query heads per KV head
DTYPE = torch.bfloat16
ELEMENT_BYTES = 2


def name(phase: str, heads: int, batch: int, context: int) -> str:
    return (f"torch_sdpa/bfloat16/{phase}/heads:{heads}/kv_heads:{heads // GROUP_SIZE}"
            f"/head_dim:{HEAD_DIM}/batch:{batch}/context:{context}")


def decode_rows(args, l2_bytes: int, ceilings) -> List[Tuple[str, float, str]]:
    rows = []
    for batch in args.batches:
        for context in args.contexts:
            smallest = 2 * (min(args.heads) // GROUP_SIZE) * context * HEAD_DIM * ELEMENT_BYTES * batch
            copies = max(2, math.floor(2 * l2_bytes / smallest) + 1)
            max_kv = max(args.heads) // GROUP_SIZE
            caches = [(random_tensor((batch, max_kv, context, HEAD_DIM), DTYPE, 1.0),
                       random_tensor((batch, max_kv, context, HEAD_DIM), DTYPE, 1.0)) for _ in range(copies)]
            for heads in args.heads:
                kv_heads = heads // GROUP_SIZE
                q = random_tensor((batch, heads, 1, HEAD_DIM), DTYPE, 1.0)

                def call(copy: int) -> None:
                    k, v = caches[copy]
                    F.scaled_dot_product_attention(q, k[:, :kv_heads], v[:, :kv_heads], enable_gqa=True)

                seconds = seconds_per_call(call, copies, args.repetitions, args.min_time)
                kv_bytes = 2 * kv_heads * context * HEAD_DIM * ELEMENT_BYTES * batch
                rate = kv_bytes / seconds
                rows.append((name("decode", heads, batch, context), seconds,
                             f"{rate * 1e-9:8.1f} GB/s  frac_copy_bw {rate / ceilings['copy_bytes_per_second']:.3f}"))
            del caches
            torch.cuda.empty_cache()
    return rows


def prefill_rows(args, ceilings) -> List[Tuple[str, float, str]]:
    rows = []
    for n in args.prefill:
        for heads in args.heads:
            kv_heads = heads // GROUP_SIZE
            q = random_tensor((1, heads, n, HEAD_DIM), DTYPE, 1.0)
            k = random_tensor((1, kv_heads, n, HEAD_DIM), DTYPE, 1.0)
            v = random_tensor((1, kv_heads, n, HEAD_DIM), DTYPE, 1.0)

            def call(_: int) -> None:
                F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)

            seconds = seconds_per_call(call, 1, args.repetitions, args.min_time)
            rate = 2 * 2 * heads * HEAD_DIM * n * (n + 1) / 2 / seconds
            rows.append((name("prefill", heads, 1, n), seconds,
                         f"{rate * 1e-12:8.1f} TFLOP/s  frac_gemm_peak "
                         f"{rate / ceilings['gemm_bf16_8192_flop_per_second']:.3f}"))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", type=int_list, default=[8, 16, 24, 32])
    parser.add_argument("--batches", type=int_list, default=[1, 32])
    parser.add_argument("--contexts", type=int_list, default=[1024, 4096, 16384, 32768])
    parser.add_argument("--prefill", type=int_list, default=[512, 1024, 2048, 4096, 8192])
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--min-time", type=float, default=0.2, help="seconds per repetition")
    parser.add_argument("--json", help="also write {row name: median seconds} to this file (gpu/targets.py reads it)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("peer_torch_attention: no CUDA device; nothing to measure.")
        return 0
    if any(heads % GROUP_SIZE for heads in args.heads):
        parser.error(f"--heads must be multiples of {GROUP_SIZE}")

    properties = torch.cuda.get_device_properties(0)
    l2_bytes = getattr(properties, "L2_cache_size", 50 << 20)
    ceilings = measure_ceilings(args.repetitions, args.min_time)
    rows = decode_rows(args, l2_bytes, ceilings) + prefill_rows(args, ceilings)

    print(f"- device: {properties.name}")
    print(f"- torch: {torch.__version__}, CUDA {torch.version.cuda}")
    print(f"- copy bandwidth: {ceilings['copy_bytes_per_second'] * 1e-9:.1f} GB/s, "
          f"bf16 8192^3 matmul: {ceilings['gemm_bf16_8192_flop_per_second'] * 1e-12:.1f} TFLOP/s\n")
    width = max(len(row[0]) for row in rows)
    for row_name, seconds, rate in rows:
        print(f"{row_name:<{width}}  {seconds * 1e6:10.1f} us  {rate}")
    if args.json:
        with open(args.json, "w") as file:
            json.dump({row_name: seconds for row_name, seconds, _ in rows}, file, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
