#!/usr/bin/env python3
"""Summarises elastic MLP benchmark results as a Markdown table.

Reads the Google Benchmark JSON that elastic_cuda_mlp_benchmark or
elastic_host_mlp_benchmark writes (--benchmark_out=FILE
--benchmark_out_format=json) and prints, per case: the median time per call,
GB/s and TFLOP/s, the width scaling time(k)/time(K) beside its target
k/K + 0.05, the share of the measured ceiling (copy bandwidth for decode, the
bf16 8192^3 GEMM rate for prefill; on the host, the read bandwidth the
benchmark measured) and the peer's time over ours on the same
shape (above 1: we are faster). peer_torch_mlp.py prints through the same
table, so its numbers line up with ours.

    python3 benchmarks/mlp_table.py RESULTS.json [--peer cublas]

Uses the "median" aggregates when the run had repetitions, else the median of
the plain runs. Standard library only.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional

NAME = re.compile(
    r"^(?P<impl>[^/]+)/(?P<dtype>[^/]+)/(?P<phase>decode|prefill)/hidden:(?P<hidden>\d+)"
    r"/tokens:(?P<tokens>\d+)/width:(?P<width>\d+)(?:/(?:real|manual)_time)?$")
TIME_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


@dataclass
class Row:
    impl: str
    dtype: str
    phase: str
    hidden: int
    tokens: int
    width: int
    seconds: float  # median time per call

    # The same bytes and FLOPs model as examples/common/support.hpp.
    def bytes(self) -> float:
        return DTYPE_BYTES[self.dtype] * (3.0 * self.hidden * self.width + 2.0 * self.tokens * self.hidden)

    def flops(self) -> float:
        return 2.0 * self.tokens * 3.0 * self.hidden * self.width


def rows_from_benchmark_json(document: dict) -> List[Row]:
    """Rows from a Google Benchmark JSON document; failed runs are left out."""
    samples: Dict[str, List[float]] = {}
    medians: Dict[str, float] = {}
    for entry in document.get("benchmarks", []):
        if entry.get("error_occurred"):
            print(f"note: {entry['name']} failed: {entry.get('error_message', '')}", file=sys.stderr)
            continue
        name = entry.get("run_name", entry["name"])
        seconds = entry["real_time"] * TIME_UNITS[entry.get("time_unit", "ns")]
        if entry.get("run_type") == "aggregate":
            if entry.get("aggregate_name") == "median":
                medians[name] = seconds
        else:
            samples.setdefault(name, []).append(seconds)
    for name, values in samples.items():
        medians.setdefault(name, statistics.median(values))

    rows = []
    for name, seconds in medians.items():
        match = NAME.match(name)
        if match is None:
            continue
        rows.append(Row(match["impl"], match["dtype"], match["phase"], int(match["hidden"]),
                        int(match["tokens"]), int(match["width"]), seconds))
    return rows


def ceilings_from_context(context: dict) -> Dict[str, float]:
    ceilings = {}
    for key in ("copy_bytes_per_second", "read_bytes_per_second", "gemm_bf16_8192_flop_per_second"):
        if key in context:
            ceilings[key] = float(context[key])
    return ceilings


def format_table(rows: List[Row], ceilings: Dict[str, float], peer: Optional[str]) -> str:
    """The Markdown table: one line per row, sorted by case then width."""
    by_key = {(r.impl, r.dtype, r.phase, r.hidden, r.tokens, r.width): r for r in rows}
    full_width: Dict[tuple, int] = {}
    for r in rows:
        series = (r.impl, r.dtype, r.phase, r.hidden, r.tokens)
        full_width[series] = max(full_width.get(series, 0), r.width)

    header = ["impl", "dtype", "phase", "tokens", "width", "time (us)", "GB/s", "TFLOP/s",
              "t(k)/t(K)", "k/K+0.05", "of ceiling", f"{peer}/this" if peer else "peer/this"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    order = sorted(rows, key=lambda r: (r.dtype, r.phase, r.hidden, r.tokens, r.width, r.impl != peer, r.impl))
    for r in order:
        series = (r.impl, r.dtype, r.phase, r.hidden, r.tokens)
        full = by_key.get(series + (full_width[series],))
        scaling = f"{r.seconds / full.seconds:.3f}" if full else "-"
        bound = f"{r.width / full_width[series] + 0.05:.3f}"
        if r.phase == "decode" and "copy_bytes_per_second" in ceilings:
            ceiling = f"{r.bytes() / r.seconds / ceilings['copy_bytes_per_second']:.1%} bw"
        elif r.phase == "decode" and "read_bytes_per_second" in ceilings:
            ceiling = f"{r.bytes() / r.seconds / ceilings['read_bytes_per_second']:.1%} read"
        elif r.phase == "prefill" and "gemm_bf16_8192_flop_per_second" in ceilings:
            ceiling = f"{r.flops() / r.seconds / ceilings['gemm_bf16_8192_flop_per_second']:.1%} gemm"
        else:
            ceiling = "-"
        peer_row = by_key.get((peer, r.dtype, r.phase, r.hidden, r.tokens, r.width)) if peer else None
        versus = f"{peer_row.seconds / r.seconds:.3f}" if peer_row and r.impl != peer else "-"
        cells = [r.impl, r.dtype, r.phase, str(r.tokens), str(r.width), f"{r.seconds * 1e6:.1f}",
                 f"{r.bytes() / r.seconds * 1e-9:.1f}", f"{r.flops() / r.seconds * 1e-12:.3g}", scaling, bound,
                 ceiling, versus]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def describe_ceilings(ceilings: Dict[str, float]) -> str:
    parts = []
    if "copy_bytes_per_second" in ceilings:
        parts.append(f"device-to-device copy {ceilings['copy_bytes_per_second'] * 1e-9:.0f} GB/s")
    if "read_bytes_per_second" in ceilings:
        parts.append(f"host memory read {ceilings['read_bytes_per_second'] * 1e-9:.1f} GB/s")
    if "gemm_bf16_8192_flop_per_second" in ceilings:
        parts.append(f"bf16 8192^3 GEMM {ceilings['gemm_bf16_8192_flop_per_second'] * 1e-12:.0f} TFLOP/s")
    return "; ".join(parts) if parts else "none measured"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="Google Benchmark JSON (--benchmark_out)")
    parser.add_argument("--peer", default="cublas", help="implementation the others are compared with")
    args = parser.parse_args()
    with open(args.results, encoding="utf-8") as file:
        document = json.load(file)
    context = document.get("context", {})
    ceilings = ceilings_from_context(context)
    rows = rows_from_benchmark_json(document)
    if not rows:
        print(f"{args.results}: no MLP benchmark results", file=sys.stderr)
        return 1
    print(f"Elastic MLP benchmark summary, written by benchmarks/mlp_table.py from "
          f"{os.path.basename(args.results)}: median time per call and what follows from it "
          f"(benchmarks/results/README.md explains the columns).\n")
    for key in ("device", "host_name", "date", "commit", "num_cpus", "executor_threads", "widths"):
        if key in context:
            print(f"- {key}: {context[key]}")
    print(f"- ceilings: {describe_ceilings(ceilings)}\n")
    peer = args.peer if any(r.impl == args.peer for r in rows) else None
    print(format_table(rows, ceilings, peer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
