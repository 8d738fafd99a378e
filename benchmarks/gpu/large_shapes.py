#!/usr/bin/env python3
"""The CUDA executor at real model sizes against PyTorch on the same tensors.

The unit tests use small shapes; this runs the library
(libelastic_torch_check.so, benchmarks/gpu/torch_check_*.cu) over tensors
torch draws on the GPU (random, never zeros) into poisoned outputs, and torch
computes each reference in float32 from the same values. In bfloat16 and
float16:

mlp        Llama-3-8B's MLP (hidden 4096, widths 3584 / 7168 / 10752 / 14336,
           the benchmarks' width set) at 1 token (the CUDA-core decode
           kernel), 3, 4, 9 and 16 tokens (the tensor-core decode kernel,
           one and two token tiles) and 512 tokens (cuBLASLt on
           the sliced weights plus the SwiGLU epilogue):
               y_ref = (silu(x gate[:k]^T) * (x up[:k]^T)) down[:, :k]^T
attention  Llama-3-8B's (32 query heads over 8 KV heads of 128) and
           SmolLM2's (9 over 3 of 64) attention on one cache of 4 slots: an
           8192-token prefill, its continuation to 32767 cached positions
           (rows sampled), a ragged prefill of three more sequences, then two
           decode steps over all four (contexts 32768, 1001, 78, 4097 and one
           more) - RoPE, GQA and the causal mask recomputed by torch
routed     a linear router over {skip, each width} and the routed MLP at
           4096 tokens, argmax and capacity rules: the choices against
           torch's (near-ties excused), the residual against torch's
           per-token MLP at the chosen widths

Error: ||y - y_ref|| / ||y_ref||, which must stay under 2e-2 (16-bit
storage of activations, probabilities and the hidden layer, as in every
16-bit engine), with every output finite. Prints one row per case and exits 1
if any case fails. Run on the GPU machine by benchmarks/gpu/run.sh:

    python3 benchmarks/gpu/large_shapes.py --library build/gpu-bundle/lib/libelastic_torch_check.so
"""
from __future__ import annotations

import argparse
import ctypes
import math
import sys
from dataclasses import dataclass

import torch

DTYPES = {"bfloat16": (0, torch.bfloat16), "float16": (1, torch.float16)}
TOLERANCE = 2e-2
VOID = ctypes.c_void_p
INT_ARRAY = ctypes.POINTER(ctypes.c_int)


def load(path: str) -> ctypes.CDLL:
    library = ctypes.CDLL(path)
    library.elastic_last_error.restype = ctypes.c_char_p
    library.elastic_mlp_workspace_bytes.restype = ctypes.c_size_t
    library.elastic_mlp_workspace_bytes.argtypes = [ctypes.c_int] + [ctypes.c_int64] * 3 + [VOID] * 3
    library.elastic_mlp_forward.restype = ctypes.c_int
    library.elastic_mlp_forward.argtypes = ([ctypes.c_int, ctypes.c_int] + [ctypes.c_int64] * 3 + [VOID] * 6 +
                                            [ctypes.c_size_t, VOID])
    library.elastic_kv_cache_bytes.restype = ctypes.c_size_t
    library.elastic_kv_cache_bytes.argtypes = [ctypes.c_int] * 5
    library.elastic_attention_forward.restype = ctypes.c_int
    library.elastic_attention_forward.argtypes = ([ctypes.c_int] * 4 + [ctypes.c_float, ctypes.c_int] +
                                                  [INT_ARRAY] * 3 + [VOID] * 5 + [ctypes.c_int] * 2 + [VOID])
    library.elastic_routed_mlp_forward.restype = ctypes.c_int
    library.elastic_routed_mlp_forward.argtypes = [ctypes.c_int] * 3 + [ctypes.c_int64] * 3 + [VOID] * 8
    return library


class Report:
    """One markdown row per case; remembers whether every case passed."""

    def __init__(self) -> None:
        self.passed = True
        print("| layer | dtype | case | error | verdict |")
        print("| --- | --- | --- | ---: | --- |")

    def error(self, layer: str, dtype: str, case: str, library: ctypes.CDLL) -> None:
        self.passed = False
        print(f"| {layer} | {dtype} | {case} | - | error: {library.elastic_last_error().decode()} |")

    def compare(self, layer: str, dtype: str, case: str, got: torch.Tensor, reference: torch.Tensor) -> None:
        finite = bool(torch.isfinite(got).all())
        error = float((got.float() - reference).norm() / reference.norm()) if finite else float("inf")
        self.verdict(layer, dtype, case, f"{error:.2e}", finite and error < TOLERANCE)

    def verdict(self, layer: str, dtype: str, case: str, error: str, ok: bool) -> None:
        self.passed &= ok
        print(f"| {layer} | {dtype} | {case} | {error} | {'pass' if ok else 'FAIL'} |")


