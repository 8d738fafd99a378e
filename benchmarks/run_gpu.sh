#!/usr/bin/env bash
# Builds (when needed) and runs the CUDA MLP, attention, routing and routed MLP
# benchmarks on a GPU machine. Writes into OUT_DIR: cuda_mlp.json,
# cuda_attention.json, cuda_routing.json and cuda_routed_mlp.json (Google
# Benchmark JSON, medians over the repetitions), their console output
# (cuda_*.txt), summary.md (mlp_table.py on the MLP run: scaling, ceiling
# fractions, ratio to cuBLAS) and nvidia-smi.txt. With
# SKIP_BUILD=1 the binaries of BUILD_DIR are used as they are (a build carried
# from another machine; put libbenchmark's shared library on LD_LIBRARY_PATH
# if the GPU machine lacks Google Benchmark).
#
#   benchmarks/run_gpu.sh OUT_DIR [extra Google Benchmark flags...]
#
# Environment:
#   BUILD_DIR            build tree (default: build/bench-gpu in the repository)
#   CUDA_ARCHITECTURES   default: the first device's compute capability (90 for H100/H200)
#   REPETITIONS          repetitions per benchmark, median reported (default 5)
#   MIN_TIME             seconds per repetition (default 0.2)
#   CMAKE_ARGS           extra configure options, e.g. "-DELASTIC_BENCH_WIDTHS=4096,8192"
#   SKIP_BUILD           1: run the binaries already in BUILD_DIR
set -euo pipefail

if (($# < 1)); then
  echo "usage: $0 OUT_DIR [extra Google Benchmark flags...]" >&2
  exit 2
fi
out_dir=$1
shift
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${BUILD_DIR:-$repo/build/bench-gpu}

architectures=${CUDA_ARCHITECTURES:-}
if [[ -z "$architectures" ]] && command -v nvidia-smi >/dev/null 2>&1; then
  architectures=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d ' .')
fi
architectures=${architectures:-90}

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  read -r -a extra_cmake_args <<<"${CMAKE_ARGS:-}"
  cmake -S "$repo" -B "$build_dir" \
    -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CUDA_ARCHITECTURES="$architectures" \
    -DELASTIC_BUILD_TESTS=OFF \
    -DELASTIC_BUILD_EXAMPLES=OFF \
    -DELASTIC_BUILD_BENCHMARKS=ON \
    "${extra_cmake_args[@]}"
  cmake --build "$build_dir" --target elastic_cuda_mlp_benchmark elastic_cuda_attention_benchmark \
    elastic_cuda_routing_benchmark elastic_cuda_routed_mlp_benchmark -j "$(nproc)"
fi

mkdir -p "$out_dir"
commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
if ! git -C "$repo" diff --quiet HEAD 2>/dev/null; then
  commit="$commit-modified"
fi
nvidia-smi >"$out_dir/nvidia-smi.txt" 2>&1 || true

for name in mlp attention routing routed_mlp; do
  "$build_dir/benchmarks/elastic_cuda_${name}_benchmark" \
    --benchmark_repetitions="${REPETITIONS:-5}" \
    --benchmark_report_aggregates_only=true \
    --benchmark_min_time="${MIN_TIME:-0.2}" \
    --benchmark_out="$out_dir/cuda_${name}.json" \
    --benchmark_out_format=json \
    --benchmark_context=commit="$commit" \
    "$@" | tee "$out_dir/cuda_${name}.txt"
done

if [[ ! -s "$out_dir/cuda_mlp.json" ]]; then
  echo "run_gpu: no results written (see $out_dir/cuda_mlp.txt)" >&2
  exit 1
fi
if command -v python3 >/dev/null 2>&1; then
  python3 "$repo/benchmarks/mlp_table.py" "$out_dir/cuda_mlp.json" | tee "$out_dir/summary.md"
fi
