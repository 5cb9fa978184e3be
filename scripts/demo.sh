#!/usr/bin/env bash
# The main job: installs what it needs, builds dsinfer, and generates text from the embedded
# demo model through the offline runner.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)" --target dsinfer-run demo_model
./build/bin/dsinfer-run --model build/models/demo --prompt-ids 1,450,4996,17354,1701,29916 \
  --max-new-tokens 24 --json
