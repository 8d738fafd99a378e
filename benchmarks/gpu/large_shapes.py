#!/usr/bin/env python3
"""The CUDA MLP at real model sizes against PyTorch on the same tensors.

The unit tests use small shapes; this runs Llama-3-8B's MLP (hidden 4096,
widths 3584 / 7168 / 10752 / 14336, the benchmarks' width set) in bfloat16
and float16 at 1, 4 and 16 tokens (the decode kernels, specialised on each
width) and 512 tokens (cuBLASLt on the sliced weights plus the SwiGLU
epilogue). torch draws random inputs and weights on the GPU (never zeros),
the library (libelastic_torch_check.so, benchmarks/gpu/torch_check.cu) runs
ElasticMLP over those very tensors into a poisoned output, and torch computes
the reference in float32 from the same values:

    y_ref = (silu(x gate[:k]^T) * (x up[:k]^T)) down[:, :k]^T

Error: ||y - y_ref|| / ||y_ref||, which must stay under 2e-2 (the hidden
activation is rounded to 16 bits before the down projection, as in every
16-bit engine), with every output finite. Prints one row per case and exits 1
if any case fails. Run on the GPU machine by benchmarks/gpu/run.sh:

    python3 benchmarks/gpu/large_shapes.py --library build/gpu-bundle/lib/libelastic_torch_check.so
"""
from __future__ import annotations

import argparse
import ctypes
import sys

import torch

DTYPES = {"bfloat16": (0, torch.bfloat16), "float16": (1, torch.float16)}
TOLERANCE = 2e-2


def load(path: str) -> ctypes.CDLL:
    library = ctypes.CDLL(path)
    library.elastic_last_error.restype = ctypes.c_char_p
    library.elastic_mlp_workspace_bytes.restype = ctypes.c_size_t
    library.elastic_mlp_workspace_bytes.argtypes = [ctypes.c_int] + [ctypes.c_int64] * 3 + [ctypes.c_void_p] * 3
    library.elastic_mlp_forward.restype = ctypes.c_int
    library.elastic_mlp_forward.argtypes = ([ctypes.c_int, ctypes.c_int] + [ctypes.c_int64] * 3 +
                                            [ctypes.c_void_p] * 6 + [ctypes.c_size_t, ctypes.c_void_p])
    return library


def check_mlp(library: ctypes.CDLL, dtype_name: str, hidden: int, widths: list[int], tokens: list[int]) -> bool:
    code, dtype = DTYPES[dtype_name]
    intermediate = max(widths)
    generator = torch.Generator(device="cuda").manual_seed(1000 * code + hidden)

    def random(*shape: int, scale: float) -> torch.Tensor:
        return (torch.randn(*shape, device="cuda", generator=generator) * scale).to(dtype).contiguous()

    gate = random(intermediate, hidden, scale=hidden ** -0.5)
    up = random(intermediate, hidden, scale=hidden ** -0.5)
    down = random(hidden, intermediate, scale=intermediate ** -0.5)
    stream = torch.cuda.current_stream().cuda_stream
    passed = True
    for count in tokens:
        x = random(count, hidden, scale=1.0)
        workspace_bytes = library.elastic_mlp_workspace_bytes(code, count, hidden, intermediate, gate.data_ptr(),
                                                              up.data_ptr(), down.data_ptr())
        if workspace_bytes == 0 and library.elastic_last_error():
            print(f"| mlp | {dtype_name} | {count} | - | - | error: {library.elastic_last_error().decode()} |")
            passed = False
            continue
        workspace = torch.empty(max(workspace_bytes, 1), dtype=torch.uint8, device="cuda")
        for width in widths:
            y = torch.full((count, hidden), float("nan"), dtype=dtype, device="cuda")
            torch.cuda.synchronize()
            status = library.elastic_mlp_forward(code, width, count, hidden, intermediate, x.data_ptr(),
                                                 gate.data_ptr(), up.data_ptr(), down.data_ptr(), y.data_ptr(),
                                                 workspace.data_ptr(), workspace_bytes, stream)
            if status != 0:
                print(f"| mlp | {dtype_name} | {count} | {width} | - | error: {library.elastic_last_error().decode()} |")
                passed = False
                continue
            xf = x.float()
            hidden_activation = torch.nn.functional.silu(xf @ gate[:width].float().T) * (xf @ up[:width].float().T)
            reference = hidden_activation @ down[:, :width].float().T
            finite = bool(torch.isfinite(y).all())
            error = float((y.float() - reference).norm() / reference.norm()) if finite else float("inf")
            ok = finite and error < TOLERANCE
            passed &= ok
            print(f"| mlp | {dtype_name} | {count} | {width} | {error:.2e} | {'pass' if ok else 'FAIL'} |")
    return passed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--library", required=True, help="libelastic_torch_check.so")
    parser.add_argument("--hidden", type=int, default=4096)
    parser.add_argument("--widths", default="3584,7168,10752,14336", help="the library's width set")
    parser.add_argument("--tokens", default="1,4,16,512")
    parser.add_argument("--dtypes", default="bfloat16,float16")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("large_shapes: torch sees no CUDA device", file=sys.stderr)
        return 1
    library = load(args.library)
    widths = [int(w) for w in args.widths.split(",")]
    tokens = [int(t) for t in args.tokens.split(",")]
    print(f"large shapes on {torch.cuda.get_device_name()}: ||y - ref|| / ||ref|| < {TOLERANCE}, outputs finite")
    print("| layer | dtype | tokens | width | error | verdict |")
    print("| --- | --- | ---: | ---: | ---: | --- |")
    passed = all([check_mlp(library, name, args.hidden, widths, tokens) for name in args.dtypes.split(",")])
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
