#!/usr/bin/env python3
"""Optional peer for elastic_cuda_routing_benchmark: torch, same shapes.

Times what torch does for the routing part of a routed layer, on the shapes
the C++ routing benchmark walks (hidden 4096, bfloat16, 4 choices drawn
uniformly per token, 1, 16, 256, 1024, 4096 and 16384 tokens):

    plan                 order = argsort(choices, stable=True), the group
                         sizes by scatter_add_ of ones (bincount would
                         synchronise to size its output) and their cumsum
    gather               index_select of each non-empty group's rows into
                         its slice of a dense [tokens x hidden] buffer
    scatter_add          index_add_ of each group's rows back into the
                         residual
    plan_gather_scatter  the three in sequence

Rows are named like the C++ benchmark's, with impl torch, e.g.
torch/bfloat16/route/plan_gather_scatter/hidden:4096/choices:4/tokens:4096;
bytes as there (a gather reads and writes every row, a scatter-add reads the
rows and the residual and writes the residual), with the fraction of the copy
bandwidth for the row steps. Measured the way peer_torch_mlp.py measures (its
timing and ceiling helpers): random data in enough copies that copies x
(input + residual) exceed twice the L2 size, CUDA events around batches of
calls, medians over repetitions. Needs torch with CUDA; never run at build or
test time.

    python3 benchmarks/peer_torch_routing.py [--hidden 4096] [--choices 4]
        [--tokens 1,16,256,1024,4096,16384] [--repetitions 5] [--min-time 0.2]
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Callable, Dict, List, Tuple

import torch

sys.dont_write_bytecode = True  # leave no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_torch_mlp import int_list, measure_ceilings, random_tensor, seconds_per_call  # noqa: E402

DTYPE = torch.bfloat16
ELEMENT_BYTES = 2
STEPS = ("plan", "gather", "scatter_add", "plan_gather_scatter")


def name(step: str, hidden: int, choices: int, tokens: int) -> str:
    return f"torch/bfloat16/route/{step}/hidden:{hidden}/choices:{choices}/tokens:{tokens}"


def step_bytes(step: str, hidden: int, tokens: int) -> float:
    rows = tokens * hidden * ELEMENT_BYTES
    plan = tokens * 2 * 4  # the choices read, the permutation written
    return {"plan": plan, "gather": 2 * rows, "scatter_add": 3 * rows, "plan_gather_scatter": plan + 5 * rows}[step]


class Copy:
    """One copy's input, residual and choices, with its plan's group sizes on the host."""

    def __init__(self, tokens: int, hidden: int, choices: int):
        self.input = random_tensor((tokens, hidden), DTYPE, 1.0)
        self.residual = random_tensor((tokens, hidden), DTYPE, 1.0)
        self.choices = torch.randint(0, choices, (tokens,), device="cuda")
        self.counts = torch.bincount(self.choices, minlength=choices).tolist()


def plan(copy: Copy, ones: torch.Tensor, choices: int) -> torch.Tensor:
    order = torch.argsort(copy.choices, stable=True)
    counts = torch.zeros(choices, dtype=torch.int64, device="cuda").scatter_add_(0, copy.choices, ones)
    torch.cumsum(counts, 0)
    return order


def groups(copy: Copy) -> List[Tuple[int, int]]:
    result, first = [], 0
    for count in copy.counts:
        if count > 0:
            result.append((first, count))
        first += count
    return result


def measure_tokens(tokens: int, args, l2_bytes: int, ceilings: Dict[str, float]) -> List[Tuple[str, float, str]]:
    hidden, choices = args.hidden, args.choices
    copy_bytes = 2 * tokens * hidden * ELEMENT_BYTES
    wanted = max(2, math.floor(2 * l2_bytes / copy_bytes) + 1)
    affordable = max(1, math.floor(torch.cuda.mem_get_info()[0] / 4 / copy_bytes))
    copies = [Copy(tokens, hidden, choices) for _ in range(min(wanted, affordable))]
    orders = [torch.argsort(copy.choices, stable=True) for copy in copies]
    gathered = torch.empty((tokens, hidden), dtype=DTYPE, device="cuda")
    ones = torch.ones(tokens, dtype=torch.int64, device="cuda")

    def gather(copy: Copy, order: torch.Tensor) -> None:
        for first, count in groups(copy):
            torch.index_select(copy.input, 0, order[first:first + count], out=gathered[first:first + count])

    def scatter_add(copy: Copy, order: torch.Tensor) -> None:
        for first, count in groups(copy):
            copy.residual.index_add_(0, order[first:first + count], gathered[first:first + count])

    def plan_gather_scatter(copy: Copy, _: torch.Tensor) -> None:
        order = plan(copy, ones, choices)
        gather(copy, order)
        scatter_add(copy, order)

    calls: Dict[str, Callable[[Copy, torch.Tensor], None]] = {
        "plan": lambda copy, _: plan(copy, ones, choices),
        "gather": gather,
        "scatter_add": scatter_add,
        "plan_gather_scatter": plan_gather_scatter,
    }
    rows = []
    for step in STEPS:
        call = calls[step]
        seconds = seconds_per_call(lambda i: call(copies[i], orders[i]), len(copies), args.repetitions,
                                   args.min_time)
        rate = step_bytes(step, hidden, tokens) / seconds
        detail = f"{rate * 1e-9:8.1f} GB/s"
        if step != "plan":
            detail += f"  frac_copy_bw {rate / ceilings['copy_bytes_per_second']:.3f}"
        rows.append((name(step, hidden, choices, tokens), seconds, detail))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=4096)
    parser.add_argument("--choices", type=int, default=4)
    parser.add_argument("--tokens", type=int_list, default=[1, 16, 256, 1024, 4096, 16384])
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--min-time", type=float, default=0.2, help="seconds per repetition")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("peer_torch_routing: no CUDA device; nothing to measure.")
        return 0

    properties = torch.cuda.get_device_properties(0)
    l2_bytes = getattr(properties, "L2_cache_size", 50 << 20)
    ceilings = measure_ceilings(args.repetitions, args.min_time)
    rows = []
    for tokens in args.tokens:
        rows += measure_tokens(tokens, args, l2_bytes, ceilings)
        torch.cuda.empty_cache()

    print(f"- device: {properties.name}")
    print(f"- torch: {torch.__version__}, CUDA {torch.version.cuda}")
    print(f"- copy bandwidth: {ceilings['copy_bytes_per_second'] * 1e-9:.1f} GB/s\n")
    width = max(len(row[0]) for row in rows)
    for row_name, seconds, rate in rows:
        print(f"{row_name:<{width}}  {seconds * 1e6:10.1f} us  {rate}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
