#!/usr/bin/env bash
# Run 19 call 10 (the code of call 9): the split chain beside MixedAttention's side stream —
# mixed steps (the last N of the batch dense) with the split on (the row) beside off.
cd "$(dirname "$0")/.."
FINAL=$OUT
export OUT=$PWD/out10
mkdir -p $OUT
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bin=.gpu-bundle/bin
for k in 1 4; do
  timeout 80 $bin/dsinfer-bench --attention double_sparse --ds_ratio 16 --label_bits 16 \
    --models llama3-8b --batches 8 --contexts 32768 --iters 7 --ds_dense_sequences $k \
    --linear_algos auto --dependent_launch on --long_prefill_layers 1 --ds_split_chain \
    --json_out $OUT/mixed_split_k$k.json > $OUT/mixed_split_k$k.log 2>&1
  echo "k$k rc=$?"; grep -E "^double_sparse|split sparse chain" $OUT/mixed_split_k$k.log
done
tar czf $FINAL/call10.tgz -C $OUT .
