#!/usr/bin/env python3
"""Whole-model speed of `elastic bench` beside llama.cpp, in one run.

Runs `elastic bench -o json` once per element type (f32, bf16, and quant:
the file's own blocks with 8-bit activations) and
benchmarks/peer_llama_cpp.py on the same GGUF file with the same thread
count, one after the other on the same machine, then writes a results folder:

    elastic_<dtype>.json   elastic bench's rows
    llama_cpp.json         the peer's rows
    summary.md             the machine, the table, and ours / llama.cpp for
                           each test and sub-network

    python3 benchmarks/model_bench.py --elastic build/dev/examples/elastic \\
        --out benchmarks/results/<date>-<machine> [--model FILE.gguf]
        [--threads 2] [-p 512] [-n 128] [-r 5] [--mlp-widths 0,1152,768]
        [--python .venv-peer/bin/python3]

--python names the interpreter that has llama-cpp-python (default: this one).
Never run at build or test time.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from typing import Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))


def run_json(command: List[str]) -> List[Dict]:
    print("model_bench: " + " ".join(command), file=sys.stderr)
    result = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(result.stdout)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def write_atomically(path: str, text: str) -> None:
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(temporary, path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--elastic", required=True, help="the elastic program")
    parser.add_argument("--out", required=True, help="results folder (created)")
    parser.add_argument("--model", help="GGUF file (default: elastic's default model)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("-p", "--n-prompt", default="512")
    parser.add_argument("-n", "--n-gen", default="128")
    parser.add_argument("-r", "--repetitions", type=int, default=5)
    parser.add_argument("--mlp-widths", default="", help="elastic sub-networks to add (comma list, 0: stored)")
    parser.add_argument("--dtypes", default="f32,bf16,quant")
    parser.add_argument("--python", default=sys.executable, help="interpreter with llama-cpp-python")
    args = parser.parse_args()

    common = ["--threads", str(args.threads), "-p", args.n_prompt, "-n", args.n_gen, "-r", str(args.repetitions)]
    ours: Dict[str, List[Dict]] = {}
    for dtype in args.dtypes.split(","):
        command = [args.elastic, "bench", "-o", "json", "--dtype", dtype] + common
        if args.model:
            command += ["--model", args.model]
        if args.mlp_widths:
            command += ["--mlp-widths", args.mlp_widths]
        ours[dtype] = run_json(command)
    model_file = args.model or next(iter(ours.values()))[0]["model_file"]
    peer = run_json([args.python, os.path.join(HERE, "peer_llama_cpp.py"), "--model", model_file] + common)
    peer_by_test = {row["test"]: row for row in peer}

    os.makedirs(args.out, exist_ok=True)
    for dtype, rows in ours.items():
        write_atomically(os.path.join(args.out, f"elastic_{dtype}.json"), json.dumps(rows, indent=2) + "\n")
    write_atomically(os.path.join(args.out, "llama_cpp.json"), json.dumps(peer, indent=2) + "\n")

    first = next(iter(ours.values()))[0]
    lines = [
        f"# Whole model: elastic bench beside llama.cpp ({datetime.date.today().isoformat()})",
        "",
        f"- Machine: {cpu_name()}, {os.cpu_count()} hardware threads; both programs ran with "
        f"{args.threads} threads, one after the other.",
        f"- Model: `{os.path.basename(model_file)}` ({first['model']}, {first['parameters'] / 1e6:.1f} M parameters, "
        f"{first['model_bytes'] / 2**20:.1f} MiB on disk).",
        f"- Peer: {peer[0]['peer']}, computing on the file's quantised blocks with 8-bit activations; "
        "elastic f32 / bf16 dequantise once into the element type and compute in float32, elastic quant "
        "computes on the file's blocks with 8-bit activations like the peer.",
        f"- Tokens per second, mean ± sample standard deviation over {args.repetitions} runs after one warm-up.",
        "",
        "| engine | dtype | config | test | t/s | ours / llama.cpp |",
        "| --- | --- | --- | ---: | ---: | ---: |",
    ]
    for row in peer:
        lines.append(f"| llama.cpp | file | full | {row['test']} | {row['avg_ts']:.2f} ± {row['stddev_ts']:.2f} | |")
    for dtype, rows in ours.items():
        for row in rows:
            reference = peer_by_test.get(row["test"])
            ratio = f"{row['avg_ts'] / reference['avg_ts']:.3f}" if reference else ""
            lines.append(f"| elastic | {dtype} | {row['config']} | {row['test']} | "
                         f"{row['avg_ts']:.2f} ± {row['stddev_ts']:.2f} | {ratio} |")
    write_atomically(os.path.join(args.out, "summary.md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
