#!/usr/bin/env bash
# The device run: everything the GPU checks need, in one call of at most
# TOTAL_SECONDS (default 480) on a GPU machine, from the repository root,
# with the folder benchmarks/gpu/build_bundle.sh built on a machine without
# a GPU carried along (build/gpu-bundle). In order, each step under its own
# time limit, cut short so the whole run ends in time:
#
#   nvidia-smi         the card as found (nothing is changed on it)
#   cuda_tests         the whole CUDA test suite; a skip (exit 77) fails here
#   large_shapes       the MLP, attention (8k prefill, 32k decode) and routed
#                      layers (4096 tokens) at real model sizes against torch
#   memcheck           compute-sanitizer memcheck over a short subset
#   bench_<name>       the four CUDA benchmarks, 3 repetitions each, JSON out
#   mlp_table          benchmarks/mlp_table.py on the MLP run (targets, cuBLAS)
#   torch_<name>       the torch peers on the same shapes (python3 with torch)
#   targets            gpu/targets.py: DESIGN.md's targets, measured, peer, verdict
#
# ELASTIC_REQUIRE_DEVICE=1 is set, so a missing device or any CUDA error
# fails a step instead of skipping it. Every log, JSON and table lands in
# OUT_DIR, which is then packed into OUT_DIR/gpu_run.tar.gz (one file to
# bring back). The last lines printed are the targets table (target,
# measured, peer, verdict) and the step table (step, status, seconds). Exit
# status 0 only when every step passed (a missed performance target is a
# verdict in the table, not a failed step).
#
#   benchmarks/gpu/run.sh OUT_DIR [BUNDLE_DIR]
set -uo pipefail
if (($# < 1)); then
  echo "usage: $0 OUT_DIR [BUNDLE_DIR]" >&2
  exit 2
fi
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=$1
bundle=${2:-$repo/build/gpu-bundle}
deadline=$((SECONDS + ${TOTAL_SECONDS:-480}))
mkdir -p "$out/logs"
export ELASTIC_REQUIRE_DEVICE=1

if [[ ! -x "$bundle/bin/elastic_cuda_tests" ]]; then
  echo "run: no bundle at $bundle (build it with benchmarks/gpu/build_bundle.sh and carry it)" >&2
  exit 2
fi

# The CUDA runtime and cuBLASLt (too large to carry) come from the machine:
# its CUDA toolkit, or the nvidia-* wheels PyTorch brings.
library_dirs=()
wheel_libs=$(python3 -c 'import glob, os, nvidia; print("\n".join(glob.glob(os.path.join(nvidia.__path__[0], "*", "lib"))))' 2>/dev/null || true)
for library in libcudart.so libcublasLt.so; do
  for candidate in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib $wheel_libs; do
    if compgen -G "$candidate/$library*" >/dev/null; then
      [[ " ${library_dirs[*]} " == *" $candidate "* ]] || library_dirs+=("$candidate")
      break
    fi
  done
done
search_path=$(IFS=:; echo "${library_dirs[*]}")
export LD_LIBRARY_PATH="$bundle/lib${search_path:+:$search_path}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "run: bundle $(cat "$bundle/commit.txt" 2>/dev/null), CUDA libraries from ${search_path:-the default library path}"

rows=()
failed=0
# step NAME LIMIT COMMAND...: runs COMMAND under min(LIMIT, time left), its
# output in logs/NAME.txt; records pass / fail (exit status) / timeout / not run.
step() {
  local name=$1 limit=$2
  shift 2
  local left=$((deadline - SECONDS))
  if ((left < 5)); then
    rows+=("$name|not run (out of time)|0")
    failed=1
    return
  fi
  ((limit > left)) && limit=$left
  local start=$SECONDS status
  timeout --kill-after=5 "$limit" "$@" >"$out/logs/$name.txt" 2>&1
  status=$?
  local verdict="pass"
  if ((status == 124 || status == 137)); then
    verdict="timeout after ${limit} s"
  elif ((status == 77)); then
    verdict="fail (skipped: no device?)"
  elif ((status != 0)); then
    verdict="fail (exit $status)"
  fi
  [[ $verdict == pass ]] || failed=1
  rows+=("$name|$verdict|$((SECONDS - start))")
  echo "run: $name: $verdict ($((SECONDS - start)) s)"
}

commit=$(cat "$bundle/commit.txt" 2>/dev/null || echo unknown)
step nvidia-smi 20 nvidia-smi
step cuda_tests 200 "$bundle/bin/elastic_cuda_tests"
step large_shapes 120 python3 "$repo/benchmarks/gpu/large_shapes.py" --library "$bundle/lib/libelastic_torch_check.so"
if command -v compute-sanitizer >/dev/null 2>&1; then
  step memcheck 90 compute-sanitizer --tool memcheck --error-exitcode 99 "$bundle/bin/elastic_cuda_tests" \
    "--test-case=cuda: bad input*,cuda decoder prefill*,cuda DeviceSequence*,cuda forward_decode matches*,cuda attention primitive*bfloat16_t,cuda decode row dots*bfloat16_t,cuda decode attention replayed*bfloat16_t"
else
  rows+=("memcheck|not run (no compute-sanitizer)|0")
  failed=1
fi
for name in mlp attention routing routed_mlp; do
  step "bench_$name" 60 "$bundle/bin/elastic_cuda_${name}_benchmark" --benchmark_repetitions=3 \
    --benchmark_report_aggregates_only=true --benchmark_min_time=0.05 \
    --benchmark_out="$out/cuda_$name.json" --benchmark_out_format=json --benchmark_context=commit="$commit"
done
step mlp_table 20 bash -c "python3 '$repo/benchmarks/mlp_table.py' '$out/cuda_mlp.json' > '$out/mlp_summary.md'"
for name in mlp attention routing; do
  extra=""
  [[ $name == attention ]] && extra="--json '$out/torch_attention.json'"
  step "torch_$name" 45 bash -c "python3 '$repo/benchmarks/peer_torch_$name.py' --repetitions 3 --min-time 0.05 \
    $extra > '$out/torch_$name.md'"
done
step targets 20 bash -c "python3 '$repo/benchmarks/gpu/targets.py' '$out' > '$out/targets.md'"

{
  echo "| step | status | seconds |"
  echo "| --- | --- | ---: |"
  for row in "${rows[@]}"; do echo "| ${row//|/ | } |"; done
} >"$out/summary.md"
tar -czf "$out/gpu_run.tar.gz.partial" -C "$out" --exclude=gpu_run.tar.gz --exclude=gpu_run.tar.gz.partial . &&
  mv "$out/gpu_run.tar.gz.partial" "$out/gpu_run.tar.gz"
grep -E "FAIL|error" "$out/logs/large_shapes.txt" 2>/dev/null | head -n 10
[[ -f "$out/targets.md" ]] && cat "$out/targets.md" && echo
cat "$out/summary.md"
exit "$failed"