def random_tensor(generator: torch.Generator, dtype: torch.dtype, *shape: int, scale: float) -> torch.Tensor:
    return (torch.randn(*shape, device="cuda", generator=generator) * scale).to(dtype).contiguous()


def reference_mlp(x: torch.Tensor, gate: torch.Tensor, up: torch.Tensor, down: torch.Tensor, width: int) -> torch.Tensor:
    xf = x.float()
    hidden_activation = torch.nn.functional.silu(xf @ gate[:width].float().T) * (xf @ up[:width].float().T)
    return hidden_activation @ down[:, :width].float().T


def check_mlp(library: ctypes.CDLL, report: Report, dtype_name: str, hidden: int, widths: list[int],
              tokens: list[int]) -> None:
    code, dtype = DTYPES[dtype_name]
    intermediate = max(widths)
    generator = torch.Generator(device="cuda").manual_seed(1000 * code + hidden)
    gate = random_tensor(generator, dtype, intermediate, hidden, scale=hidden ** -0.5)
    up = random_tensor(generator, dtype, intermediate, hidden, scale=hidden ** -0.5)
    down = random_tensor(generator, dtype, hidden, intermediate, scale=intermediate ** -0.5)
    stream = torch.cuda.current_stream().cuda_stream
    for count in tokens:
        x = random_tensor(generator, dtype, count, hidden, scale=1.0)
        workspace_bytes = library.elastic_mlp_workspace_bytes(code, count, hidden, intermediate, gate.data_ptr(),
                                                              up.data_ptr(), down.data_ptr())
        if workspace_bytes == 0 and library.elastic_last_error():
            report.error("mlp", dtype_name, f"{count} tokens", library)
            continue
        workspace = torch.empty(max(workspace_bytes, 1), dtype=torch.uint8, device="cuda")
        for width in widths:
            case = f"{count} tokens, width {width}"
            y = torch.full((count, hidden), float("nan"), dtype=dtype, device="cuda")
            torch.cuda.synchronize()
            status = library.elastic_mlp_forward(code, width, count, hidden, intermediate, x.data_ptr(),
                                                 gate.data_ptr(), up.data_ptr(), down.data_ptr(), y.data_ptr(),
                                                 workspace.data_ptr(), workspace_bytes, stream)
            if status != 0:
                report.error("mlp", dtype_name, case, library)
                continue
            report.compare("mlp", dtype_name, case, y, reference_mlp(x, gate, up, down, width))


@dataclass
class AttentionShape:
    name: str
    heads: int
    kv_heads: int
    head_dim: int
    theta: float


ATTENTION_SHAPES = [AttentionShape("Llama-3-8B", 32, 8, 128, 500000.0), AttentionShape("SmolLM2", 9, 3, 64, 100000.0)]
LONG_CONTEXT = 32768


