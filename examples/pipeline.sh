#!/usr/bin/env bash
# The conversion and budget search pipeline on one model, with the `elastic`
# CLI: convert (rank neurons and heads on the calibration text, write the
# elastic checkpoint), score (the block library), latency (the measured
# table), search (the exact architecture per budget, budgets.json, the
# Pareto front as pareto.svg / pareto.md), then text at the 0.8 budget.
# Texts: .data/text from cmake/setup-texts.sh (calibration, validation and
# evaluation are three different documents).
#
#   bash examples/pipeline.sh [OUT_FOLDER]     (default: out/smollm2-elastic)
#
# ELASTIC: the CLI (default build/dev/examples/elastic); MODEL: the model to
# convert (default: the CLI's, SmolLM2-135M-Instruct); THREADS (default 0:
# every hardware thread).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

elastic=${ELASTIC:-build/dev/examples/elastic}
out=${1:-out/smollm2-elastic}
texts=.data/text
threads=(--threads "${THREADS:-0}")
model=()
if [[ -n "${MODEL:-}" ]]; then model=(-m "$MODEL"); fi
if [[ ! -f "$texts/calibration.txt" ]]; then bash cmake/setup-texts.sh; fi
if [[ -e "$out" ]]; then
  echo "pipeline: $out exists; remove it or name another folder" >&2
  exit 1
fi
mkdir -p "$(dirname "$out")"

"$elastic" convert "${model[@]}" --calibration "$texts/calibration.txt" --validation "$texts/validation.txt" \
  -o "$out" "${threads[@]}"
"$elastic" score -m "$out" --calibration "$texts/calibration.txt" "${threads[@]}"
"$elastic" latency -m "$out" "${threads[@]}"
"$elastic" search -m "$out" --evaluation "$texts/evaluation.txt" --latency 0.8,0.9 "${threads[@]}"
"$elastic" generate -m "$out" --budget 0.8 --chat -p "Write a haiku about elastic networks." -n 48 "${threads[@]}"
