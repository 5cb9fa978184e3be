#!/usr/bin/env bash
# Double Sparsity accuracy of the demo model on the CUDA engine (issue 10): the larger-sample
# version of make_report.sh (which runs on the CPU engine), plus the levers of the 1/8
# perplexity target as extra dimensions. Run from the repository root on the GPU host:
#
#   bash tools/accuracy/gpu_report.sh BIN_DIR OUT_DIR        (LD_LIBRARY_PATH is the caller's)
#
# BIN_DIR holds dsinfer-eval and dsinfer-calibrate of a CUDA build. Every job is one
# dsinfer-eval process writing JSON to OUT_DIR/NAME.json (+ .time: wall and user seconds,
# .err on failure); JOBS=N run at once on the one GPU (default 8: one process's decode step
# leaves the GPU mostly idle, so processes overlap; measured on an H200, 8 processes decode
# ~1500 steps/s together, ~5 ms a step each, and the whole script is ~470K decode steps:
# ~5-6 minutes). Then
#   /usr/bin/python3 tools/accuracy/render_gpu_report.py --gpu OUT_DIR --out docs/accuracy.md
# renders the page (with the CPU run of tools/accuracy/results/ as the cross-check section).
# DEVICE=cpu runs the same jobs on the CPU engine (slow: only with ONLY=... for a dry run);
# ONLY='name|name' picks jobs; JOB_TIMEOUT (default 300 s) bounds each job; PER_LENGTH,
# WINDOWS, CAL_BLOCKS_GPU and CAL_BLOCKS_MORE shrink the samples (dry runs only).
#
# Sizes: perplexity over 4 windows per context at 1K, 2K, 4K and 8K, the last 512 positions
# of each scored as decode rows (2048 scored positions per context and config); retrieval 60
# prompts per length class (the committed 20 + 40 made by expand_retrieval.py from their
# pieces); channels calibrated on the GPU twice (the committed recipe, 16K tokens, and all
# ~90K calibration tokens in 4K blocks), the committed channel file for everything else so
# CPU and GPU see the same channels. Levers of the 1/8 target at 1K and 2K: dense layers
# (2 = default, 3, 4), kept recent tokens (64 = default, 32, 16), label channels/bits at
# equal or lower label bytes (r 16 fp16 = default, r 32 4-bit, r 64 4-bit, r 32 fp16),
# calibration data, the channel statistic, GQA aggregation. Two cross-check jobs repeat the
# CPU run's 2K jobs exactly (same window, same 6 prompts) so the engines can be compared
# config by config.
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${1:?usage: gpu_report.sh BIN_DIR OUT_DIR}
O=${2:?usage: gpu_report.sh BIN_DIR OUT_DIR}
DEVICE=${DEVICE:-cuda}
EVAL=$B/dsinfer-eval
CAL=$B/dsinfer-calibrate
MODEL=models/demo
D=$O/data
mkdir -p "$O" "$D"
[ -x "$EVAL" ] && [ -x "$CAL" ] || { echo "no dsinfer-eval / dsinfer-calibrate in $B" >&2; exit 1; }
T0=$SECONDS

