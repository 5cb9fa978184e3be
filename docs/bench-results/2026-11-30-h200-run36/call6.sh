#!/bin/bash
# Run 36 call 6 (the final code, `1f644a4`: the benchmarks' list flags through one parser): the
# four benchmarks that parse integer lists, each on a short configuration, and a mistyped list
# item (expected: INVALID_ARGUMENT naming the flag, exit status 1).
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT
OUT=$PWD/out6
mkdir -p "$OUT"
rm -rf .gpu-bundle/bin .gpu-bundle/lib
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
: > "$OUT/rcs.txt"
step() {  # name timeout command...
  local name=$1 t=$2; shift 2
  timeout "$t" "$@" 2>&1 | tee "$OUT/$name.log" > /dev/null
  echo "$name ${PIPESTATUS[0]}" >> "$OUT/rcs.txt"
}
step attn-prefill 40 $B/dsinfer-attention-bench --contexts= --prefill_algos mma \
  --prefill_lengths 4096 --json_out "$OUT/attn.json"
step attn-decode 30 $B/dsinfer-attention-bench --prefill=false --batches 1 --contexts 4096 \
  --dense_waves= --iters 3 --json_out "$OUT/attn_decode.json"
step sampling 40 $B/dsinfer-sampling-bench --rows 1,8 --vocabs 32768 --json_out "$OUT/sampling.json"
step bench 50 $B/dsinfer-bench --models llama3-8b --batches 1 --contexts 4096 --graphs=false \
  --dependent_launch on --linear_algos auto --iters 3 --json_out "$OUT/bench.json"
step bad-attn 20 $B/dsinfer-attention-bench --contexts 4096,4k
step bad-bench 20 $B/dsinfer-bench --batches 1,x
step bad-offload 20 $B/dsinfer-offload-bench --batches ""
cd "$OUT/.." && tar czf "$FINAL/call6.tgz" out6
cat "$OUT/rcs.txt"
tail -3 "$OUT"/bad-*.log
grep -E " mma " "$OUT/attn-prefill.log"; tail -4 "$OUT/attn-decode.log" | cut -c1-160
tail -4 "$OUT/sampling.log" | cut -c1-160; grep -A2 "^prefill" "$OUT/bench.log"
