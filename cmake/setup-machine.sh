#!/usr/bin/env bash
# Installs what a fresh Debian (bookworm) machine is missing to build and test
# Elastic: CMake, g++, make, Google Highway (the host kernels' SIMD), doctest,
# Google Benchmark, OpenBLAS (the host GEMM benchmark's peer), CLI11 and
# nlohmann/json, PCRE2 and pkg-config for the tokenizers, COIN-OR CBC and
# Eigen for the search's exact block choice and closed-form linear block
# fits, clang with its runtime libraries for the libFuzzer harnesses, the
# Python documentation (the texts conversion calibrates and is evaluated on,
# cmake/setup-texts.sh); then the Python environment of the reference
# tests and the default model (cmake/setup-python.sh).
# Packages already installed are skipped; the package lists are refreshed only
# when they are empty or an install fails for want of them. Safe to run again.
#
#   bash cmake/setup-machine.sh
set -euo pipefail

packages=(
  cmake
  g++
  make
  libhwy-dev
  libopenblas-dev
  doctest-dev
  libbenchmark-dev
  libcli11-dev
  nlohmann-json3-dev
  libpcre2-dev
  pkg-config
  coinor-libcbc-dev
  clang
  libclang-rt-dev
  libeigen3-dev
  python3-doc
)

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
  echo "setup-machine: no dpkg/apt-get here; install these yourself: ${packages[*]}" >&2
  exit 0
fi

missing=()
for package in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
  if [[ "$status" != "install ok installed" ]]; then
    missing+=("$package")
  fi
done
if ((${#missing[@]} == 0)); then
  bash "$(dirname "${BASH_SOURCE[0]}")/setup-texts.sh"
  exec bash "$(dirname "${BASH_SOURCE[0]}")/setup-python.sh"
fi

sudo=()
if [[ "$(id -u)" -ne 0 ]]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "setup-machine: missing ${missing[*]}, and not root without sudo to install them" >&2
    exit 1
  fi
  sudo=(sudo)
fi
apt_get=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -y -o Dpkg::Use-Pty=0)

echo "setup-machine: installing ${missing[*]}"
lists_present() {
  compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null
}
install_missing() {
  "${apt_get[@]}" install --no-install-recommends "${missing[@]}" >/dev/null
}
if ! lists_present; then
  "${apt_get[@]}" update >/dev/null
  install_missing
elif ! install_missing 2>/dev/null; then
  # Stale lists (a package or version no longer on the mirror): refresh once.
  "${apt_get[@]}" update >/dev/null
  install_missing
fi

bash "$(dirname "${BASH_SOURCE[0]}")/setup-texts.sh"
exec bash "$(dirname "${BASH_SOURCE[0]}")/setup-python.sh"
