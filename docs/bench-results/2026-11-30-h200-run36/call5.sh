#!/bin/bash
# Run 36 call 5 (the final code, every binary rebuilt: call 3's kernel with K/V tiles by bulk
# copies, call 4's experiment, now the only form): every GPU test and the server smokes; the
# prefill operator beside PyTorch SDPA's backends; the long-prompt prefill through dsinfer-run
# (32K and 256K, offload mode, layer-major), bounded by the call's time left (the device
# budget's end is near).
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT
OUT=$PWD/out5
mkdir -p "$OUT"
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
: > "$OUT/rcs.txt"
step() {  # name timeout command...
  local name=$1 t=$2; shift 2
  timeout "$t" "$@" 2>&1 | tee "$OUT/$name.log" > /dev/null
  echo "$name ${PIPESTATUS[0]}" >> "$OUT/rcs.txt"
}
# gpu-check.sh unpacks pack.txz.
STEPS=tests,smoke TOTAL_BUDGET=280 OUT=$OUT/check timeout 300 bash scripts/gpu-check.sh run \
  > "$OUT/gpu-check.log" 2>&1
echo "gpu-check $?" >> "$OUT/rcs.txt"
step op 90 $B/dsinfer-attention-bench --contexts= --prefill_algos mma \
  --prefill_lengths 4096,32768,65536 --json_out "$OUT/op.json"
step sdpa 120 python3 scripts/bench_sdpa_prefill.py --lengths 4096,32768,65536 \
  --out "$OUT/sdpa_prefill.json" --ours "$OUT/op.json"
left=$((470 - SECONDS))
echo "long prefill: ${left} s left" >> "$OUT/rcs.txt"
if [ "$left" -gt 175 ]; then  # checkpoint ~35 s, 32K ~6 s, 256K ~125 s
  RUNS=short-offload-layer-major,long-offload-layer-major step long-prefill "$left" \
    bash scripts/bench-long-prefill.sh "$B" "$OUT/long_prefill"
fi
rm -f "$OUT"/long_prefill/ids_*.txt  # the prompts' id lists (1.8 MB)
cd "$OUT/.." && tar czf "$FINAL/call5.tgz" out5
cat "$OUT/rcs.txt"
grep -E "rc=|passed|FAILED" "$OUT/gpu-check.log" | tail -14
grep -h "AnyScale" "$OUT"/check/*.log | head -4
tail -8 "$OUT/sdpa.log"
cat "$OUT/long_prefill/long_prefill.jsonl" 2>/dev/null
tail -5 "$OUT/long-prefill.log"