def rope(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """rotate_half RoPE in float32 of x: [rows x heads x head_dim] at positions [rows]."""
    head_dim = x.shape[-1]
    inverse_frequency = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=x.device, dtype=torch.float32) / head_dim))
    angles = positions.float()[:, None] * inverse_frequency[None, :]
    cos, sin = angles.cos()[:, None, :], angles.sin()[:, None, :]
    first, second = x[..., : head_dim // 2].float(), x[..., head_dim // 2:].float()
    return torch.cat([first * cos - second * sin, second * cos + first * sin], dim=-1)


class CachedSequence:
    """One cache slot's history as torch keeps it: raw keys and values, rotated keys as the cache stores them."""

    def __init__(self, shape: AttentionShape, dtype: torch.dtype) -> None:
        self.shape, self.dtype = shape, dtype
        self.rotated_keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []

    def length(self) -> int:
        return sum(part.shape[0] for part in self.values)

    def append(self, k: torch.Tensor, v: torch.Tensor) -> None:
        positions = torch.arange(self.length(), self.length() + k.shape[0], device="cuda")
        self.rotated_keys.append(rope(k, positions, self.shape.theta).to(self.dtype))
        self.values.append(v)

    def attend(self, q: torch.Tensor, positions: torch.Tensor, chunk: int = 128) -> torch.Tensor:
        """Causal attention of q: [rows x heads x head_dim] (before RoPE) at `positions` over the history."""
        group = self.shape.heads // self.shape.kv_heads
        keys = torch.cat(self.rotated_keys).float().repeat_interleave(group, dim=1)
        values = torch.cat(self.values).float().repeat_interleave(group, dim=1)
        rotated = rope(q, positions, self.shape.theta)
        columns = torch.arange(keys.shape[0], device="cuda")
        outputs = []
        for first in range(0, q.shape[0], chunk):
            rows = rotated[first:first + chunk]
            scores = torch.einsum("rhd,khd->hrk", rows, keys) / math.sqrt(self.shape.head_dim)
            visible = columns[None, :] <= positions[first:first + chunk, None]
            scores = scores.masked_fill(~visible[None], float("-inf"))
            outputs.append(torch.einsum("hrk,khd->rhd", scores.softmax(dim=-1), values))
        return torch.cat(outputs)


def check_attention(library: ctypes.CDLL, report: Report, dtype_name: str, shape: AttentionShape) -> None:
    code, dtype = DTYPES[dtype_name]
    generator = torch.Generator(device="cuda").manual_seed(2000 * code + shape.head_dim)
    slots, capacity = 4, LONG_CONTEXT
    cache_bytes = library.elastic_kv_cache_bytes(code, slots, shape.kv_heads, capacity, shape.head_dim)
    if cache_bytes == 0:
        report.error("attention", dtype_name, shape.name, library)
        return
    cache = torch.empty(cache_bytes, dtype=torch.uint8, device="cuda")
    history = [CachedSequence(shape, dtype) for _ in range(slots)]
    stream = torch.cuda.current_stream().cuda_stream

    def step(case: str, batch_slots: list[int], new_lengths: list[int], sampled_rows: int | None = None) -> None:
        tokens = sum(new_lengths)
        # Queries scaled up so the softmax is peaked rather than flat over long contexts.
        q = random_tensor(generator, dtype, tokens, shape.heads, shape.head_dim, scale=2.0)
        k = random_tensor(generator, dtype, tokens, shape.kv_heads, shape.head_dim, scale=1.0)
        v = random_tensor(generator, dtype, tokens, shape.kv_heads, shape.head_dim, scale=1.0)
        out = torch.full((tokens, shape.heads, shape.head_dim), float("nan"), dtype=dtype, device="cuda")
        cached = [history[slot].length() for slot in batch_slots]
        as_array = lambda values: (ctypes.c_int * len(values))(*values)  # noqa: E731
        torch.cuda.synchronize()
        status = library.elastic_attention_forward(
            code, shape.head_dim, shape.heads, shape.kv_heads, shape.theta, len(batch_slots), as_array(batch_slots),
            as_array(cached), as_array(new_lengths), q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(),
            cache.data_ptr(), slots, capacity, stream)
        label = f"{shape.name}: {case}"
        if status != 0:
            report.error("attention", dtype_name, label, library)
            return
        if not bool(torch.isfinite(out).all()):
            report.verdict("attention", dtype_name, label, "non-finite output", False)
            return
        got, expected = [], []
        first = 0
        for slot, length, start in zip(batch_slots, new_lengths, cached):
            rows = torch.arange(length, device="cuda")
            if sampled_rows is not None and length > 2 * sampled_rows:
                rows = torch.cat([rows[:sampled_rows], rows[-sampled_rows:]])
            history[slot].append(k[first:first + length], v[first:first + length])
            expected.append(history[slot].attend(q[first:first + length][rows], start + rows))
            got.append(out[first:first + length][rows])
            first += length
        report.compare("attention", dtype_name, label, torch.cat(got), torch.cat(expected))

    step("prefill 8192", [0], [8192])
    step("prefill 8192 -> 32767 (rows sampled)", [0], [LONG_CONTEXT - 1 - 8192], sampled_rows=128)
    step("ragged prefill 1000 + 77 + 4096", [1, 2, 3], [1000, 77, 4096])
    step("decode at 32768, 1001, 78, 4097", [0, 1, 2, 3], [1, 1, 1, 1])
    step("decode at 1002, 79, 4098", [1, 2, 3], [1, 1, 1])


def check_routed(library: ctypes.CDLL, report: Report, dtype_name: str, hidden: int, widths: list[int],
                 tokens: int) -> None:
    code, dtype = DTYPES[dtype_name]
    intermediate = max(widths)
    choice_widths = [0] + widths
    generator = torch.Generator(device="cuda").manual_seed(3000 * code + hidden)
    gate = random_tensor(generator, dtype, intermediate, hidden, scale=hidden ** -0.5)
    up = random_tensor(generator, dtype, intermediate, hidden, scale=hidden ** -0.5)
    down = random_tensor(generator, dtype, hidden, intermediate, scale=intermediate ** -0.5)
    router = random_tensor(generator, dtype, len(choice_widths), hidden, scale=hidden ** -0.5)
    x = random_tensor(generator, dtype, tokens, hidden, scale=1.0)
    stream = torch.cuda.current_stream().cuda_stream
    logits = (x.float() @ router.float().T).to(dtype).float()
    # A choice may differ from torch's only where two logits lie within the
    # rounding of the logits themselves (16-bit, float32 sums in another order).
    near = 4 * torch.finfo(dtype).eps * logits.abs().max()
    capacity = tokens // 3
    for rule, name in ((0, "argmax"), (1, f"capacity {capacity}")):
        case = f"{tokens} tokens, {name}"
        residual0 = random_tensor(generator, dtype, tokens, hidden, scale=1.0)
        residual = residual0.clone()
        choices = torch.full((tokens,), -1, dtype=torch.int32, device="cuda")
        torch.cuda.synchronize()
        status = library.elastic_routed_mlp_forward(code, rule, capacity, tokens, hidden, intermediate, x.data_ptr(),
                                                    gate.data_ptr(), up.data_ptr(), down.data_ptr(),
                                                    router.data_ptr(), residual.data_ptr(), choices.data_ptr(),
                                                    stream)
        if status != 0:
            report.error("routed", dtype_name, case, library)
            continue
        chosen = choices.long()
        if rule == 0:
            top2 = logits.topk(2, dim=1).values
            clear = (top2[:, 0] - top2[:, 1]) > near
            agree = bool((chosen[clear] == logits[clear].argmax(dim=1)).all())
        else:
            target = len(choice_widths) - 1
            score = logits[:, target]
            threshold = score.topk(capacity).values[-1]
            taken = chosen == target
            agree = (int(taken.sum()) == capacity and bool((chosen[~taken] == 0).all()) and
                     bool(taken[score > threshold + near].all()) and not bool(taken[score < threshold - near].any()))
        report.verdict("routed", dtype_name, f"{case}: choices", "-", agree)
        if not bool((chosen >= 0).all() and (chosen < len(choice_widths)).all()):
            report.verdict("routed", dtype_name, f"{case}: residual update", "choices out of range", False)
            continue
        # What the layer added to the residual (zero for skipped tokens), so
        # the residual's own size does not hide a wrong group.
        expected = torch.zeros(tokens, hidden, device="cuda")
        for choice, width in enumerate(choice_widths):
            rows = (chosen == choice).nonzero().flatten()
            if width == 0 or rows.numel() == 0:
                continue
            expected[rows] = reference_mlp(x[rows], gate, up, down, width)
        report.compare("routed", dtype_name, f"{case}: residual update", residual.float() - residual0.float(),
                       expected)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--library", required=True, help="libelastic_torch_check.so")
    parser.add_argument("--hidden", type=int, default=4096)
    parser.add_argument("--widths", default="3584,7168,10752,14336", help="the library's width set")
    parser.add_argument("--tokens", default="1,3,4,9,16,512", help="MLP token counts")
    parser.add_argument("--routed-tokens", type=int, default=4096)
    parser.add_argument("--dtypes", default="bfloat16,float16")
    parser.add_argument("--checks", default="mlp,attention,routed")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("large_shapes: torch sees no CUDA device", file=sys.stderr)
        return 1
    library = load(args.library)
    widths = [int(w) for w in args.widths.split(",")]
    tokens = [int(t) for t in args.tokens.split(",")]
    checks = args.checks.split(",")
    print(f"large shapes on {torch.cuda.get_device_name()}: ||y - ref|| / ||ref|| < {TOLERANCE}, outputs finite")
    report = Report()
    for name in args.dtypes.split(","):
        if "mlp" in checks:
            check_mlp(library, report, name, args.hidden, widths, tokens)
        if "attention" in checks:
            for shape in ATTENTION_SHAPES:
                check_attention(library, report, name, shape)
        if "routed" in checks:
            check_routed(library, report, name, args.hidden, widths, args.routed_tokens)
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
