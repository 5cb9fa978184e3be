#!/usr/bin/env bash
# Run 19 call 7: where the split chain's second half forks (DSINFER_SPLIT_FORK, a scratch
# switch): 0 after the first half's scores, 1 at once, 2 after its top-k, 3 as 0 with each
# half's attention split for its own sequences. Double Sparsity end to end, split on beside
# off: Llama-3-8B batch 8 and 16, Llama-2-7B batch 2, 32K.
cd "$(dirname "$0")/.."
FINAL=$OUT
export OUT=$PWD/out7
mkdir -p $OUT
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bin=.gpu-bundle/bin
for v in 0 1 2 3; do
  export DSINFER_SPLIT_FORK=$v
  for m in llama3-8b:8,16 llama2-7b:2; do
    timeout 100 $bin/dsinfer-bench --attention double_sparse --ds_ratio 16 --label_bits 16 \
      --models ${m%%:*} --batches ${m##*:} --contexts 32768 --iters 7 --linear_algos auto \
      --dependent_launch on --long_prefill_layers 1 --ds_split_chain \
      --json_out $OUT/fork_v${v}_${m%%:*}.json > $OUT/fork_v${v}_${m%%:*}.log 2>&1
    echo "v$v ${m} rc=$?"; grep -E "^double_sparse|two halves" $OUT/fork_v${v}_${m%%:*}.log
  done
done
tar czf $FINAL/call7.tgz -C $OUT .
