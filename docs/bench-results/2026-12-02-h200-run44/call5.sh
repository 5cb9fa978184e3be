#!/bin/bash
# Run 44 call 5: dsinfer-bench after bench_main.cc was split into files by concept (moves only),
# beside the binary built from the commit before the split (dsinfer-bench-orig), alternated, at
# one small configuration with dense and Double Sparsity decode, graphs, mixed sequences and
# prefill: the same JSON keys and figures within noise.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT
OUT=$PWD/out5
mkdir -p "$OUT"
rm -rf .gpu-bundle/bin .gpu-bundle/lib
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
nvidia-smi --query-gpu=name,memory.total --format=csv > "$OUT/gpu.txt" 2>&1
: > "$OUT/rcs.txt"
ARGS="--models llama3-8b --batches 1,8 --contexts 4096,32768 --iters 5 \
  --attention dense,double_sparse --ds_dense_sequences 1 --dependent_launch on \
  --linear_algos auto"
for pass in a b; do
  for bin in dsinfer-bench-orig dsinfer-bench; do
    t0=$SECONDS
    timeout 120 $B/$bin $ARGS --json_out "$OUT/${bin}_$pass.json" 2>&1 \
      | tee "$OUT/${bin}_$pass.log" > /dev/null
    echo "${bin}_$pass ${PIPESTATUS[0]} $((SECONDS - t0))s" >> "$OUT/rcs.txt"
  done
done
cd "$OUT/.." && tar czf "$FINAL/call5.tgz" out5
cat "$OUT/rcs.txt" "$OUT/gpu.txt"
