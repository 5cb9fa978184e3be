#!/usr/bin/env bash
# Installs every build and test dependency of dsinfer from the distribution's packages.
# Used by the README, .ci/run and deploy/Dockerfile alike, so there is one list to keep.
# Works on Debian 12 and on Ubuntu 22.04/24.04 (the NVIDIA CUDA images). Run as root.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
packages=(
  build-essential cmake ninja-build pkg-config git ca-certificates xz-utils
  libgrpc++-dev libgrpc-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libspdlog-dev libfmt-dev libgtest-dev libgmock-dev
  nlohmann-json3-dev libopenblas-dev libpcre2-dev
  python3 python3-numpy python3-grpcio python3-grpc-tools python3-yaml
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
echo "install-deps: all ${#packages[@]} packages present"
