"""Writes the safetensors fuzzer's seed corpus: a handful of small valid
files (several dtypes and ranks, a scalar, an empty tensor, metadata, an
unpadded header so the data is unaligned) into the folder given as the one
argument. Python 3 standard library only."""
import json
import random
import struct
import sys
from pathlib import Path

ELEMENT_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
                 "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


RANDOM = random.Random(1)


def safetensors_file(tensors, metadata=None, pad=True):
    """tensors: list of (name, dtype, shape); the data is random and never zero."""
    header, data = {}, bytearray()
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape in tensors:
        count = ELEMENT_BYTES[dtype]
        for dim in shape:
            count *= dim
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + count]}
        data += bytes(RANDOM.randint(1, 255) for _ in range(count))
    text = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + bytes(data)


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    seeds = {
        "single_f32": safetensors_file([("weight", "F32", [2, 3])]),
        "every_dtype": safetensors_file([(f"t_{dtype.lower()}", dtype, [2]) for dtype in ELEMENT_BYTES]),
        "scalar_and_empty": safetensors_file([("scalar", "I8", []), ("empty", "F16", [0, 4])]),
        "metadata": safetensors_file([("model.layers.0.mlp.up_proj.weight", "BF16", [4, 2])],
                                     metadata={"format": "pt", "source": "seed"}),
        "unaligned": safetensors_file([("a", "F32", [3]), ("b", "U8", [5])], pad=False),
        "header_only": safetensors_file([]),
    }
    for name, content in seeds.items():
        (out / f"{name}.safetensors").write_bytes(content)


if __name__ == "__main__":
    main()
