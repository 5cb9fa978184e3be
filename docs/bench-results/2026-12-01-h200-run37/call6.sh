#!/bin/bash
# Run 37 call 6 (call 5's binaries, kWgmma the default): the 32K and 256K prompts through
# dsinfer-run (random-weight Llama-3.1-8B checkpoint, offload mode, layer-major prefill:
# scripts/bench-long-prefill.sh), and the prefill operator at 128K beside kMma.
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
RUNS=short-offload-layer-major,long-offload-layer-major step long-prefill 300 \
  bash scripts/bench-long-prefill.sh "$B" "$OUT/long_prefill"
rm -f "$OUT"/long_prefill/ids_*.txt  # the prompts' id lists (1.8 MB)
step op128k 120 $B/dsinfer-attention-bench --contexts= --prefill_algos wgmma,mma \
  --prefill_lengths 131072 --json_out "$OUT/op128k.json"
cd "$OUT/.." && tar czf "$FINAL/call6.tgz" out6
cat "$OUT/rcs.txt"
cat "$OUT/long_prefill/long_prefill.jsonl" 2>/dev/null
tail -5 "$OUT/long-prefill.log"
grep -E "mma|cuBLAS" "$OUT/op128k.log"