python3 tools/accuracy/prepare_data.py --out "$D"
python3 tools/accuracy/expand_retrieval.py --out "$D/retrieval60.jsonl" --per-length 60
CH=tools/accuracy/results/channels.json  # = models/demo/double_sparsity_channels.json
for spec in "channels-gpu|--block 1024 --max-blocks ${CAL_BLOCKS_GPU:-16}" \
            "channels-more|--block 4096 --max-blocks ${CAL_BLOCKS_MORE:-0}"; do
  name=${spec%%|*}
  if [ ! -f "$O/$name.json" ] || [ "${FORCE:-0}" = 1 ]; then
    /usr/bin/time -o "$O/$name.time" -f "%e %U" "$CAL" --model $MODEL --device "$DEVICE" \
      --text-file "$D/calib.txt" --out "$O/$name.json" --stat qk,q,k ${spec#*|} 2> "$O/$name.log" ||
      { echo "$name: FAILED ($(tail -1 "$O/$name.log"))"; }
    echo "$name: $(tail -1 "$O/$name.log") ($(cat "$O/$name.time" 2> /dev/null) wall/user s)"
  fi
done

C="--model $MODEL --device $DEVICE --sink 4 --json"
ALL="--ratios 0.5,0.25,0.125,0.0625,0.03125"
LEV="--ratios 0.25,0.125,0.0625 --bits 16 --aggs sum"
RET="--retrieval-file $D/retrieval60.jsonl --per-length ${PER_LENGTH:-60}"
# Perplexity windows: 4 per context, the last 512 positions scored.
W=${WINDOWS:-4}
P1K="--text-file $D/eval.txt --window 1024 --prefill 512 --windows $W"
P2K="--text-file $D/eval.txt --window 2048 --prefill 1536 --windows $W"
P4K="--text-file $D/eval.txt --window 4096 --prefill 3584 --windows $W"
P8K="--text-file $D/eval.txt --window 8192 --prefill 7680 --windows $W"
DEF="--channels $CH --stat qk --recent 64 --dense-layers 2"  # the engine defaults
# name | arguments. The longest jobs first (so none is left running alone at the end); the
# full perplexity matrices are split by label bits and aggregation into jobs of 6 configs
# (render_gpu_report.py merges ppl-CTX-full-*), which keeps every job under ~2.5 minutes.
cat > "$O/jobs.txt" <<JOBS
ret-2k-full|$C $RET --lengths 2048 $DEF $ALL --bits 16,4 --aggs sum,max
ret-1k-full|$C $RET --lengths 1024 $DEF $ALL --bits 16,4 --aggs sum,max
ret-4k-full|$C $RET --lengths 4096 $DEF $ALL --bits 16,4 --aggs sum,max
ppl-8k|$C $P8K $DEF $ALL --bits 16,4 --aggs sum
ret-8k|$C $RET --lengths 8192 $DEF $ALL --bits 16,4 --aggs sum
$(for t in 2k 1k 4k; do for b in 16 4; do for g in sum max; do p=P${t^^}
  echo "ppl-$t-full-$b$g|$C ${!p} $DEF $ALL --bits $b --aggs $g"; done; done; done)
xc-ppl-2k|$C --text-file $D/eval.txt --window 2048 --prefill 1536 --windows 1 $DEF $ALL --bits 16,4 --aggs sum,max
xc-ret-2k|$C --retrieval-file tests/data/eval/retrieval.jsonl --lengths 2048 --per-length 6 $DEF $ALL --bits 16,4 --aggs sum,max
ppl-2k-dl3|$C $P2K $DEF --dense-layers 3 $LEV
ppl-1k-dl3|$C $P1K $DEF --dense-layers 3 $LEV
ppl-2k-dl4|$C $P2K $DEF --dense-layers 4 $LEV
ppl-2k-recent32|$C $P2K $DEF --recent 32 $LEV
ppl-1k-recent32|$C $P1K $DEF --recent 32 $LEV
ppl-2k-dl3-recent32|$C $P2K $DEF --dense-layers 3 --recent 32 $LEV
ppl-2k-r64b4|$C $P2K $DEF --r 64 --ratios 0.25,0.125,0.0625 --bits 4 --aggs sum
ppl-1k-r64b4|$C $P1K $DEF --r 64 --ratios 0.25,0.125,0.0625 --bits 4 --aggs sum
ppl-2k-calmore|$C $P2K $DEF --channels $O/channels-more.json $LEV
ppl-1k-calmore|$C $P1K $DEF --channels $O/channels-more.json $LEV
ppl-2k-q|$C $P2K $DEF --stat q $LEV
ppl-2k-k|$C $P2K $DEF --stat k $LEV
ret-lever-dl3|$C $RET --lengths 1024,2048 $DEF --dense-layers 3 --ratios 0.125,0.0625,0.03125 --bits 16 --aggs sum
ret-lever-recent16|$C $RET --lengths 1024,2048 $DEF --recent 16 --ratios 0.125,0.0625,0.03125 --bits 16 --aggs sum
ret-lever-r64b4|$C $RET --lengths 1024,2048 $DEF --r 64 --ratios 0.125,0.0625,0.03125 --bits 4 --aggs sum
ret-lever-calmore|$C $RET --lengths 1024,2048 $DEF --channels $O/channels-more.json --ratios 0.125,0.0625,0.03125 --bits 16 --aggs sum
JOBS
run_job() {
  local name=${1%%|*} args=${1#*|}
  local start=$SECONDS
  if timeout "${JOB_TIMEOUT:-300}" /usr/bin/time -o "$O/$name.time" -f "%e %U" "$EVAL" $args \
      > "$O/$name.json.tmp" 2> "$O/$name.err"; then
    mv "$O/$name.json.tmp" "$O/$name.json"
    [ -s "$O/$name.err" ] || rm -f "$O/$name.err"
    echo "$name: done in $((SECONDS - start)) s"
  else
    rm -f "$O/$name.json.tmp"
    echo "$name: FAILED after $((SECONDS - start)) s ($(tail -1 "$O/$name.err"))"
  fi
}
export -f run_job
export EVAL O
ONLY=${ONLY:-}
grep -v '^$' "$O/jobs.txt" | { if [ -n "$ONLY" ]; then grep -E "^($ONLY)\|"; else cat; fi; } |
  while IFS= read -r line; do
    n=${line%%|*}
    if [ -f "$O/$n.json" ] && [ "${FORCE:-0}" != 1 ]; then echo "$n: kept" >&2; continue; fi
    printf '%s\0' "$line"
  done | xargs -0 -r -P "${JOBS:-8}" -I{} bash -c 'run_job "$@"' _ {}
echo "gpu_report: $((SECONDS - T0)) s wall in all; render with:"
echo "  python3 tools/accuracy/render_gpu_report.py --gpu $O --out docs/accuracy.md"
