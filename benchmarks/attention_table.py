#!/usr/bin/env python3
"""Summarises elastic_host_attention_benchmark results as a Markdown table.

Reads the Google Benchmark JSON the benchmark writes (--benchmark_out=FILE
--benchmark_out_format=json) and prints, per case, the median time per call
and the rate the benchmark reports for it: decode, the K/V bytes read per
second and their share of the machine's read bandwidth measured in the same
run; prefill, the causal attention FLOP/s. Given a second file (--before), it
adds that run's time and rate and the speed-up, case by case.

    python3 benchmarks/attention_table.py AFTER.json [--before BEFORE.json]

Uses the "median" aggregates when the run had repetitions, else the first
plain run of each case. Standard library only.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Dict, Optional

NAME = re.compile(r"^elastic_host/(?P<dtype>[^/]+)/(?P<phase>decode|prefill)/(?P<model>[^/]+)/.*"
                  r"/batch:(?P<batch>\d+)/context:(?P<context>\d+)")
TIME_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}


def medians(document: dict) -> Dict[str, dict]:
    """Per case name (without /real_time): the median entry, or the first run."""
    cases: Dict[str, dict] = {}
    for entry in document.get("benchmarks", []):
        if entry.get("error_occurred"):
            continue
        name = entry.get("run_name", entry["name"]).removesuffix("/real_time")
        aggregate = entry.get("aggregate_name")
        if aggregate == "median" or (aggregate is None and name not in cases):
            cases[name] = entry
    return cases


def seconds(entry: dict) -> float:
    return entry["real_time"] * TIME_UNITS[entry.get("time_unit", "ns")]


def rate(entry: dict, phase: str) -> str:
    if phase == "decode":
        return f"{entry['bytes_per_second'] / 1e9:.1f} GB/s ({100 * entry['frac_read_bw']:.0f}% read)"
    return f"{entry['flop_per_second'] / 1e9:.1f} GFLOP/s"


def table(after: dict, before: Optional[dict]) -> str:
    context = after.get("context", {})
    read = float(context.get("read_bytes_per_second", "nan")) / 1e9
    lines = [f"- host_name: {context.get('host_name', '?')}", f"- date: {context.get('date', '?')}",
             f"- commit: {context.get('commit', '?')}", f"- executor_threads: {context.get('executor_threads', '?')}",
             f"- read bandwidth measured in the run: {read:.1f} GB/s"]
    if before is not None:
        before_read = float(before.get("context", {}).get("read_bytes_per_second", "nan")) / 1e9
        lines.append(f"- before: commit {before.get('context', {}).get('commit', '?')}, read bandwidth "
                     f"{before_read:.1f} GB/s")
    lines.append("")
    header = ["dtype", "phase", "model", "batch", "context", "time (us)", "rate"]
    if before is not None:
        header += ["before (us)", "before rate", "speed-up"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    before_cases = medians(before) if before is not None else {}
    for name, entry in medians(after).items():
        match = NAME.match(name)
        if match is None:
            continue
        phase = match["phase"]
        cells = [match["dtype"], phase, match["model"], match["batch"], match["context"],
                 f"{seconds(entry) * 1e6:.1f}", rate(entry, phase)]
        if before is not None:
            old = before_cases.get(name)
            cells += ([f"{seconds(old) * 1e6:.1f}", rate(old, phase), f"{seconds(old) / seconds(entry):.2f}x"]
                      if old is not None else ["-", "-", "-"])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("after", help="benchmark JSON of the run to summarise")
    parser.add_argument("--before", help="benchmark JSON of an earlier run to compare with")
    args = parser.parse_args()
    with open(args.after) as f:
        after = json.load(f)
    before = None
    if args.before:
        with open(args.before) as f:
            before = json.load(f)
    print(table(after, before))
    return 0


if __name__ == "__main__":
    sys.exit(main())
