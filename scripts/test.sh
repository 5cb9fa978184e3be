#!/usr/bin/env bash
# Builds dsinfer and runs every test (the README's test command; .ci/run calls it).
# Installs the Debian packages it needs first. GPU tests are skipped where no GPU is present.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"
ctest --test-dir build --output-on-failure -j"$(nproc)" --timeout 900
