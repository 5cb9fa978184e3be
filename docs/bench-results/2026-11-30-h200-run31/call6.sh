#!/bin/bash
# Run 31 call 6: what a graph capture costs (dsinfer-bench's new "capturing step" figure: the
# first graph step's wall time, synchronized, beside a replayed step), Llama-3-8B Double
# Sparsity batch 3 at 256K and batch 8 at 32K, dense batch 8 at 32K; two runs each.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out6; mkdir -p $OUT
rm -rf .gpu-bundle/bin .gpu-bundle/lib; tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
tar xJf .gpu-bundle/extra.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
t0=$(date +%s); stamp() { echo "$1 rc $2 at $(( $(date +%s) - t0 )) s" >> $OUT/rcs.txt; }
e2e() {  # name attention batch context
  timeout 120 $B/dsinfer-bench --attention $2 --ds_ratio 16 --label_bits 16 --iters 10 \
    --linear_algos auto --dependent_launch on --long_prefill_layers 1 --models llama3-8b \
    --batches $3 --contexts $4 --json_out $OUT/$1.json > $OUT/$1.log 2>&1
  stamp $1 $?
}
for rep in 1 2; do
  e2e ds-b3-256k-$rep double_sparse 3 262144
  e2e ds-b8-32k-$rep double_sparse 8 32768
  e2e dense-b8-32k-$rep dense 8 32768
done
cd $OUT/.. && tar czf $FINAL/call6.tgz out6
