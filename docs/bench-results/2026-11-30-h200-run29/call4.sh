#!/bin/bash
# Run 29 call 4 (call 2's build = the final code but comments; gpu-check.sh's per-test limit
# now 120 s): every GPU test; end to end with the split chain on and off (--ds_split_chain) at
# Llama-3-8B batch 2 (16 pairs: kAuto's cluster top-k now 8 blocks at 256K whole, 16 a half),
# and Llama-2-7B batch 1 at 64K (32 pairs: the cluster top-k now) beside dsbench-head.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out4; mkdir -p $OUT
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
t0=$(date +%s); stamp() { echo "$1 rc $2 at $(( $(date +%s) - t0 )) s" >> $OUT/rcs.txt; }
STEPS=tests TOTAL_BUDGET=290 OUT=$OUT/check bash scripts/gpu-check.sh run > $OUT/tests.log 2>&1
stamp tests $?
tar xJf .gpu-bundle/extra.txz -C .gpu-bundle
e2e="--attention double_sparse --ds_ratio 16 --label_bits 16 --iters 10 --linear_algos auto --dependent_launch on --long_prefill_layers 1"
for rep in 1 2; do
  for ctx in 262144 131072 65536; do
    timeout 60 $B/dsinfer-bench $e2e --models llama3-8b --batches 2 --contexts $ctx --ds_split_chain \
      --json_out $OUT/split-b2-$ctx-$rep.json > $OUT/split-b2-$ctx-$rep.log 2>&1
    stamp split-b2-$ctx-$rep $?
  done
  for b in dsbench-head dsinfer-bench; do
    timeout 60 $B/$b $e2e --models llama2-7b --batches 1 --contexts 65536 \
      --json_out $OUT/l2-b1-65536-$b-$rep.json > $OUT/l2-b1-65536-$b-$rep.log 2>&1
    stamp l2-b1-65536-$b-$rep $?
  done
done
cd $OUT/.. && tar czf $FINAL/call4.tgz out4
