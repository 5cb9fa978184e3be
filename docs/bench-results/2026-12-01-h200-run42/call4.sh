#!/bin/bash
# Run 42 call 4: issue 7's operator table with the final code (`813161e`; the chain's kernels
# as runs 35-41 left them), every shape the issue lists — Llama-2 heads and Llama-3 heads,
# batch 1 / 8 / 32, 4K-256K, dense and all six Double Sparsity variants — and PyTorch SDPA
# at the same shapes in the same call (run 34's table was the last whole one).
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT
OUT=$PWD/out4
mkdir -p "$OUT"
rm -rf .gpu-bundle/bin .gpu-bundle/lib
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem --format=csv \
  > "$OUT/gpu.txt" 2>&1
OPS="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided \
  --ds_topk_algos auto --ds_attention_algos pipelined --ds_other_waves 4 --iters 10 \
  --max_gib 100"
: > "$OUT/rcs.txt"
timeout 250 $B/dsinfer-attention-bench $OPS --models llama2-7b \
  --json_out "$OUT/op_l2.json" 2>&1 | tee "$OUT/op_l2.log" > /dev/null
echo "op_l2 ${PIPESTATUS[0]}" >> "$OUT/rcs.txt"
timeout 200 $B/dsinfer-attention-bench $OPS --models llama3-8b \
  --json_out "$OUT/op_l3.json" 2>&1 | tee "$OUT/op_l3.log" > /dev/null
echo "op_l3 ${PIPESTATUS[0]}" >> "$OUT/rcs.txt"
# One JSON for the SDPA script's merged table (the two runs' results in turn).
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
parts = [json.load(open(f"{out}/{n}.json")) for n in ("op_l2", "op_l3")]
merged = dict(parts[0])
merged["results"] = parts[0]["results"] + parts[1]["results"]
json.dump(merged, open(f"{out}/attention_bench.json", "w"), indent=1)
PY
echo "merge $?" >> "$OUT/rcs.txt"
timeout 120 env PYTHONUNBUFFERED=1 python3 scripts/bench_sdpa_decode.py --max-gib 100 \
  --out "$OUT/sdpa_decode.json" --ours "$OUT/attention_bench.json" 2>&1 | tee "$OUT/sdpa.log" \
  > /dev/null
echo "sdpa ${PIPESTATUS[0]}" >> "$OUT/rcs.txt"
cd "$OUT/.." && tar czf "$FINAL/call4.tgz" out4
cat "$OUT/rcs.txt"
