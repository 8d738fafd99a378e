#!/usr/bin/env python3
"""Optional peer for elastic_cuda_mlp_benchmark: PyTorch on sliced views.

Times, for the same shapes as the CUDA benchmark, what PyTorch does with one
full-width SwiGLU MLP cut to width k by slicing (gate[:k], up[:k] and
down[:, :k], views, not copies):

    torch_linear3  the three F.linear calls alone (the cublas peer's work)
    torch_mlp      the layer, F.linear(F.silu(g) * u, down[:, :k])

measured the way the C++ benchmark measures: random weights in enough copies
that copies x bytes per call exceed twice the L2 size, CUDA events around
batches of calls (whole cycles over the copies, at least 8 calls), the median
over repetitions, ceilings (device-to-device copy bandwidth, bf16 8192^3
matmul) measured once. Prints the table mlp_table.py prints, so the numbers
line up with the C++ results. Needs torch with CUDA; never run at build or
test time.

    python3 benchmarks/peer_torch_mlp.py [--hidden 4096]
        [--widths 3584,7168,10752,14336] [--tokens 1,4,16,512,4096]
        [--dtypes bfloat16,float16] [--repetitions 5] [--min-time 0.2]
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
from typing import Callable, Dict, List

import torch
import torch.nn.functional as F

sys.dont_write_bytecode = True  # leave no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mlp_table import Row, format_table, describe_ceilings  # noqa: E402

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
DECODE_MAX_TOKENS = 16  # tokens up to this count are "decode", as in the C++ benchmark
MIN_BATCH = 8


def int_list(text: str) -> List[int]:
    return [int(part) for part in text.split(",") if part]


def seconds_per_call(call: Callable[[int], None], copies: int, repetitions: int, min_time: float) -> float:
    """Median over repetitions of the mean time per call, as Google Benchmark reports it."""
    batch = math.ceil(MIN_BATCH / copies) * copies
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for copy in range(copies):  # warm-up: library plans, allocator
        call(copy)
    torch.cuda.synchronize()
    per_repetition = []
    for _ in range(repetitions):
        elapsed, calls = 0.0, 0
        while elapsed < min_time:
            start.record()
            for i in range(batch):
                call(i % copies)
            stop.record()
            stop.synchronize()
            elapsed += start.elapsed_time(stop) * 1e-3
            calls += batch
        per_repetition.append(elapsed / calls)
    return statistics.median(per_repetition)


def random_tensor(shape, dtype, scale: float) -> torch.Tensor:
    """Uniform magnitudes in [scale/16, scale] with random signs: never zero."""
    magnitude = torch.rand(shape, device="cuda") * 0.9375 + 0.0625
    sign = torch.randint(0, 2, shape, device="cuda") * 2 - 1
    return (magnitude * sign * scale).to(dtype)


def measure_ceilings(repetitions: int, min_time: float) -> Dict[str, float]:
    source = torch.empty(1 << 30, dtype=torch.uint8, device="cuda").fill_(0x5A)
    destination = torch.empty_like(source)
    copy = seconds_per_call(lambda _: destination.copy_(source), 1, repetitions, min_time)
    n = 8192
    a = random_tensor((n, n), torch.bfloat16, 1.0)
    b = random_tensor((n, n), torch.bfloat16, 1.0 / n)
    gemm = seconds_per_call(lambda _: torch.matmul(a, b), 1, repetitions, min_time)
    return {"copy_bytes_per_second": 2.0 * source.numel() / copy,
            "gemm_bf16_8192_flop_per_second": 2.0 * n ** 3 / gemm}


def measure_dtype(name: str, args, l2_bytes: int) -> List[Row]:
    dtype = DTYPES[name]
    hidden, widths, full = args.hidden, args.widths, max(args.widths)
    element = torch.finfo(dtype).bits // 8
    smallest_call = element * 3 * hidden * min(widths)
    copies = max(2, math.floor(2 * l2_bytes / smallest_call) + 1)
    weights = [(random_tensor((full, hidden), dtype, hidden ** -0.5),
                random_tensor((full, hidden), dtype, hidden ** -0.5),
                random_tensor((hidden, full), dtype, full ** -0.5)) for _ in range(copies)]
    inputs = [random_tensor((max(args.tokens), hidden), dtype, 1.0) for _ in range(copies)]

    rows = []
    for tokens in args.tokens:
        phase = "decode" if tokens <= DECODE_MAX_TOKENS else "prefill"
        for width in widths:
            def linear3(copy: int) -> None:
                gate, up, down = weights[copy]
                x = inputs[copy][:tokens]
                g = F.linear(x, gate[:width])
                F.linear(x, up[:width])
                F.linear(g, down[:, :width])

            def mlp(copy: int) -> None:
                gate, up, down = weights[copy]
                x = inputs[copy][:tokens]
                F.linear(F.silu(F.linear(x, gate[:width])) * F.linear(x, up[:width]), down[:, :width])

            for impl, call in (("torch_linear3", linear3), ("torch_mlp", mlp)):
                seconds = seconds_per_call(call, copies, args.repetitions, args.min_time)
                rows.append(Row(impl, name, phase, hidden, tokens, width, seconds))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=4096)
    parser.add_argument("--widths", type=int_list, default=[3584, 7168, 10752, 14336])
    parser.add_argument("--tokens", type=int_list, default=[1, 4, 16, 512, 4096])
    parser.add_argument("--dtypes", type=lambda text: text.split(","), default=["bfloat16", "float16"])
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--min-time", type=float, default=0.2, help="seconds per repetition")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("peer_torch_mlp: no CUDA device; nothing to measure.")
        return 0
    torch.backends.cuda.matmul.allow_tf32 = False

    properties = torch.cuda.get_device_properties(0)
    l2_bytes = getattr(properties, "L2_cache_size", 50 << 20)
    ceilings = measure_ceilings(args.repetitions, args.min_time)
    rows = []
    for name in args.dtypes:
        rows += measure_dtype(name, args, l2_bytes)
        torch.cuda.empty_cache()

    print(f"- device: {properties.name}")
    print(f"- torch: {torch.__version__}, CUDA {torch.version.cuda}")
    print(f"- ceilings: {describe_ceilings(ceilings)}\n")
    print(format_table(rows, ceilings, "torch_linear3"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
