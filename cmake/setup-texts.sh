#!/usr/bin/env bash
# Writes the three English texts `elastic convert` and the budget search
# read, in .data/text at the top of the source tree, from the Python
# documentation Debian ships (python3-doc, under the PSF licence): the
# reStructuredText sources of
#
#   calibration.txt  the tutorial     importance, block scores, linear fits
#   validation.txt   the HOWTOs       choices made while converting (ranking)
#   evaluation.txt   the FAQ          the perplexities reported, and nothing else
#
# Three disjoint texts, so nothing is evaluated on a text it was calibrated
# or chosen on. Safe to run again; run by cmake/setup-machine.sh.
#
#   bash cmake/setup-texts.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

sources=$(compgen -G '/usr/share/doc/python3*/html/_sources' | sort -V | tail -n 1 || true)
if [[ -z "$sources" ]]; then
  echo "setup-texts: no Python documentation sources under /usr/share/doc (Debian package python3-doc)" >&2
  exit 1
fi
mkdir -p .data/text
write() {
  local name=$1 folder=$2
  local files=("$sources/$folder"/*.rst.txt)
  cat "${files[@]}" > ".data/text/$name.tmp"
  mv ".data/text/$name.tmp" ".data/text/$name"
}
write calibration.txt tutorial
write validation.txt howto
write evaluation.txt faq
echo "setup-texts: .data/text/{calibration,validation,evaluation}.txt from $sources"
