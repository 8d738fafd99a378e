#!/usr/bin/env python3
"""Peer for `elastic bench`: llama.cpp (PyPI llama-cpp-python) on the same file.

Times the tests `elastic bench` times, the way it times them, so the two
tables line up row for row:

    ppN  one evaluation of N prompt tokens into an empty context (one batch
         of N, logits for the last token only)
    tgN  N single-token evaluations from an empty context

Token ids come from a fixed seed; each test runs once to warm up, then
--repetitions times; tokens per second are reported as mean and sample
standard deviation. Prints the same JSON rows as `elastic bench -o json`
(one object per test, with every sample). llama.cpp computes directly on the
file's quantised blocks. Never run at build or test time.

    pip install llama-cpp-python   # builds llama.cpp from source
    python3 benchmarks/peer_llama_cpp.py --model FILE.gguf [--threads 2]
        [-p 512] [-n 128] [-r 5]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from typing import List


def comma_list(text: str) -> List[int]:
    return [int(part) for part in text.split(",") if part]


def timed(model, tokens: List[int], one_by_one: bool) -> float:
    model.reset()
    start = time.perf_counter()
    if one_by_one:
        for token in tokens:
            model.eval([token])
    else:
        model.eval(tokens)
    return len(tokens) / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="the GGUF file")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("-p", "--n-prompt", type=comma_list, default=[512])
    parser.add_argument("-n", "--n-gen", type=comma_list, default=[128])
    parser.add_argument("-r", "--repetitions", type=int, default=5)
    args = parser.parse_args()

    try:
        import llama_cpp
    except ImportError:
        print("peer_llama_cpp: llama-cpp-python is not installed (pip install llama-cpp-python)", file=sys.stderr)
        return 2
    longest = max(args.n_prompt + args.n_gen + [1])
    model = llama_cpp.Llama(model_path=args.model, n_ctx=longest, n_batch=longest, n_ubatch=longest,
                            n_threads=args.threads, n_threads_batch=args.threads, logits_all=False,
                            verbose=False)
    generator = random.Random(1234)
    tokens = [generator.randrange(model.n_vocab()) for _ in range(longest)]

    rows = []
    tests = [("pp", n, False) for n in args.n_prompt if n > 0] + [("tg", n, True) for n in args.n_gen if n > 0]
    for prefix, length, one_by_one in tests:
        timed(model, tokens[:length], one_by_one)  # warm-up
        samples = [timed(model, tokens[:length], one_by_one) for _ in range(args.repetitions)]
        rows.append({
            "model_file": args.model,
            "peer": f"llama.cpp (llama-cpp-python {llama_cpp.__version__})",
            "threads": args.threads,
            "test": f"{prefix}{length}",
            "n_prompt": 0 if one_by_one else length,
            "n_gen": length if one_by_one else 0,
            "avg_ts": statistics.fmean(samples),
            "stddev_ts": statistics.stdev(samples) if len(samples) > 1 else 0.0,
            "samples_ts": samples,
        })
        print(f"peer_llama_cpp: {prefix}{length} {rows[-1]['avg_ts']:.2f} t/s", file=sys.stderr)
    print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
