#!/usr/bin/env bash
# Builds, on a machine without a GPU, the folder the device run carries to a
# GPU machine (which has nvcc, CMake and PyTorch but no doctest, Google
# Benchmark or network): the CUDA test suite, the four CUDA benchmarks and
# the library gpu/large_shapes.py drives, for sm_90, with Google Benchmark's
# shared library beside them. The GPU
# machine supplies the CUDA driver and cuBLASLt (benchmarks/gpu/run.sh finds
# it there). Checks the folder stays under the 64 MiB a run may carry.
#
#   benchmarks/gpu/build_bundle.sh [BUNDLE_DIR]      (default build/gpu-bundle)
#
# Environment: BUILD_DIR, the build tree to configure and build in (default
# build/gpu-build; an existing tree configured with CUDA for sm_90, such as
# build/ci, is reused as it is); JOBS (default: every core).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bundle=${1:-$repo/build/gpu-bundle}
build_dir=${BUILD_DIR:-$repo/build/gpu-build}
targets=(elastic_cuda_tests elastic_cuda_mlp_benchmark elastic_cuda_attention_benchmark
  elastic_cuda_routing_benchmark elastic_cuda_routed_mlp_benchmark elastic_torch_check)

if [[ ! -f "$build_dir/CMakeCache.txt" ]]; then
  cmake -S "$repo" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DELASTIC_ENABLE_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES=90 -DELASTIC_BUILD_TESTS=ON -DELASTIC_BUILD_BENCHMARKS=ON \
    -DELASTIC_BUILD_EXAMPLES=OFF -DELASTIC_BUILD_PACKAGE_TESTS=OFF
fi
cmake --build "$build_dir" --target "${targets[@]}" -j "${JOBS:-$(nproc)}"

rm -rf "$bundle"
mkdir -p "$bundle/bin" "$bundle/lib"
cp "$build_dir/tests/elastic_cuda_tests" "$bundle/bin/"
for target in "${targets[@]:1:4}"; do cp "$build_dir/benchmarks/$target" "$bundle/bin/"; done
cp "$build_dir/benchmarks/libelastic_torch_check.so" "$bundle/lib/"
# Google Benchmark's shared library (Debian's libbenchmark), whatever the
# binaries link against besides the system and CUDA libraries.
for library in $(ldd "$bundle"/bin/* | awk '/libbenchmark/ {print $3}' | sort -u); do
  cp -L "$library" "$bundle/lib/"
done
strip --strip-unneeded "$bundle"/bin/* "$bundle/lib/libelastic_torch_check.so" 2>/dev/null || true
git -C "$repo" rev-parse --short HEAD >"$bundle/commit.txt" 2>/dev/null || echo unknown >"$bundle/commit.txt"

size=$(du -sm "$bundle" | cut -f1)
echo "build_bundle: $bundle holds $(ls "$bundle/bin" | wc -l) programs, ${size} MiB (limit 64)"
if ((size >= 64)); then
  echo "build_bundle: over the 64 MiB a device run can carry" >&2
  exit 1
fi
