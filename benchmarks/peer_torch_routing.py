#!/usr/bin/env python3
"""Optional peer for the CUDA routing and routed MLP benchmarks: torch, same cases.

Times what torch does for the routing part of a routed layer, on the shapes
elastic_cuda_routing_benchmark walks (hidden 4096, bfloat16, 4 choices drawn
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
calls, medians over repetitions.

Then the routed MLP layer on the cases elastic_cuda_routed_mlp_benchmark walks
(widths 3584, 7168, 10752, 14336 of Llama-3-8B's MLP; 1, 16, 64, 256, 1024 and
4096 tokens; the cases and their names are described in mlp_benchmark.hpp):
per call order = argsort(choices, stable=True), then for each non-empty group
index_select of its rows, F.silu(x @ Wg^T) * (x @ Wu^T) @ Wd^T on the width
slice (F.linear on gate[:k], up[:k], down[:, :k]) and index_add_ into the
residual, with the group sizes known on the host, or read back by
bincount(...).tolist() for .../read_counts; dense_mlp the same MLP over every
token. Names as the C++ cases with impl torch (torch has no fused path, so
there is no .../unfused twin), e.g.
torch/bfloat16/routed_mlp/skip:0.25/hidden:4096/tokens:16, with GB/s, TFLOP/s,
work_fraction and time_over_reference as there. The weights rotate through
enough copies that one call's smallest weights, times the copies, exceed
twice the L2 size. Needs torch with CUDA; never run at build or test time.

    python3 benchmarks/peer_torch_routing.py [--hidden 4096] [--choices 4]
        [--tokens 1,16,256,1024,4096,16384] [--widths 3584,7168,10752,14336]
        [--mlp-tokens 1,16,64,256,1024,4096] [--repetitions 5] [--min-time 0.2]

An empty --tokens or --mlp-tokens leaves that part out.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Callable, Dict, List, NamedTuple, Tuple

import torch
import torch.nn.functional as F

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


SKIP_FRACTIONS = (0.0, 0.25, 0.5, 0.75)
FUSED_TOKENS = (1, 16)  # where the C++ benchmark runs widths:<min>+<full> (fused and unfused)
READ_COUNTS_TOKENS = 16  # where it runs skip:0.5 through forward()


class MlpCase(NamedTuple):
    """One routed MLP case, as routed_cases in mlp_benchmark.hpp builds it."""
    name: str
    dense: bool
    read_counts: bool
    choice_widths: List[int]  # per choice: its width, 0 to skip (dense: the one width)
    counts: List[int]  # per choice: how many tokens take it
    reference: str  # the case time_over_reference divides by, or ""


def mlp_cases(hidden: int, widths: List[int], tokens: int) -> List[MlpCase]:
    """The cases of one token count, each after its reference."""
    full, smallest = max(widths), min(widths)
    cases: List[MlpCase] = []

    def add(layer: str, mix: str, choice_widths: List[int], counts: List[int], reference: str,
            read_counts: bool = False) -> str:
        suffix = "/read_counts" if read_counts else ""
        case_name = f"torch/bfloat16/{layer}/{mix}{suffix}/hidden:{hidden}/tokens:{tokens}"
        cases.append(MlpCase(case_name, layer == "dense_mlp", read_counts, choice_widths, counts, reference))
        return case_name

    def spread(spread_widths: List[int], reference: str) -> str:
        groups = len(spread_widths)
        counts = [tokens // groups + (1 if group >= groups - tokens % groups else 0) for group in range(groups)]
        return add("routed_mlp", "widths:" + "+".join(map(str, spread_widths)), spread_widths, counts, reference)

    dense_full = add("dense_mlp", f"width:{full}", [full], [tokens], "")
    for width in widths:
        if width != full:
            add("dense_mlp", f"width:{width}", [width], [tokens], dense_full)
    skip_none = ""
    for fraction in SKIP_FRACTIONS:
        skipped = math.floor(fraction * tokens + 0.5)  # std::lround: halves away from zero
        counts = [skipped, tokens - skipped]
        given = add("routed_mlp", f"skip:{fraction:g}", [0, full], counts, skip_none or dense_full)
        skip_none = skip_none or given
        if fraction == 0.5 and tokens == READ_COUNTS_TOKENS:
            add("routed_mlp", f"skip:{fraction:g}", [0, full], counts, given, read_counts=True)
    spread(sorted(widths), dense_full)
    spread([smallest], dense_full)
    if tokens in FUSED_TOKENS:
        spread([smallest, full], dense_full)
    return cases


def group_bytes(hidden: int, width: int, count: int) -> float:
    """Weights at this width plus reading and writing the group's rows (support::mlp_bytes)."""
    return ELEMENT_BYTES * (3.0 * hidden * width + 2.0 * count * hidden)


