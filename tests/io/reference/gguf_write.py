"""Writes a small GGUF file with the PyPI gguf package's own writer (an
independent implementation of the format) for the C++ reader to read.

usage: gguf_write.py OUT.gguf
"""
import sys

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter
from gguf.quants import quantize


def main() -> None:
    writer = GGUFWriter(sys.argv[1], "llama")
    writer.add_block_count(1)
    writer.add_token_list(["a", "b", "c"])
    writer.add_token_scores([0.5, -1.0, 2.0])
    writer.add_tensor("weight", (np.arange(12, dtype=np.float32) * 0.5).reshape(3, 4))
    values = np.linspace(-1.0, 1.0, 128, dtype=np.float32).reshape(2, 64)
    writer.add_tensor("q8", quantize(values, GGMLQuantizationType.Q8_0), raw_dtype=GGMLQuantizationType.Q8_0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    main()
