"""Writes the GGUF fuzzer's seed corpus: a few small valid GGUF files (a tiny
llama model with quantised tensors, a deci model with per-layer arrays,
metadata of every type with nested arrays, one tensor of each K-quant, a
version 2 file), each under the fuzzer's 8 KiB input limit, built with
struct alone so no third-party package is needed.

usage: python3 gguf_seeds.py OUTDIR
"""
import os
import random
import struct
import sys

U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
SCALAR_FORMATS = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f",
                  BOOL: "<?", U64: "<Q", I64: "<q", F64: "<d"}
# ggml type id: (elements per block, bytes per block)
GGML_TYPES = {"F32": (0, 1, 4), "F16": (1, 1, 2), "Q4_0": (2, 32, 18), "Q4_1": (3, 32, 20),
              "Q5_0": (6, 32, 22), "Q5_1": (7, 32, 24), "Q8_0": (8, 32, 34), "Q2_K": (10, 256, 84),
              "Q3_K": (11, 256, 110), "Q4_K": (12, 256, 144), "Q5_K": (13, 256, 176), "Q6_K": (14, 256, 210),
              "I32": (26, 1, 4), "BF16": (30, 1, 2)}


def string(text):
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def value(kind, item):
    if kind == STRING:
        return string(item)
    if kind == ARRAY:
        element_kind, items = item
        return struct.pack("<IQ", element_kind, len(items)) + b"".join(value(element_kind, x) for x in items)
    return struct.pack(SCALAR_FORMATS[kind], item)


def gguf(metadata, tensors, version=3, alignment=32):
    """metadata: [(key, kind, value)]; tensors: [(name, type name, shape outermost-first)]."""
    rng = random.Random(len(tensors) * 7 + version)
    header = struct.pack("<IIQQ", 0x46554747, version, len(tensors), len(metadata))
    header += b"".join(string(key) + struct.pack("<I", kind) + value(kind, item) for key, kind, item in metadata)
    data = b""
    for name, type_name, shape in tensors:
        type_id, block_elements, block_bytes = GGML_TYPES[type_name]
        elements = 1
        for dim in shape:
            elements *= dim
        header += string(name) + struct.pack("<I", len(shape))
        header += b"".join(struct.pack("<Q", dim) for dim in reversed(shape))
        header += struct.pack("<IQ", type_id, len(data))
        data += bytes(rng.randrange(256) for _ in range(elements // block_elements * block_bytes))
        data += b"\0" * (-len(data) % alignment)
    header += b"\0" * (-len(header) % alignment)
    return header + data


def model(arch, layers, hidden=32, heads=2, head_dim=16, vocab=8):
    tokens = ["<s>", "</s>"] + [chr(ord("a") + i) for i in range(vocab - 2)]
    metadata = [
        ("general.architecture", STRING, arch),
        (f"{arch}.block_count", U32, len(layers)),
        (f"{arch}.embedding_length", U32, hidden),
        (f"{arch}.context_length", U32, 64),
        (f"{arch}.attention.layer_norm_rms_epsilon", F32, 1e-5),
        (f"{arch}.rope.freq_base", F32, 10000.0),
        (f"{arch}.attention.key_length", U32, head_dim),
        ("tokenizer.ggml.model", STRING, "gpt2"),
        ("tokenizer.ggml.tokens", ARRAY, (STRING, tokens)),
        ("tokenizer.ggml.token_type", ARRAY, (I32, [3, 3] + [1] * (vocab - 2))),
        ("tokenizer.ggml.merges", ARRAY, (STRING, ["a b"])),
        ("tokenizer.ggml.bos_token_id", U32, 0),
        ("tokenizer.ggml.eos_token_id", U32, 1),
    ]
    tensors = [("token_embd.weight", "Q8_0", [vocab, hidden]), ("output_norm.weight", "F32", [hidden])]
    for i, (kv, ffn, linear_attention, linear_ffn) in enumerate(layers):
        block = f"blk.{i}."
        if kv or linear_attention:
            tensors.append((block + "attn_norm.weight", "F32", [hidden]))
        if kv:
            tensors += [(block + "attn_q.weight", "Q4_1", [heads * head_dim, hidden]),
                        (block + "attn_k.weight", "Q8_0", [kv * head_dim, hidden]),
                        (block + "attn_v.weight", "Q4_1", [kv * head_dim, hidden]),
                        (block + "attn_output.weight", "Q5_1", [hidden, heads * head_dim])]
        elif linear_attention:
            tensors.append((block + "attn_output.weight", "Q4_0", [hidden, hidden]))
        if ffn or linear_ffn:
            tensors.append((block + "ffn_norm.weight", "F32", [hidden]))
        if ffn:
            tensors += [(block + "ffn_gate.weight", "Q5_0", [ffn, hidden]),
                        (block + "ffn_up.weight", "Q4_1", [ffn, hidden]),
                        (block + "ffn_down.weight", "Q4_1", [hidden, ffn])]
        elif linear_ffn:
            tensors.append((block + "ffn_down.weight", "Q4_1", [hidden, hidden]))
    per_layer = arch == "deci"
    kvs = [layer[0] for layer in layers]
    ffns = [layer[1] for layer in layers]
    query = [heads if (layer[0] or layer[2]) else 0 for layer in layers]
    metadata += [
        (f"{arch}.attention.head_count", ARRAY, (I32, query)) if per_layer else (f"{arch}.attention.head_count", U32, heads),
        (f"{arch}.attention.head_count_kv", ARRAY, (I32, kvs)) if per_layer else (f"{arch}.attention.head_count_kv", U32, kvs[0]),
        (f"{arch}.feed_forward_length", ARRAY, (I32, ffns)) if per_layer else (f"{arch}.feed_forward_length", U32, ffns[0]),
    ]
    return metadata, tensors


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    every_type = [("u8", U8, 1), ("i8", I8, -1), ("u16", U16, 2), ("i16", I16, -2), ("u32", U32, 3),
                  ("i32", I32, -3), ("f32", F32, 0.5), ("bool", BOOL, True), ("string", STRING, "text"),
                  ("u64", U64, 4), ("i64", I64, -4), ("f64", F64, 0.25),
                  ("nested", ARRAY, (ARRAY, [(U8, [1, 2]), (STRING, ["x"])])),
                  ("general.alignment", U32, 64)]
    seeds = {
        "llama.gguf": gguf(*model("llama", [(1, 32, False, False)])),
        "deci.gguf": gguf(*model("deci", [(1, 32, False, False), (0, 0, True, False), (0, 0, False, True)])),
        "types.gguf": gguf(every_type, [("t", "F32", [2, 3])], alignment=64),
        "kquants.gguf": gguf([("general.name", STRING, "k-quants")],
                             [(name, name, [1, 256]) for name in ("Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")]
                             + [("f16", "F16", [4]), ("bf16", "BF16", [4]), ("i32", "I32", [2])]),
        "v2.gguf": gguf(*model("llama", [(2, 32, False, False)]), version=2),
    }
    for name, data in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
