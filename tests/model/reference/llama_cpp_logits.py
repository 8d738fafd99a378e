"""Logits of a GGUF model computed by llama.cpp, the peer engine.

Loads the file with llama-cpp-python (llama.cpp computing directly on the
file's quantised blocks), evaluates the given token ids from an empty
context in one batch with logits kept for every position (teacher forcing),
and writes them as raw little-endian float32 [tokens x vocab], the layout of
`elastic logits`. The C++ reference test compares the library's logits with
these. Exits 77 when llama-cpp-python is not installed.

Usage:
  python3 llama_cpp_logits.py MODEL.gguf --tokens 1,2,3 --out logits.bin [--threads 2]
"""
import argparse
import os
import sys

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--tokens", required=True, help="comma-separated token ids")
    parser.add_argument("--out", required=True)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    try:
        import llama_cpp
    except ImportError:
        print("llama_cpp_logits: llama-cpp-python is not installed", file=sys.stderr)
        return 77
    tokens = [int(token) for token in args.tokens.split(",")]
    model = llama_cpp.Llama(model_path=args.model, n_ctx=len(tokens), n_batch=len(tokens), n_ubatch=len(tokens),
                            n_threads=args.threads, n_threads_batch=args.threads, logits_all=True, verbose=False)
    model.eval(tokens)
    logits = np.asarray(model.scores[: len(tokens)], dtype="<f4")
    if logits.shape != (len(tokens), model.n_vocab()):
        print(f"llama_cpp_logits: expected logits of shape {(len(tokens), model.n_vocab())}, found {logits.shape}",
              file=sys.stderr)
        return 1
    temporary = args.out + ".tmp"
    logits.tofile(temporary)
    os.replace(temporary, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
