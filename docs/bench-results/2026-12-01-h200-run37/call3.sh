#!/bin/bash
# Run 37 call 3: the wgmma prefill body software-pipelined (P·V of tile j under the softmax of
# tile j + 1; call 2 had the products and the softmax in sequence, and ran at kMma's rate),
# against the twin and the other bodies (kernels_gpu_test's prefill tests), then the prefill
# operator side by side (mma, wgmma) and
# beside PyTorch SDPA's backends.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT
OUT=$PWD/out3
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
(which ncu; nvidia-smi --query-gpu=name --format=csv) > "$OUT/tools.txt" 2>&1
step prefill-tests 150 $B/kernels_gpu_test --gtest_filter='KernelsGpu.Prefill*'
step op 150 $B/dsinfer-attention-bench --contexts= --prefill_algos mma,wgmma,mma,wgmma \
  --prefill_lengths 4096,32768,65536 --json_out "$OUT/op.json"
step sdpa 150 python3 scripts/bench_sdpa_prefill.py --lengths 4096,32768,65536 \
  --out "$OUT/sdpa_prefill.json" --ours "$OUT/op.json"
cd "$OUT/.." && tar czf "$FINAL/call3.tgz" out3
cat "$OUT/rcs.txt"
grep -E "OK|FAILED|rror" "$OUT/prefill-tests.log" | head -20
grep -E "mma|wgmma|cuBLAS" "$OUT/op.log" | head -30
tail -12 "$OUT/sdpa.log"
