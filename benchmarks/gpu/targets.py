#!/usr/bin/env python3
"""The device run's verdict on DESIGN.md's GPU targets, as one Markdown table.

Reads what benchmarks/gpu/run.sh leaves in its output folder - the Google
Benchmark JSON of the four CUDA benchmarks (cuda_mlp.json,
cuda_attention.json, cuda_routing.json, cuda_routed_mlp.json) and the torch
attention peer's JSON (torch_attention.json) - and prints, per target: what
was measured (the worst case over the cases the target covers, and which
case that was), the peer on the same case where one was measured, and pass /
FAIL / not measured. Every figure is a median over the run's repetitions and
every ratio is to a ceiling or a peer measured in that same run:

  decode MLP bandwidth       elastic decode (1-16 tokens), every width:
                             bytes / time >= 0.85 x the copy bandwidth
  decode MLP vs cuBLAS       cuBLAS time / ours >= 1.0 on every decode case
  width scaling              time(k) / time(K) <= k / K + 0.05, every case
  prefill MLP vs cuBLAS      cuBLAS time / ours >= 0.97 on every prefill case
  decode attention           KV bytes / time >= 0.80 x copy bandwidth, context >= 4k
  prefill attention          causal FLOP/s >= 0.5 x the bf16 8192^3 GEMM rate,
                             8 or more heads, context >= 4k
  route plan + gather + scatter   <= 5 us per layer up to 4096 tokens
  gather / scatter bandwidth      >= 0.80 x copy bandwidth from 1024 tokens
  routed MLP skip scaling         time / reference <= work fraction + 0.05
  decode step under a CUDA graph  >= 0.75 of the bytes / bandwidth bound
                                  (no benchmark measures it yet)

    python3 benchmarks/gpu/targets.py OUT_DIR

The verdicts are the table's; the exit status is 0 unless the files cannot
be read. Standard library only.
"""
from __future__ import annotations

import json
import os
import re
import statistics
import sys
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

TIME_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}


@dataclass
class Case:
    name: str            # without the impl prefix and the timing suffix
    impl: str
    seconds: float       # median time per call
    counters: Dict[str, float]

    def field(self, key: str) -> Optional[str]:
        match = re.search(rf"(?:^|/){key}:([^/]+)", self.name)
        return match[1] if match else None

    def number(self, key: str) -> int:
        value = self.field(key)
        return int(value) if value is not None else -1


def load_cases(path: str) -> List[Case]:
    """Median cases of a Google Benchmark JSON file ([] when it is missing); failed runs left out."""
    if not os.path.exists(path):
        return []
    with open(path) as file:
        document = json.load(file)
    plain: Dict[str, List[dict]] = {}
    medians: Dict[str, dict] = {}
    for entry in document.get("benchmarks", []):
        if entry.get("error_occurred"):
            continue
        name = re.sub(r"/(manual|real)_time$", "", entry.get("run_name", entry["name"]))
        if entry.get("run_type") == "aggregate":
            if entry.get("aggregate_name") == "median":
                medians[name] = entry
        else:
            plain.setdefault(name, []).append(entry)
    for name, entries in plain.items():
        if name not in medians:
            middle = statistics.median_low([entry["real_time"] for entry in entries])
            medians[name] = next(entry for entry in entries if entry["real_time"] == middle)
    cases = []
    for name, entry in medians.items():
        impl, _, rest = name.partition("/")
        seconds = entry["real_time"] * TIME_UNITS[entry.get("time_unit", "ns")]
        counters = {key: value for key, value in entry.items() if isinstance(value, (int, float))}
        cases.append(Case(rest, impl, seconds, counters))
    return cases


def load_peer_seconds(path: str) -> Dict[str, float]:
    """{name without impl: seconds} from a peer's JSON ({} when it is missing)."""
    if not os.path.exists(path):
        return {}
    with open(path) as file:
        return {name.partition("/")[2]: seconds for name, seconds in json.load(file).items()}


@dataclass
class Verdict:
    target: str
    measured: str
    peer: str
    status: str  # pass, FAIL, not measured


def worst(target: str, cases: List[Case], score: Callable[[Case], Optional[float]], passes: Callable[[float], bool],
          describe: Callable[[float], str], peer: Callable[[Case], str] = lambda case: "-") -> Verdict:
    """The case with the lowest score decides the target (scores are 'higher is better')."""
    scored = [(value, case) for case in cases if (value := score(case)) is not None]
    if not scored:
        return Verdict(target, "-", "-", "not measured")
    value, case = min(scored, key=lambda pair: pair[0])
    return Verdict(target, f"{describe(value)} ({case.name})", peer(case), "pass" if passes(value) else "FAIL")


