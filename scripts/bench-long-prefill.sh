#!/usr/bin/env bash
# Long-prompt prefill through dsinfer-run on the GPU host (issue 8: "256K prefill time"):
#
#   bash scripts/bench-long-prefill.sh BIN_DIR OUT_DIR
#
# Makes a random-weight Llama-3.1-8B-shaped checkpoint (scripts/make_random_checkpoint.py,
# torch + transformers) with a random channel config and a random prompt, then times
# dsinfer-run --device cuda --json (its "timing" object: prefill and decode seconds) for:
#   CONTEXT_SHORT (default 32768): kv-mode gpu (chunked), offload chunked, offload layer-major
#   CONTEXT_LONG  (default 262144): offload layer-major
# Each run generates NEW_TOKENS (default 16) tokens after the prompt, greedy, ignoring EOS.
# RUNS (comma list of the four run names below) picks a subset. One JSON line per run in OUT_DIR/long_prefill.jsonl; each run's output in OUT_DIR/*.json.
set -uo pipefail
BIN=${1:?usage: bench-long-prefill.sh BIN_DIR OUT_DIR}
OUT=${2:?usage: bench-long-prefill.sh BIN_DIR OUT_DIR}
SHORT=${CONTEXT_SHORT:-32768}
LONG=${CONTEXT_LONG:-262144}
NEW=${NEW_TOKENS:-16}
MODEL=${MODEL_DIR:-/tmp/dsinfer-llama3-8b-random}
mkdir -p "$OUT"
if [ ! -f "$MODEL/config.json" ]; then
  t0=$(date +%s)
  python3 scripts/make_random_checkpoint.py --shape llama3-8b --out "$MODEL" \
    --prompt-tokens "$LONG" || exit 1
  echo "checkpoint made in $(( $(date +%s) - t0 )) s"
fi
# The first n ids of the long prompt.
head_ids() { python3 -c 'import sys; ids=open(sys.argv[1]).read().split(","); print(",".join(ids[:int(sys.argv[2])]))' "$MODEL/prompt_ids.txt" "$1" > "$2"; }
status=0
run() {  # name context kv_mode layer_major_from
  local name=$1 n=$2 mode=$3 lm=$4 ids="$OUT/ids_$2.txt"
  [ -f "$ids" ] || head_ids "$n" "$ids"
  local t0=$(date +%s.%N)
  "$BIN/dsinfer-run" --device cuda --model "$MODEL" --prompt_ids_file "$ids" --json \
    --max_new_tokens "$NEW" --ignore_eos --kv_mode "$mode" --layer_major_from "$lm" \
    --max_context $((n + NEW + 16)) --kv_pool_tokens $((n + NEW + 64)) \
    > "$OUT/$name.json" 2> "$OUT/$name.err"
  local rc=$? t1=$(date +%s.%N)
  python3 - "$OUT/$name.json" "$name" "$n" "$mode" "$lm" "$rc" "$t0" "$t1" >> "$OUT/long_prefill.jsonl" <<'PY'
import json, sys
path, name, n, mode, lm, rc, t0, t1 = sys.argv[1:]
row = dict(name=name, prompt_tokens=int(n), kv_mode=mode, layer_major_from=int(lm), rc=int(rc),
           process_seconds=round(float(t1) - float(t0), 2))
try:
    row.update(json.load(open(path))["timing"])
except Exception as e:
    row["error"] = str(e)
print(json.dumps(row))
PY
  tail -1 "$OUT/long_prefill.jsonl"
  [ $rc = 0 ] || { status=1; tail -5 "$OUT/$name.err"; }
}
RUNS=",${RUNS:-short-gpu-chunked,short-offload-chunked,short-offload-layer-major,long-offload-layer-major},"
want() { [[ "$RUNS" == *",$1,"* ]]; }
want short-gpu-chunked && run short-gpu-chunked "$SHORT" gpu 0
want short-offload-chunked && run short-offload-chunked "$SHORT" offload 0
want short-offload-layer-major && run short-offload-layer-major "$SHORT" offload 1
want long-offload-layer-major && run long-offload-layer-major "$LONG" offload 1
exit $status
