#!/usr/bin/env bash
# The main job: installs what it needs, builds dsinfer, starts dsinfer-server on the embedded
# demo model (models/demo), generates text through the dsinfer CLI (streamed to stdout), and
# stops the server.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)" --target dsinfer-server dsinfer

port_file=$(mktemp)
rm -f "$port_file"
./build/bin/dsinfer-server --model models/demo --listen 127.0.0.1:0 --port-file "$port_file" \
  --log-level warn &
server_pid=$!
trap 'kill -TERM "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; rm -f "$port_file"' EXIT
for _ in $(seq 600); do
  [ -s "$port_file" ] && break
  kill -0 "$server_pid" 2>/dev/null || { echo "dsinfer-server exited during start-up" >&2; exit 1; }
  sleep 0.1
done
[ -s "$port_file" ] || { echo "dsinfer-server did not start within 60 s" >&2; exit 1; }
server="127.0.0.1:$(cat "$port_file")"
for _ in $(seq 600); do
  ./build/bin/dsinfer health --server "$server" >/dev/null 2>&1 && break
  sleep 0.1
done
./build/bin/dsinfer info --server "$server"
echo "--- dsinfer generate ---"
./build/bin/dsinfer generate --server "$server" \
  --prompt "The Debian package manager is used to" \
  --max-new-tokens 64 --temperature 0.8 --top-p 0.95 --seed 7
echo