def mlp_targets(cases: List[Case]) -> List[Verdict]:
    ours = [case for case in cases if case.impl == "elastic_cuda"]
    cublas = {case.name: case for case in cases if case.impl == "cublas"}
    decode = [case for case in ours if case.name.split("/")[1] == "decode"]
    prefill = [case for case in ours if case.name.split("/")[1] == "prefill"]

    def cublas_fraction(case: Case) -> str:
        peer = cublas.get(case.name)
        return f"cuBLAS {peer.counters['frac_copy_bw']:.2f}" if peer and "frac_copy_bw" in peer.counters else "-"

    def over_cublas(case: Case) -> Optional[float]:
        peer = cublas.get(case.name)
        return peer.seconds / case.seconds if peer else None

    # time(k) / time(K) against k / K + 0.05: the margin left, K the widest measured width of the same case.
    widest: Dict[str, Case] = {}
    for case in ours:
        key = re.sub(r"/width:\d+", "", f"{case.name}")
        if key not in widest or case.number("width") > widest[key].number("width"):
            widest[key] = case

    def scaling_margin(case: Case) -> Optional[float]:
        full = widest[re.sub(r"/width:\d+", "", case.name)]
        if full is case:
            return None
        return case.number("width") / full.number("width") + 0.05 - case.seconds / full.seconds

    return [
        worst("decode MLP: >= 0.85 x copy bandwidth, every width and bucket", decode,
              lambda case: case.counters.get("frac_copy_bw"), lambda v: v >= 0.85, lambda v: f"{v:.2f}",
              cublas_fraction),
        worst("decode MLP: >= 1.0 x cuBLAS", decode, over_cublas, lambda v: v >= 1.0, lambda v: f"{v:.2f}x"),
        worst("width scaling: time(k)/time(K) <= k/K + 0.05", ours, scaling_margin, lambda v: v >= 0.0,
              lambda v: f"margin {v:+.3f}"),
        worst("prefill MLP on a sliced width: >= 0.97 x cuBLAS", prefill, over_cublas, lambda v: v >= 0.97,
              lambda v: f"{v:.2f}x"),
    ]


def attention_targets(cases: List[Case], peer_seconds: Dict[str, float]) -> List[Verdict]:
    ours = [case for case in cases if case.impl == "elastic_cuda"]

    def peer(case: Case) -> str:
        seconds = peer_seconds.get(case.name)
        return f"torch SDPA takes {seconds / case.seconds:.2f}x our time" if seconds else "-"

    decode = [case for case in ours if "/decode" in case.name and case.number("context") >= 4096]
    prefill = [case for case in ours if "/prefill" in case.name and case.number("context") >= 4096 and
               case.number("heads") >= 8]
    return [
        worst("decode attention: >= 0.80 x copy bandwidth on the KV bytes, context >= 4k", decode,
              lambda case: case.counters.get("frac_copy_bw"), lambda v: v >= 0.80, lambda v: f"{v:.2f}", peer),
        worst("prefill attention: >= 0.5 x bf16 GEMM peak, context >= 4k", prefill,
              lambda case: case.counters.get("frac_gemm_peak"), lambda v: v >= 0.5, lambda v: f"{v:.2f}", peer),
    ]


def routing_targets(routing: List[Case], routed: List[Case]) -> List[Verdict]:
    ours = [case for case in routing if case.impl == "elastic_cuda"]
    layer = [case for case in ours if "/plan_gather_scatter/" in case.name and case.number("tokens") <= 4096]
    rows = [case for case in ours if re.search(r"/(gather|scatter_add)/", case.name) and case.number("tokens") >= 1024]
    skipping = [case for case in routed if case.impl == "elastic_cuda" and "/routed_mlp/skip:" in case.name and
                not re.search(r"/(read_counts|forward_decode|unfused)/", case.name)]
    return [
        worst("route plan + gather + scatter: <= 5 us per layer up to 4096 tokens", layer,
              lambda case: -case.seconds, lambda v: -v <= 5e-6, lambda v: f"{-v * 1e6:.1f} us"),
        worst("gather / scatter-add: >= 0.80 x copy bandwidth from 1024 tokens", rows,
              lambda case: case.counters.get("frac_copy_bw"), lambda v: v >= 0.80, lambda v: f"{v:.2f}"),
        worst("routed MLP skipping s: time <= (1 - s) + 0.05 of the unskipped", skipping,
              lambda case: (case.counters["work_fraction"] + 0.05 - case.counters["time_over_reference"]
                            if "time_over_reference" in case.counters else None),
              lambda v: v >= 0.0, lambda v: f"margin {v:+.3f}"),
    ]


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    folder = sys.argv[1]
    verdicts = (mlp_targets(load_cases(os.path.join(folder, "cuda_mlp.json"))) +
                attention_targets(load_cases(os.path.join(folder, "cuda_attention.json")),
                                  load_peer_seconds(os.path.join(folder, "torch_attention.json"))) +
                routing_targets(load_cases(os.path.join(folder, "cuda_routing.json")),
                                load_cases(os.path.join(folder, "cuda_routed_mlp.json"))))
    verdicts.append(Verdict("decode step under a CUDA graph: >= 0.75 of the bytes / bandwidth bound", "-", "-",
                            "not measured"))
    print("| target | measured (worst case) | peer | verdict |")
    print("| --- | --- | --- | --- |")
    for verdict in verdicts:
        print(f"| {verdict.target} | {verdict.measured} | {verdict.peer} | {verdict.status} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
