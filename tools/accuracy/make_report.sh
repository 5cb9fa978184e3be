#!/usr/bin/env bash
# Makes docs/accuracy.md: Double Sparsity accuracy of the demo model on the CPU engine
# (issue 10). Calibrates label channels (qk, q, k) on held-out text with dsinfer-calibrate,
# then runs dsinfer-eval for held-out perplexity and key-value retrieval, dense vs Double
# Sparsity, and renders the tables (render_report.py).
#
#   bash tools/accuracy/make_report.sh [BUILD_DIR]      (default build-acc; ~25 CPU-minutes)
#
# The CPU engine's dense prefill is the cost (a 4K prefill takes ~80 CPU-seconds here), so
# the grid is sized to fit a shared 2-core machine: the full matrix (budgets 1/2..1/32, fp16
# and 4-bit labels, sum and max aggregation) at 2K for perplexity and retrieval, slices at 1K
# and 4K and for the q and k statistics, most important first (a job whose JSON exists is
# kept: FORCE=1 reruns, ONLY='name|name' picks jobs).
# Every job is a separate dsinfer-eval process writing JSON into tools/accuracy/results/;
# JOBS=N runs N at once (default 2). Double Sparsity runs use the explicit double_sparse
# mode with the engine defaults sink 4, dense_layers 2 and recent 64 (plus one slice with
# recent 16), so `auto`'s dense_below threshold does not apply.
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${1:-build-acc}
EVAL=$B/bin/dsinfer-eval
CAL=$B/bin/dsinfer-calibrate
R=tools/accuracy/results
D=${WORK:-/tmp/dsinfer-accuracy}
MODEL=models/demo
mkdir -p "$R" "$D"
[ -x "$EVAL" ] && [ -x "$CAL" ] || { echo "build dsinfer-eval and dsinfer-calibrate in $B first" >&2; exit 1; }

/usr/bin/python3 tools/accuracy/prepare_data.py --out "$D"
if [ ! -f "$R/channels.json" ] || [ "${RECALIBRATE:-0}" = 1 ]; then
  /usr/bin/time -f "calibrate: %e s wall, %U s user" \
    "$CAL" --model $MODEL --text-file "$D/calib.txt" --out "$R/channels.json" \
    --stat qk,q,k --block 1024 --max-blocks 16
fi

C="--model $MODEL --channels $R/channels.json --sink 4 --dense-layers 2 --json"
RET="--retrieval-file tests/data/eval/retrieval.jsonl"
TXT="--text-file $D/eval.txt --windows 1"
ALL="--ratios 0.5,0.25,0.125,0.0625,0.03125"
# name | arguments
cat > "$D/jobs.txt" <<JOBS
ret-2k-qk-full|$C $RET --lengths 2048 --per-length 6 --stat qk $ALL --bits 16,4 --aggs sum,max --recent 64
ppl-2k-qk-full|$C $TXT --window 2048 --prefill 1536 --stat qk $ALL --bits 16,4 --aggs sum,max --recent 64
ret-4k-qk|$C $RET --lengths 4096 --per-length 2 --stat qk --ratios 0.125,0.0625,0.03125 --bits 16 --aggs sum --recent 64
ppl-4k-qk|$C $TXT --window 4096 --prefill 3840 --stat qk --ratios 0.125,0.0625,0.03125 --bits 16 --aggs sum --recent 64
ppl-2k-q|$C $TXT --window 2048 --prefill 1536 --stat q --ratios 0.125,0.0625,0.03125 --bits 16 --aggs sum --recent 64
ppl-2k-k|$C $TXT --window 2048 --prefill 1536 --stat k --ratios 0.125,0.0625,0.03125 --bits 16 --aggs sum --recent 64
ret-1k-qk-recent16|$C $RET --lengths 1024 --per-length 10 --stat qk --ratios 0.125,0.0625,0.03125 --bits 16 --aggs sum --recent 16
ppl-2k-qk-recent16|$C $TXT --window 2048 --prefill 1536 --stat qk --ratios 0.0625,0.03125 --bits 16 --aggs sum --recent 16
ppl-1k-qk|$C $TXT --window 1024 --prefill 512 --stat qk --ratios 0.125,0.0625 --bits 16,4 --aggs sum --recent 64
ret-1k-qk|$C $RET --lengths 1024 --per-length 10 --stat qk --ratios 0.25,0.125,0.0625 --bits 16 --aggs sum --recent 64
ret-1k-q|$C $RET --lengths 1024 --per-length 8 --stat q --ratios 0.25,0.125 --bits 16 --aggs sum --recent 64
ret-1k-k|$C $RET --lengths 1024 --per-length 8 --stat k --ratios 0.25,0.125 --bits 16 --aggs sum --recent 64
JOBS
run_job() {
  local name=${1%%|*} args=${1#*|}
  local start=$SECONDS
  if /usr/bin/time -o "$R/$name.time" -f "%e %U" "$EVAL" $args > "$R/$name.json.tmp" 2> "$R/$name.err"; then
    mv "$R/$name.json.tmp" "$R/$name.json"
    [ -s "$R/$name.err" ] || rm -f "$R/$name.err"
    echo "$name: done in $((SECONDS - start)) s ($(cat "$R/$name.time") wall/user s)"
  else
    echo "$name: FAILED ($(tail -1 "$R/$name.err"))"
  fi
}
export -f run_job
export EVAL R
ONLY=${ONLY:-}
grep -v '^$' "$D/jobs.txt" | { if [ -n "$ONLY" ]; then grep -E "^($ONLY)\|"; else cat; fi; } |
  while IFS= read -r line; do
    n=${line%%|*}
    if [ -f "$R/$n.json" ] && [ "${FORCE:-0}" != 1 ]; then echo "$n: kept" >&2; continue; fi
    printf '%s\0' "$line"
  done | xargs -0 -r -P "${JOBS:-2}" -I{} bash -c 'run_job "$@"' _ {}
/usr/bin/python3 tools/accuracy/render_report.py --results "$R" --out docs/accuracy.md
