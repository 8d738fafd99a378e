"""Dequantises tensors of a GGUF file with the PyPI gguf package (an
independent reader and dequantiser) and writes them as raw little-endian
float32, one tensor after another, for the C++ tests to compare bit-exactly.

usage: gguf_dequantize.py FILE.gguf OUT.bin [TENSOR_NAME ...]   (all tensors when no names)
"""
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize


def main() -> None:
    path, out_path, *names = sys.argv[1:]
    reader = GGUFReader(path)
    tensors = {tensor.name: tensor for tensor in reader.tensors}
    with open(out_path, "wb") as out:
        for name in names or list(tensors):
            tensor = tensors[name]
            values = dequantize(tensor.data, tensor.tensor_type).astype(np.float32, copy=False)
            out.write(np.ascontiguousarray(values).reshape(-1).astype("<f4").tobytes())
            print(name, tensor.tensor_type.name, values.size)


if __name__ == "__main__":
    main()