def measure_mlp_tokens(tokens: int, args, l2_bytes: int) -> List[Tuple[str, float, str]]:
    hidden, widths, full = args.hidden, args.widths, max(args.widths)
    smallest_call = ELEMENT_BYTES * 3 * hidden * min(widths)
    copies = max(2, math.floor(2 * l2_bytes / smallest_call) + 1)
    weights = [(random_tensor((full, hidden), DTYPE, hidden ** -0.5),
                random_tensor((full, hidden), DTYPE, hidden ** -0.5),
                random_tensor((hidden, full), DTYPE, full ** -0.5)) for _ in range(copies)]
    inputs = [random_tensor((tokens, hidden), DTYPE, 1.0) for _ in range(copies)]
    residuals = [random_tensor((tokens, hidden), DTYPE, 1.0) for _ in range(copies)]

    def mlp(copy: int, x: torch.Tensor, width: int) -> torch.Tensor:
        gate, up, down = weights[copy]
        return F.linear(F.silu(F.linear(x, gate[:width])) * F.linear(x, up[:width]), down[:, :width])

    rows, seconds_of = [], {}
    for case in mlp_cases(hidden, widths, tokens):
        choices = torch.repeat_interleave(torch.arange(len(case.counts)), torch.tensor(case.counts))
        choices = choices[torch.randperm(tokens)].to("cuda")

        def dense(copy: int, case: MlpCase = case) -> None:
            mlp(copy, inputs[copy], case.choice_widths[0])

        def routed(copy: int, case: MlpCase = case, choices: torch.Tensor = choices) -> None:
            order = torch.argsort(choices, stable=True)
            counts = (torch.bincount(choices, minlength=len(case.counts)).tolist() if case.read_counts
                      else case.counts)
            first = 0
            for width, group in zip(case.choice_widths, counts):
                if width > 0 and group > 0:
                    indices = order[first:first + group]
                    outputs = mlp(copy, torch.index_select(inputs[copy], 0, indices), width)
                    residuals[copy].index_add_(0, indices, outputs)
                first += group

        seconds = seconds_per_call(dense if case.dense else routed, copies, args.repetitions, args.min_time)
        seconds_of[case.name] = seconds
        groups = [(width, group) for width, group in zip(case.choice_widths, case.counts) if width > 0 and group > 0]
        moved = sum(group_bytes(hidden, width, group) for width, group in groups)
        flops = sum(2.0 * group * 3 * hidden * width for width, group in groups)
        work_fraction = sum(width * group for width, group in groups) / (tokens * full)
        detail = (f"{moved / seconds * 1e-9:8.1f} GB/s  {flops / seconds * 1e-12:8.3f} TFLOP/s  "
                  f"work_fraction {work_fraction:.3f}")
        if case.reference:
            detail += f"  time_over_reference {seconds / seconds_of[case.reference]:.3f}"
        rows.append((case.name, seconds, detail))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=4096)
    parser.add_argument("--choices", type=int, default=4)
    parser.add_argument("--tokens", type=int_list, default=[1, 16, 256, 1024, 4096, 16384])
    parser.add_argument("--widths", type=int_list, default=[3584, 7168, 10752, 14336])
    parser.add_argument("--mlp-tokens", type=int_list, default=[1, 16, 64, 256, 1024, 4096])
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
    for tokens in args.mlp_tokens:
        rows += measure_mlp_tokens(tokens, args, l2_bytes)
        torch.cuda.empty_cache()

    print(f"- device: {properties.name}")
    print(f"- torch: {torch.__version__}, CUDA {torch.version.cuda}")
    print(f"- copy bandwidth: {ceilings['copy_bytes_per_second'] * 1e-9:.1f} GB/s\n")
    width = max((len(row[0]) for row in rows), default=0)
    for row_name, seconds, rate in rows:
        print(f"{row_name:<{width}}  {seconds * 1e6:10.1f} us  {rate}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
